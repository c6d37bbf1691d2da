"""PublishEvent: POST /api/events through ``main``, with Event Grid faked at the SDK boundary.

The fake raises what azure-eventgrid raises (tests.fakes.event_grid_error); the last tests
check that against the real ``EventGridPublisherClient`` talking to a loopback server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ServiceRequestError

import PublishEvent
from PublishEvent.publishing import PLAIN_EVENT_SOURCE, PLAIN_EVENT_TYPE, event_id_for_key
from tests.conftest import FakeContext, FakeTraceContext, set_env, use_fake_clients
from tests.fakes import FakeEventGridPublisher, FakeSecretClient, event_grid_error

API_KEY = "events-api-key-0123456789"
TOPIC = "https://unit-topic.westeurope-1.eventgrid.azure.net/api/events"
HOST_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> FakeEventGridPublisher:
    fake = FakeEventGridPublisher()
    use_fake_clients(monkeypatch, event_grid=fake)
    set_env(monkeypatch, AUTH_MODE="apikey", API_KEY=API_KEY, EVENT_GRID_TOPIC_ENDPOINT=TOPIC, EVENT_PUBLISH_BUDGET_SECONDS="2")
    return fake


def request(body: bytes | str | dict[str, Any] | list[Any] | None = None, *, key: str | None = API_KEY,
            content_type: str | None = "application/json", headers: dict[str, str] | None = None) -> func.HttpRequest:
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["x-api-key"] = key
    if content_type is not None:
        all_headers["content-type"] = content_type
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return func.HttpRequest("POST", "http://localhost:7071/api/events", headers=all_headers, params={},
                            body=body or b"")


async def call(req: func.HttpRequest, context: FakeContext | None = None) -> tuple[int, dict[str, Any], func.HttpResponse]:
    response = await PublishEvent.main(req, context or FakeContext(function_name="PublishEvent"))
    return response.status_code, json.loads(response.get_body()), response


def cloud_event(**overrides: Any) -> dict[str, Any]:
    event = {"specversion": "1.0", "id": "evt-1", "source": "/orders", "type": "com.example.order.created",
             "data": {"orderId": 7}}
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


# ------------------------------------------------------------------------------------ accepted

async def test_a_plain_object_is_published_as_the_data_of_a_cloud_event(topic: FakeEventGridPublisher) -> None:
    status, body, response = await call(request({"orderId": 7, "note": "Zoë"}, headers={"x-correlation-id": "c-9"}))
    assert status == 202
    [event] = topic.published
    assert body == {"id": event["id"], "correlationId": "c-9"}
    assert response.headers["x-correlation-id"] == "c-9"
    assert (event["type"], event["source"], event["specversion"]) == (PLAIN_EVENT_TYPE, PLAIN_EVENT_SOURCE, "1.0")
    assert event["data"] == {"orderId": 7, "note": "Zoë"}
    assert event["datacontenttype"] == "application/json" and event["correlationid"] == "c-9"
    assert event["time"].endswith("Z")


async def test_a_cloud_event_keeps_its_id_attributes_and_extensions(topic: FakeEventGridPublisher) -> None:
    status, body, _ = await call(request(cloud_event(subject="orders/7", tenant="t1", priority=3),
                                         content_type="application/cloudevents+json; charset=utf-8"))
    assert status == 202 and body["id"] == "evt-1"
    [event] = topic.published
    assert (event["id"], event["source"], event["type"], event["subject"]) == (
        "evt-1", "/orders", "com.example.order.created", "orders/7")
    assert (event["tenant"], event["priority"], event["data"]) == ("t1", 3, {"orderId": 7})


async def test_binary_data_is_published_as_data_base64(topic: FakeEventGridPublisher) -> None:
    status, _, _ = await call(request(cloud_event(data=None, data_base64="aGVsbG8=")))
    assert status == 202
    assert topic.published[0]["data_base64"] == "aGVsbG8=" and "data" not in topic.published[0]


async def test_the_event_carries_the_request_trace_not_the_callers(topic: FakeEventGridPublisher) -> None:
    foreign = "00-" + "9" * 32 + "-" + "8" * 16 + "-01"
    context = FakeContext(function_name="PublishEvent", trace_context=FakeTraceContext())
    status, _, _ = await call(request(cloud_event(traceparent=foreign)), context)
    assert status == 202
    traceparent = topic.published[0]["traceparent"]
    assert traceparent.split("-")[1] == HOST_TRACE


async def test_a_retried_request_with_an_idempotency_key_publishes_the_same_event_id(
        topic: FakeEventGridPublisher) -> None:
    first = await call(request({"n": 1}, headers={"Idempotency-Key": "order-7-create"}))
    again = await call(request({"n": 1}, headers={"Idempotency-Key": "order-7-create"}))
    other = await call(request({"n": 1}, headers={"Idempotency-Key": "order-8-create"}))
    no_key = [await call(request({"n": 1})) for _ in range(2)]
    assert first[1]["id"] == again[1]["id"] == event_id_for_key("order-7-create")
    assert other[1]["id"] != first[1]["id"]
    assert no_key[0][1]["id"] != no_key[1][1]["id"]
    assert [e["id"] for e in topic.published[:2]] == [first[1]["id"]] * 2


async def test_a_retry_after_throttling_within_the_budget_is_accepted(topic: FakeEventGridPublisher) -> None:
    topic.failures = [event_grid_error(429, retry_after="0"), event_grid_error(503)]
    status, body, _ = await call(request(cloud_event()))
    assert (status, topic.calls) == (202, 3)
    assert [e["id"] for e in topic.published] == ["evt-1"]


# ------------------------------------------------------------------------------------ refused

@pytest.mark.parametrize(("body", "fragment"), [
    (b"", "empty"),
    (b"{nope", "not valid JSON"),
    (b"\xff\xfe", "UTF-8"),
    (b"[1, 2]", "not an array"),
    (b'"text"', "JSON object"),
    (json.dumps(cloud_event(specversion="0.3")), "'specversion' must be \"1.0\""),
    (json.dumps(cloud_event(source=None)), "'source'"),
    (json.dumps(cloud_event(type="")), "'type'"),
    (json.dumps(cloud_event(id="x" * 129)), "'id' must be at most 128"),
    (json.dumps(cloud_event(time="yesterday")), "'time'"),
    (json.dumps(cloud_event(data_base64="aGVsbG8=")), "not both"),
    (json.dumps(cloud_event(data=None, data_base64="***")), "base64"),
    (json.dumps(cloud_event(**{"Bad_Name": "v"})), "extension attribute"),
    (json.dumps(cloud_event(nested={"a": 1})), "string, an integer or a boolean"),
    (json.dumps(cloud_event(big=2**40)), "32 bits"),
    (json.dumps(cloud_event(id="a\ud800b")), "surrogate"),
    (json.dumps(cloud_event(subject="line\nbreak")), "control characters"),
])
async def test_an_event_that_cannot_be_published_is_a_specific_400(topic: FakeEventGridPublisher, body: Any,
                                                                   fragment: str) -> None:
    status, reply, _ = await call(request(body))
    assert status == 400
    assert fragment in reply["error"]
    assert topic.calls == 0


async def test_a_malformed_idempotency_key_is_a_400(topic: FakeEventGridPublisher) -> None:
    status, reply, _ = await call(request({"a": 1}, headers={"Idempotency-Key": "has space"}))
    assert status == 400 and "Idempotency-Key" in reply["error"]


@pytest.mark.parametrize(("content_type", "fragment"), [
    ("text/plain", "Content-Type"),
    ("application/cloudevents-batch+json", "one event per request"),
    ("application/json; charset=latin-1", "UTF-8"),
])
async def test_other_media_types_are_a_415(topic: FakeEventGridPublisher, content_type: str, fragment: str) -> None:
    status, reply, _ = await call(request(cloud_event(), content_type=content_type))
    assert status == 415 and fragment in reply["error"]
    assert topic.calls == 0


async def test_a_body_over_the_limit_is_a_413_before_it_is_read(topic: FakeEventGridPublisher,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, EVENT_MAX_BYTES="2048")
    status, reply, _ = await call(request(b"{" + b" " * 3000 + b"}"))
    assert status == 413 and "2048" in reply["error"]
    # Just under the limit, the trace context and the wrapping tip it over: still a 413, never a failed publish.
    padding = 2048 - len(json.dumps({"p": ""})) - 1
    status, reply, _ = await call(request({"p": "x" * padding}))
    assert status == 413 and topic.calls == 0


async def test_event_grid_refusing_the_event_is_a_400_or_413(topic: FakeEventGridPublisher) -> None:
    topic.failures = [event_grid_error(400, "Required property 'source' was not set.")]
    status, reply, _ = await call(request(cloud_event()))
    assert status == 400 and "Event Grid refused the event" in reply["error"]
    topic.failures = [event_grid_error(413)]
    assert (await call(request(cloud_event())))[0] == 413


@pytest.mark.parametrize("error", [event_grid_error(503), event_grid_error(429, retry_after="7"),
                                   ServiceRequestError("Cannot connect to host")])
async def test_event_grid_unavailable_is_a_503_with_retry_after(topic: FakeEventGridPublisher, error: Exception,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, EVENT_PUBLISH_BUDGET_SECONDS="1")
    topic.failures = [error] * 50
    status, reply, response = await call(request(cloud_event()))
    assert status == 503 and "try again later" in reply["error"]
    expected = "7" if getattr(error, "status_code", None) == 429 else "5"
    assert response.headers["Retry-After"] == expected
    assert topic.published == [] and topic.calls >= 1


async def test_a_hung_publish_answers_503_within_the_budget(topic: FakeEventGridPublisher,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, EVENT_PUBLISH_BUDGET_SECONDS="1")
    topic.hang = True
    started = time.perf_counter()
    status, _, response = await call(request(cloud_event()))
    elapsed = time.perf_counter() - started
    assert status == 503 and response.headers["Retry-After"] == "5"
    assert elapsed < 1.5, elapsed
    assert topic.calls == 2  # abandoned after half the budget, tried once more with the same id


@pytest.mark.parametrize("status_code", [401, 403, 404])
async def test_the_app_refused_by_event_grid_is_a_500_that_says_why_in_the_log(
        topic: FakeEventGridPublisher, status_code: int, caplog: pytest.LogCaptureFixture) -> None:
    topic.failures = [event_grid_error(status_code)]
    with caplog.at_level(logging.INFO):
        status, reply, _ = await call(request(cloud_event()))
    assert (status, reply) == (500, {"error": "Internal server error"})
    assert "EventGrid Data Sender" in caplog.text
    assert topic.calls == 1  # not retried: a missing role does not heal


async def test_no_topic_configured_is_a_500_naming_the_setting(monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    set_env(monkeypatch, AUTH_MODE="apikey", API_KEY=API_KEY)
    with caplog.at_level(logging.INFO):
        status, reply, _ = await call(request(cloud_event()))
    assert (status, reply) == (500, {"error": "Internal server error"})
    assert "EVENT_GRID_TOPIC_ENDPOINT" in caplog.text


@pytest.mark.parametrize(("name", "value"), [
    ("EVENT_GRID_TOPIC_ENDPOINT", "https://topic.westeurope-1.eventgrid.azure.net/"),
    ("EVENT_GRID_TOPIC_ENDPOINT", "http://topic.westeurope-1.eventgrid.azure.net/api/events"),
    ("EVENT_MAX_BYTES", "2000000"),
    ("EVENT_PUBLISH_BUDGET_SECONDS", "200"),
])
async def test_a_malformed_setting_is_a_500_naming_it(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                      name: str, value: str) -> None:
    set_env(monkeypatch, **{"AUTH_MODE": "apikey", "API_KEY": API_KEY, "EVENT_GRID_TOPIC_ENDPOINT": TOPIC, name: value})
    with caplog.at_level(logging.INFO):
        status, _, _ = await call(request(cloud_event()))
    assert status == 500 and name in caplog.text


# ------------------------------------------------------------------------------- authentication

async def test_callers_authenticate_as_for_http_greeting(topic: FakeEventGridPublisher) -> None:
    assert (await call(request(cloud_event(), key=None)))[:2] == (401, {"error": "Missing or invalid API key (header 'x-api-key')."})
    assert (await call(request(cloud_event(), key="wrong")))[0] == 401
    assert topic.calls == 0


async def test_the_key_from_key_vault_guards_the_route(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEventGridPublisher()
    vault = FakeSecretClient({"greeting-api-key": API_KEY})
    use_fake_clients(monkeypatch, event_grid=fake, vault=vault)
    set_env(monkeypatch, AUTH_MODE="apikey", KEY_VAULT_URL="https://unit-test.vault.azure.net/", EVENT_GRID_TOPIC_ENDPOINT=TOPIC)
    assert (await call(request(cloud_event())))[0] == 202
    from common import secrets

    secrets.reset()
    vault.error = ServiceRequestError("vault unreachable")
    status, _, response = await call(request(cloud_event()))
    assert status == 503 and response.headers["Retry-After"] == "30"
    assert fake.calls == 1


async def test_no_key_or_event_reaches_the_log(topic: FakeEventGridPublisher, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        await call(request(cloud_event(data={"card": "4111-1111-1111-1111"})))
        await call(request(cloud_event(), key="guessed-key-123"))
    assert API_KEY not in caplog.text and "guessed-key-123" not in caplog.text
    assert "4111-1111" not in caplog.text


# ------------------------------------------------------------- the fake against the real SDK

@pytest.mark.parametrize(("status_code", "expected"), [
    (401, "ClientAuthenticationError"), (403, "HttpResponseError"), (404, "ResourceNotFoundError"),
    (413, "HttpResponseError"), (429, "HttpResponseError"), (503, "HttpResponseError")])
async def test_the_fake_raises_what_the_real_client_raises(status_code: int, expected: str) -> None:
    """The real EventGridPublisherClient (with a key, the only credential it sends over http)
    against a loopback server answering ``status_code``: same type, same status, as the fake."""
    from aiohttp import web
    from azure.core.credentials import AzureKeyCredential
    from azure.core.messaging import CloudEvent
    from azure.eventgrid.aio import EventGridPublisherClient

    from PublishEvent.publishing import _status_of

    received: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((request.headers.get("content-type"), await request.json()))
        return web.Response(status=status_code, headers={"Retry-After": "7"}, text="{}")

    app = web.Application()
    app.router.add_post("/api/events", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        client = EventGridPublisherClient(f"http://127.0.0.1:{port}/api/events", AzureKeyCredential("k"),
                                          retry_total=0)
        async with client:
            with pytest.raises(Exception) as raised:
                await client.send(CloudEvent(source="/s", type="t", data={"a": 1}, extensions={"traceparent": "x"}))
    finally:
        await runner.cleanup()
    fake = event_grid_error(status_code)
    assert type(raised.value).__name__ == type(fake).__name__ == expected
    assert _status_of(raised.value) == _status_of(fake) == status_code
    content_type, body = received[0]
    assert content_type.startswith("application/cloudevents-batch+json")
    assert body[0]["traceparent"] == "x" and body[0]["data"] == {"a": 1}


async def test_an_unreachable_topic_raises_service_request_error() -> None:
    from azure.core.credentials import AzureKeyCredential
    from azure.core.messaging import CloudEvent
    from azure.eventgrid.aio import EventGridPublisherClient

    from devhost.emulators import free_port

    client = EventGridPublisherClient(f"http://127.0.0.1:{free_port()}/api/events", AzureKeyCredential("k"),
                                      retry_total=0)
    async with client:
        with pytest.raises(ServiceRequestError):
            await asyncio.wait_for(client.send(CloudEvent(source="/s", type="t", data=None)), 10)


@pytest.mark.parametrize(("sent", "published"), [
    ("2026-11-27T10:00:00+05:30", "2026-11-27T04:30:00.000Z"),
    ("2026-11-27T10:00:00-08:00", "2026-11-27T18:00:00.000Z"),
    ("2026-11-27t10:00:00.123456789z", "2026-11-27T10:00:00.123456Z"),
])
async def test_a_time_with_any_offset_is_published_as_the_same_instant(topic: FakeEventGridPublisher, sent: str,
                                                                       published: str) -> None:
    status, _, _ = await call(request(cloud_event(time=sent)))
    assert status == 202
    assert topic.published[0]["time"] == published


async def test_the_request_correlation_id_replaces_the_callers_attribute(topic: FakeEventGridPublisher) -> None:
    await call(request(cloud_event(correlationid="forged\nline"), headers={"x-correlation-id": "c-real"}))
    assert topic.published[0]["correlationid"] == "c-real"


async def test_a_token_the_identity_endpoint_could_not_issue_is_a_503(topic: FakeEventGridPublisher,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import CredentialUnavailableError

    set_env(monkeypatch, EVENT_PUBLISH_BUDGET_SECONDS="1")
    topic.failures = [ClientAuthenticationError("ManagedIdentityCredential authentication failed: timeout")] * 20
    assert (await call(request(cloud_event())))[0] == 503
    topic.failures = [CredentialUnavailableError("no managed identity endpoint")]
    assert (await call(request(cloud_event())))[0] == 500
