"""The whole app loaded and invoked through Microsoft's Python runtime library for v1 apps.

This is what Azure runs for Python 3.13+: if a ``function.json`` does not match
its ``main`` (names, annotations, ``$return``), loading fails here before a
deployment does. One invocation per trigger type proves the host's payloads
decode into what each ``main`` expects. Clients are fakes (see tests/fakes.py).
"""

from __future__ import annotations

import json
import sys

import pytest
import pytest_asyncio

from tests.conftest import APP_ROOT, set_env, use_fake_clients
from tests.fakes import FakeContainer, FakeEventGridPublisher, FakeServiceBus

pytestmark = [
    pytest.mark.skipif(sys.version_info < (3, 13), reason="azure-functions-runtime-v1 serves Python 3.13+"),
    pytest.mark.asyncio(loop_scope="module"),
]

FUNCTIONS = {"HttpGreeting", "PublishEvent", "QueueProcessor", "CleanupTimer", "BlobEtl", "BlobEtlWorker", "Orders", "Order",
             "OrderEvents"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def host():  # noqa: ANN201
    from devhost.runtime_host import RuntimeHost

    runtime_host = RuntimeHost(APP_ROOT)
    failures = await runtime_host.start(raise_on_failure=False)
    assert failures == {}
    yield runtime_host
    await runtime_host.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def issuer(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The local OpenID issuer on loopback: the functions fetch its keys as they would Entra ID's."""
    import socket

    from devhost.issuer import LocalIssuer, serve

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    local = LocalIssuer.from_key_file(tmp_path_factory.mktemp("issuer") / "key.pem", f"http://127.0.0.1:{port}")
    runner = await serve(local, port)
    yield local
    await runner.cleanup()


def entra(monkeypatch: pytest.MonkeyPatch, issuer, **values: str) -> None:  # noqa: ANN001
    """AUTH_MODE=entra against the local issuer, as deployed against Entra ID."""
    from devhost.issuer import DEFAULT_AUDIENCE

    set_env(monkeypatch, AUTH_MODE="entra", AUTH_TENANT_ID=issuer.tenant, AUTH_AUDIENCE=DEFAULT_AUDIENCE,
            AUTH_ISSUER=issuer.issuer, AUTH_JWKS_URL=issuer.jwks_url, **values)


async def test_every_function_loads(host) -> None:  # noqa: ANN001
    assert set(host.functions) == FUNCTIONS


async def test_http_trigger_round_trip(host, issuer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from devhost.runtime_host import http_response

    entra(monkeypatch, issuer, API_KEY="contract-key-123456")
    response = await host.invoke("HttpGreeting", *host.http_request(
        "HttpGreeting", "POST", "http://localhost:7071/api/HttpGreeting",
        headers={"x-api-key": "contract-key-123456", "x-correlation-id": "c-1", "content-type": "application/json"},
        body=b'{"name": "Runtime"}'))
    status, headers, body = http_response(response)
    assert status == 200
    assert json.loads(body) == {"message": "Hello, Runtime"}
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["x-correlation-id"] == "c-1"
    assert lowered["content-type"].startswith("application/json")

    response = await host.invoke("HttpGreeting", *host.http_request(
        "HttpGreeting", "GET", "http://localhost:7071/api/HttpGreeting?name=Ada", headers={"x-api-key": "nope"}))
    assert http_response(response)[0] == 401
    response = await host.invoke("HttpGreeting", *host.http_request(
        "HttpGreeting", "GET", "http://localhost:7071/api/HttpGreeting?name=Ada",
        headers={"Authorization": f"Bearer {issuer.mint()}"}))
    assert http_response(response)[:1] == (200,)


async def test_publish_event_route_and_statuses(host, issuer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """function.json's route and method: POST /api/events reaches PublishEvent's main with a bearer token;
    202, then 400, 401 (no token; the API key is not accepted with AUTH_MODE=entra) and 403 (no role)."""
    from devhost.runtime_host import http_response

    topic = FakeEventGridPublisher()
    use_fake_clients(monkeypatch, event_grid=topic)
    entra(monkeypatch, issuer, API_KEY="contract-key-123456",
          EVENT_GRID_TOPIC_ENDPOINT="https://contract.westeurope-1.eventgrid.azure.net/api/events")
    token = issuer.mint(roles=["Events.Publish"])
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/cloudevents+json",
               "Idempotency-Key": "ignored-for-cloud-events", "x-correlation-id": "c-events"}
    event = {"specversion": "1.0", "id": "contract-1", "source": "/contract", "type": "contract.test", "data": {"a": 1}}
    status, reply_headers, body = http_response(await host.invoke("PublishEvent", *host.http_request(
        "PublishEvent", "POST", "http://localhost:7071/api/events", headers=headers, body=json.dumps(event).encode())))
    assert (status, json.loads(body)) == (202, {"id": "contract-1", "correlationId": "c-events"})
    assert [e["id"] for e in topic.published] == ["contract-1"]
    status, _, body = http_response(await host.invoke("PublishEvent", *host.http_request(
        "PublishEvent", "POST", "http://localhost:7071/api/events", headers=headers, body=b"[]")))
    assert status == 400 and "not an array" in json.loads(body)["error"]
    status, refused, _ = http_response(await host.invoke("PublishEvent", *host.http_request(
        "PublishEvent", "POST", "http://localhost:7071/api/events", headers={"x-api-key": "contract-key-123456"},
        body=b"{}")))
    assert status == 401 and {k.lower(): v for k, v in refused.items()}["www-authenticate"].startswith("Bearer")
    status, _, _ = http_response(await host.invoke("PublishEvent", *host.http_request(
        "PublishEvent", "POST", "http://localhost:7071/api/events",
        headers={"Authorization": f"Bearer {issuer.mint(roles=['Orders.Read'])}"}, body=b"{}")))
    assert status == 403


async def test_orders_routes_reach_main_with_route_params_and_answer_problem_details(  # noqa: ANN201
        host, issuer, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001
    """The three orders functions load with their routes; the host's route parameter ``id`` reaches
    main, and refusals that need no store come back as problem details (the store itself is tested
    on the local Cosmos DB server in tests/integration/test_orders.py)."""
    from devhost.runtime_host import http_response

    entra(monkeypatch, issuer)
    token = issuer.mint(roles=["Orders.Write"])
    status, headers, body = http_response(await host.invoke("Order", *host.http_request(
        "Order", "GET", "http://localhost:7071/api/orders/not-an-order-id", headers={"Authorization": f"Bearer {token}"},
        route_params={"id": "not-an-order-id"})))
    lowered = {k.lower(): v for k, v in headers.items()}
    assert status == 404 and lowered["content-type"].startswith("application/problem+json")
    assert json.loads(body)["type"].endswith("/not-found")
    order_id = "0b0e6a55-5d1f-4a57-9b2b-6f1d2c3b4a59"
    status, headers, body = http_response(await host.invoke("Order", *host.http_request(
        "Order", "PATCH", f"http://localhost:7071/api/orders/{order_id}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/merge-patch+json"}, body=b"{}",
        route_params={"id": order_id})))
    assert status == 428 and json.loads(body)["status"] == 428
    status, _, body = http_response(await host.invoke("Orders", *host.http_request(
        "Orders", "POST", "http://localhost:7071/api/orders",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, body=b'{"lines": []}')))
    assert status == 400 and {e["pointer"] for e in json.loads(body)["errors"]} == {"/customerId", "/currency", "/lines"}
    status, _, _ = http_response(await host.invoke("OrderEvents", *host.http_request(
        "OrderEvents", "GET", f"http://localhost:7071/api/orders/{order_id}/events",
        headers={"Authorization": f"Bearer {issuer.mint(roles=['Events.Publish'])}"}, route_params={"id": order_id})))
    assert status == 403


async def test_a_cloud_event_from_event_grid_is_stored_and_forwarded(host, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The body and properties Event Grid delivers to Service Bus, decoded by the runtime into main."""
    bus, container = FakeServiceBus("orders-out", "orders-invalid"), FakeContainer()
    use_fake_clients(monkeypatch, bus=bus, cosmos=container)
    set_env(monkeypatch, INPUT_QUEUE_NAME="orders-in", OUTPUT_QUEUE_NAME="orders-out",
            INVALID_QUEUE_NAME="orders-invalid")
    event = {"specversion": "1.0", "id": "ce-1", "source": "/contract", "type": "contract.test", "data": {"qty": 2},
             "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "correlationid": "c-1"}
    await host.invoke("QueueProcessor", *host.service_bus(
        "QueueProcessor", json.dumps(event).encode(), message_id="ce-1", delivery_count=1,
        user_properties={"aeg-subscription-name": "EVENTS", "aeg-delivery-count": "0", "aeg-event-type": "Notification",
                         "aeg-metadata-version": "1.0", "Diagnostic-Id": event["traceparent"]}))
    [item] = container.items.values()
    assert (item["eventId"], item["payload"], item["metadata"]["source"]) == ("ce-1", {"qty": 2}, "/contract")
    [out] = bus.queues["orders-out"].messages
    assert json.loads(b"".join(out.body))["id"] == "ce-1"


async def test_service_bus_trigger_reaches_main(host, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    bus = FakeServiceBus("orders-out", "orders-invalid")
    use_fake_clients(monkeypatch, bus=bus, cosmos=FakeContainer())
    set_env(monkeypatch, INPUT_QUEUE_NAME="orders-in", OUTPUT_QUEUE_NAME="orders-out",
            INVALID_QUEUE_NAME="orders-invalid")
    await host.invoke("QueueProcessor", *host.service_bus(
        "QueueProcessor", b'{"id": "order-1", "qty": 2}', message_id="m-contract", delivery_count=2,
        correlation_id="corr-contract", content_type="application/json", user_properties={"tenant": "t"}))
    [out] = bus.queues["orders-out"].messages
    body = json.loads(b"".join(out.body))
    assert body["sourceMessageId"] == "m-contract" and body["payload"] == {"id": "order-1", "qty": 2}
    assert out.correlation_id == "corr-contract"

    await host.invoke("QueueProcessor", *host.service_bus("QueueProcessor", b"\xff", message_id="m-bad",
                                                          user_properties={"tenant": "t"}))
    [aside] = bus.queues["orders-invalid"].messages
    assert aside.application_properties["invalidReason"] == "not_utf8"
    assert aside.application_properties["tenant"] == "t"


async def test_failed_send_fails_the_invocation(host, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from azure.servicebus.exceptions import MessagingEntityNotFoundError

    bus = FakeServiceBus("orders-out", "orders-invalid")
    bus.senders["orders-out"].failures = [MessagingEntityNotFoundError(message="queue is gone")]
    use_fake_clients(monkeypatch, bus=bus, cosmos=FakeContainer())
    set_env(monkeypatch, INPUT_QUEUE_NAME="orders-in", OUTPUT_QUEUE_NAME="orders-out",
            INVALID_QUEUE_NAME="orders-invalid")
    response = await host.invoke("QueueProcessor", *host.service_bus("QueueProcessor", b'{"id": "x"}'), check=False)
    assert not host.succeeded(response)
    assert "queue is gone" in response.result.exception.message


async def test_timer_trigger_reaches_main(host, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    container = FakeContainer()
    await container.upsert_item({"id": "ancient", "timestamp": "2001-01-01T00:00:00.000Z"})
    await container.upsert_item({"id": "fresh", "timestamp": "2999-01-01T00:00:00.000Z"})
    use_fake_clients(monkeypatch, cosmos=container)
    await host.invoke("CleanupTimer", *host.timer("CleanupTimer", past_due=True))
    assert [key[0] for key in container.items] == ["fresh"]


async def test_a_blob_created_event_reaches_main(host, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The Event Grid trigger: the event decodes into what BlobEtl reads (type, subject, data)."""
    from devhost.runtime_host import blob_created_event
    from tests.test_blob_etl import FakeBlobService

    container, blobs = FakeContainer(), FakeBlobService()
    use_fake_clients(monkeypatch, cosmos=container, blobs=blobs)
    data = json.dumps([{"id": "a", "data": "x", "source": "s", "type": "t"}, {"id": 1}]).encode()
    blobs.store["incoming/2026/day.json"] = data
    etag = blobs.get_blob_client("incoming", "2026/day.json")._etag()
    event = blob_created_event("incoming", "2026/day.json", etag=etag, content_length=len(data))
    await host.invoke("BlobEtl", *host.event_grid("BlobEtl", event))
    summary = json.loads(blobs.store["summaries/2026/day.json.summary.json"])
    assert (summary["status"], summary["written"], summary["invalid"]) == ("partial", 1, 1)
    assert summary["sourceBlob"] == "incoming/2026/day.json" and summary["sourceETag"] == etag
    assert container.items[("a", '"a"')]["sourceBlob"] == "incoming/2026/day.json"


async def test_a_queue_message_reaches_the_worker(host, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The queue trigger: body, id and dequeue count decode; a malformed work message fails the
    invocation (so it ends in the poison queue), naming what is wrong."""
    from tests.test_blob_etl import FakeBlobService

    use_fake_clients(monkeypatch, cosmos=FakeContainer(), blobs=FakeBlobService())
    response = await host.invoke("BlobEtlWorker", *host.queue("BlobEtlWorker", b'{"v": 1, "kind": "split"}',
                                                              message_id="m-1", dequeue_count=2), check=False)
    assert not host.succeeded(response)
    assert "work message is malformed: 'blob' is missing" in response.result.exception.message


async def test_a_failure_reaches_the_host_without_secrets(host, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """What the runtime hands the host (message and stack trace) is logged by the host: it must be masked."""
    from azure.servicebus.exceptions import ServiceBusAuthenticationError

    bus = FakeServiceBus("orders-out", "orders-invalid")
    bus.senders["orders-out"].failures = [ServiceBusAuthenticationError(
        message="CBS failed: Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=TOPSECRETKEYVALUE==")]
    use_fake_clients(monkeypatch, bus=bus, cosmos=FakeContainer())
    set_env(monkeypatch, INPUT_QUEUE_NAME="orders-in", OUTPUT_QUEUE_NAME="orders-out",
            INVALID_QUEUE_NAME="orders-invalid")
    response = await host.invoke("QueueProcessor", *host.service_bus("QueueProcessor", b'{"id": "x"}'), check=False)
    assert not host.succeeded(response)
    exception = response.result.exception
    assert "ServiceBusAuthenticationError" in exception.message
    assert "TOPSECRETKEYVALUE" not in exception.message + exception.stack_trace
