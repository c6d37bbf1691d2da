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
from tests.fakes import FakeContainer, FakeServiceBus

pytestmark = [
    pytest.mark.skipif(sys.version_info < (3, 13), reason="azure-functions-runtime-v1 serves Python 3.13+"),
    pytest.mark.asyncio(loop_scope="module"),
]

FUNCTIONS = {"HttpGreeting", "QueueProcessor", "CleanupTimer", "BlobEtl"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def host():  # noqa: ANN201
    from devhost.runtime_host import RuntimeHost

    runtime_host = RuntimeHost(APP_ROOT)
    failures = await runtime_host.start(raise_on_failure=False)
    assert failures == {}
    yield runtime_host
    await runtime_host.stop()


async def test_every_function_loads(host) -> None:  # noqa: ANN001
    assert set(host.functions) == FUNCTIONS


async def test_http_trigger_round_trip(host, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from devhost.runtime_host import http_response

    set_env(monkeypatch, API_KEY="contract-key-123456")
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


async def test_service_bus_trigger_reaches_main(host, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    bus = FakeServiceBus("orders-out", "orders-invalid")
    use_fake_clients(monkeypatch, bus=bus)
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
    use_fake_clients(monkeypatch, bus=bus)
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


async def test_blob_trigger_reaches_main(host, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from tests.test_blob_etl import FakeBlobService

    container, blobs = FakeContainer(), FakeBlobService()
    use_fake_clients(monkeypatch, cosmos=container, blobs=blobs)
    data = json.dumps([{"id": "a", "data": "x", "source": "s", "type": "t"}, {"id": 1}]).encode()
    await host.invoke("BlobEtl", *host.blob("BlobEtl", data, container="incoming", name="2026/day.json",
                                            properties={"ContentType": "application/json"}))
    summary = json.loads(blobs.store["summaries/2026/day.json.summary.json"])
    assert (summary["status"], summary["written"], summary["invalid"]) == ("partial", 1, 1)
    assert summary["sourceBlob"] == "incoming/2026/day.json"
    assert container.items[("a", '"a"')]["sourceBlob"] == "incoming/2026/day.json"


async def test_a_failure_reaches_the_host_without_secrets(host, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """What the runtime hands the host (message and stack trace) is logged by the host: it must be masked."""
    from azure.servicebus.exceptions import ServiceBusAuthenticationError

    bus = FakeServiceBus("orders-out", "orders-invalid")
    bus.senders["orders-out"].failures = [ServiceBusAuthenticationError(
        message="CBS failed: Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=TOPSECRETKEYVALUE==")]
    use_fake_clients(monkeypatch, bus=bus)
    set_env(monkeypatch, INPUT_QUEUE_NAME="orders-in", OUTPUT_QUEUE_NAME="orders-out",
            INVALID_QUEUE_NAME="orders-invalid")
    response = await host.invoke("QueueProcessor", *host.service_bus("QueueProcessor", b'{"id": "x"}'), check=False)
    assert not host.succeeded(response)
    exception = response.result.exception
    assert "ServiceBusAuthenticationError" in exception.message
    assert "TOPSECRETKEYVALUE" not in exception.message + exception.stack_trace
