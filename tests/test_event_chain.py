"""The event-processing chain: PublishEvent -> Event Grid -> Service Bus -> QueueProcessor -> Cosmos DB.

Neither Event Grid nor a Service Bus broker runs here. :func:`delivered` builds the Service
Bus message Event Grid delivers for a published event, as Microsoft documents it
(learn.microsoft.com/azure/event-grid/handler-service-bus, .../delivery-properties): one
event per message, its body the CloudEvent's JSON object; the application properties
``aeg-subscription-name``, ``aeg-delivery-count``, ``aeg-event-type`` (``Notification``),
``aeg-metadata-version`` and ``aeg-output-event-id``; and, from the subscription's delivery
properties in infra/resources.bicep, the message id set from the event's ``id`` and
``Diagnostic-Id`` from its ``traceparent``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage as ServiceBusTriggerMessage
from opentelemetry.trace import SpanKind

import PublishEvent
import QueueProcessor
from common.logs import InvocationFailed
from QueueProcessor.processing import item_id
from tests.conftest import FakeContext, FakeTraceContext, set_env, use_fake_clients
from tests.fakes import FakeContainer, FakeEventGridPublisher, FakeQueue, FakeServiceBus, cosmos_error
from tests.test_publish_event import API_KEY, TOPIC
from tests.test_telemetry import Telemetry, parent_id

PUBLISH_TRACE = "0af7651916cd43dd8448eb211c80319c"
CONSUMER_HOST_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def otel() -> Telemetry:
    return Telemetry()


class Chain:
    """PublishEvent's topic, QueueProcessor's input queue (duplicate detection on, as infra/
    creates it), its output and invalid queues, and the Cosmos DB container."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, container: FakeContainer) -> None:
        self.topic = FakeEventGridPublisher()
        self.input = FakeQueue("orders-in")
        self.bus = FakeServiceBus("orders-out", "orders-invalid")
        self.store = container
        use_fake_clients(monkeypatch, event_grid=self.topic, bus=self.bus, cosmos=container)
        set_env(monkeypatch, AUTH_MODE="apikey", API_KEY=API_KEY, EVENT_GRID_TOPIC_ENDPOINT=TOPIC, INPUT_QUEUE_NAME="orders-in",
                OUTPUT_QUEUE_NAME="orders-out", INVALID_QUEUE_NAME="orders-invalid")

    async def publish(self, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
        req = func.HttpRequest("POST", "http://localhost:7071/api/events", params={}, body=json.dumps(body).encode(),
                               headers={"x-api-key": API_KEY, "content-type": "application/json", **headers})
        context = FakeContext(function_name="PublishEvent", trace_context=FakeTraceContext())
        response = await PublishEvent.main(req, context)
        return response.status_code, json.loads(response.get_body())

    def route(self) -> None:
        """Event Grid's subscription: every event published so far, to the input queue."""
        for event in self.topic.published:
            self.input.accept(delivered(event))
        self.topic.published.clear()

    async def process_all(self, *, delivery_count: int = 1, host_trace: str = CONSUMER_HOST_TRACE) -> None:
        for message in self.input.messages:
            await QueueProcessor.main(trigger_of(message, delivery_count), FakeContext(
                function_name="QueueProcessor",
                trace_context=FakeTraceContext(trace_parent=f"00-{host_trace}-00f067aa0ba902b7-01")))

    def items(self) -> list[dict[str, Any]]:
        return list(self.store.items.values())


class DeliveredMessage:
    def __init__(self, body: bytes, message_id: str, properties: dict[str, Any]) -> None:
        self.body = body
        self.message_id = message_id
        self.application_properties = properties


def delivered(event: dict[str, Any], delivery_count: int = 1) -> DeliveredMessage:
    properties: dict[str, Any] = {"aeg-subscription-name": "QUEUEPROCESSOR-EVENTS", "aeg-delivery-count": str(delivery_count - 1),
                                  "aeg-event-type": "Notification", "aeg-metadata-version": "1.0",
                                  "aeg-output-event-id": "f3c2a1b0-0000-4000-8000-000000000001"}
    if "traceparent" in event:
        properties["Diagnostic-Id"] = event["traceparent"]
    return DeliveredMessage(json.dumps(event).encode(), event["id"], properties)


def trigger_of(message: DeliveredMessage, delivery_count: int = 1) -> func.ServiceBusMessage:
    return ServiceBusTriggerMessage(body=message.body, message_id=message.message_id, delivery_count=delivery_count,
                                    content_type=None, application_properties=message.application_properties,
                                    user_properties=message.application_properties)


def body_of(message: Any) -> dict[str, Any]:
    return json.loads(b"".join(message.body))


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> Chain:
    return Chain(monkeypatch, FakeContainer())


# ---------------------------------------------------------------------------------- the path

async def test_a_published_event_is_stored_once_and_forwarded_once(chain: Chain) -> None:
    status, reply = await chain.publish({"specversion": "1.0", "id": "order-7", "source": "/shop", "type": "order.created",
                                         "subject": "orders/7", "data": {"qty": 2}}, **{"x-correlation-id": "corr-7"})
    assert status == 202
    chain.route()
    await chain.process_all()
    [item] = chain.items()
    assert item["id"] == item_id("/shop", "order-7")
    assert (item["eventId"], item["source"], item["type"], item["subject"], item["payload"]) == (
        "order-7", "/shop", "order.created", "orders/7", {"qty": 2})
    assert item["metadata"] == {"source": "/shop", "type": "order.created"}
    assert item["status"] == "processed" and item["timestamp"] == item["processedTimestamp"]
    [out] = chain.bus.queues["orders-out"].messages
    forwarded = body_of(out)
    assert {k: v for k, v in forwarded.items()} == {k: v for k, v in item.items()
                                                     if k not in ("id", "eventId", "timestamp", "metadata")} | {"id": "order-7"}
    assert out.application_properties["eventSource"] == "/shop"
    assert out.application_properties["eventType"] == "order.created"


async def test_a_redelivered_event_leaves_one_item_and_one_forwarded_message(chain: Chain) -> None:
    await chain.publish({"note": "plain object"}, **{"Idempotency-Key": "k-1"})
    chain.route()
    await chain.process_all()
    await chain.process_all(delivery_count=2)  # the lock expired: Service Bus delivers it again
    assert len(chain.items()) == 1
    assert len(chain.bus.queues["orders-out"].messages) == 1  # the same output message id: dropped


async def test_a_republished_event_is_dropped_by_the_input_queue(chain: Chain) -> None:
    """The caller retried (its first answer was lost): the same Idempotency-Key publishes the same
    event id, Event Grid sets it as the message id, and the input queue drops the copy."""
    first = await chain.publish({"n": 1}, **{"Idempotency-Key": "order-9"})
    again = await chain.publish({"n": 1}, **{"Idempotency-Key": "order-9"})
    assert first[1]["id"] == again[1]["id"]
    chain.route()
    assert len(chain.input.messages) == 1
    await chain.process_all()
    assert len(chain.items()) == 1


async def test_the_request_trace_continues_to_the_cosmos_write(chain: Chain, otel: Telemetry) -> None:
    await chain.publish({"specversion": "1.0", "id": "t-1", "source": "/s", "type": "t", "data": 1})
    [publish] = otel.finished("publish events")
    event = chain.topic.published[0]
    assert publish.kind == SpanKind.PRODUCER
    assert event["traceparent"] == f"00-{PUBLISH_TRACE}-{publish.context.span_id:016x}-01"
    chain.route()
    await chain.process_all()
    [process] = otel.finished("process orders-in")
    [upsert] = otel.finished("upsert records")
    [send] = otel.finished("send orders-out")
    assert f"{process.context.trace_id:032x}" == PUBLISH_TRACE
    assert parent_id(process) == publish.context.span_id
    assert parent_id(upsert) == process.context.span_id and upsert.kind == SpanKind.CLIENT
    assert parent_id(send) == process.context.span_id
    # The host's own invocation (another trace, unless it read Diagnostic-Id) is linked.
    assert [f"{link.context.trace_id:032x}" for link in process.links] == [CONSUMER_HOST_TRACE]  # not its parent too
    assert chain.bus.queues["orders-out"].messages[0].application_properties["traceparent"].split("-")[1] == PUBLISH_TRACE


async def test_when_the_host_continued_the_trace_the_span_is_its_child(chain: Chain, otel: Telemetry) -> None:
    """With Diagnostic-Id mapped from traceparent, the host's invocation is already in the request's trace."""
    await chain.publish({"specversion": "1.0", "id": "t-2", "source": "/s", "type": "t"})
    chain.route()
    await chain.process_all(host_trace=PUBLISH_TRACE)
    [process] = otel.finished("process orders-in")
    assert parent_id(process) == 0x00F067AA0BA902B7
    assert f"{process.context.trace_id:032x}" == PUBLISH_TRACE


async def test_the_correlation_id_follows_the_event(chain: Chain, caplog: pytest.LogCaptureFixture) -> None:
    await chain.publish({"a": 1}, **{"x-correlation-id": "order-flow-42"})
    chain.route()
    with caplog.at_level(logging.INFO):
        await chain.process_all()
    stored = [json.loads(r.getMessage()) for r in caplog.records if r.name == "app.QueueProcessor"]
    assert stored and all(line["correlationId"] == "order-flow-42" for line in stored)


# --------------------------------------------------------------------------- QueueProcessor

async def test_an_invalid_cloud_event_goes_aside_and_nothing_is_stored(chain: Chain) -> None:
    chain.input.accept(DeliveredMessage(b'{"specversion": "1.0", "id": "x", "type": "t"}', "x", {}))
    await chain.process_all()
    [aside] = chain.bus.queues["orders-invalid"].messages
    assert aside.application_properties["invalidReason"] == "invalid_cloud_event"
    assert "'source'" in aside.application_properties["invalidDetail"]
    assert chain.items() == [] and chain.bus.queues["orders-out"].messages == []


async def test_a_plain_event_is_still_processed_and_stored(chain: Chain) -> None:
    chain.input.accept(DeliveredMessage(b'{"id": "order-1", "qty": 2}', "m-1", {}))
    await chain.process_all()
    [item] = chain.items()
    assert item["metadata"] == {"source": "/queues/orders-in", "type": "plain"}
    assert item["payload"] == {"id": "order-1", "qty": 2} and item["eventId"] == "order-1"
    assert body_of(chain.bus.queues["orders-out"].messages[0])["payload"] == {"id": "order-1", "qty": 2}


async def test_without_an_output_queue_the_result_is_stored_only(chain: Chain, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("OUTPUT_QUEUE_NAME")
    set_env(monkeypatch)
    chain.input.accept(DeliveredMessage(b'{"id": "only-stored"}', "m-2", {}))
    with caplog.at_level(logging.INFO):
        await chain.process_all()
    assert len(chain.items()) == 1 and chain.bus.queues["orders-out"].messages == []
    assert json.loads(caplog.records[-1].getMessage())["outcome"] == "stored"


async def test_a_throttled_write_is_retried_and_stored_once(chain: Chain) -> None:
    chain.store.failures["upsert"] = [cosmos_error(429, retry_after_ms=10), cosmos_error(503)]
    chain.input.accept(DeliveredMessage(b'{"id": "busy"}', "m-3", {}))
    await chain.process_all()
    assert len(chain.items()) == 1 and chain.store.calls["upsert"] == 3


async def test_a_result_cosmos_refuses_goes_aside_with_the_reason(chain: Chain) -> None:
    chain.store.failures["upsert"] = [cosmos_error(413, "Request size is too large")]
    chain.input.accept(DeliveredMessage(b'{"id": "huge"}', "m-4", {}))
    await chain.process_all()
    [aside] = chain.bus.queues["orders-invalid"].messages
    assert aside.application_properties["invalidReason"] == "result_too_large"
    assert chain.bus.queues["orders-out"].messages == []


async def test_a_container_partitioned_by_another_path_fails_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = Chain(monkeypatch, FakeContainer(partition_key_paths=("/tenant",)))
    chain.input.accept(DeliveredMessage(b'{"id": "a"}', "m-5", {}))
    with pytest.raises(InvocationFailed, match="COSMOS_CONTAINER.*'/tenant'"):
        await chain.process_all()
    assert chain.bus.queues["orders-invalid"].messages == []  # not the message's fault: redelivered, then dead-lettered


async def test_a_store_that_keeps_failing_fails_the_invocation_and_forwards_nothing(chain: Chain,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, QUEUE_STORE_BUDGET_SECONDS="1")
    chain.store.failures["upsert"] = [cosmos_error(503)] * 20
    chain.input.accept(DeliveredMessage(b'{"id": "a"}', "m-6", {}))
    with pytest.raises(InvocationFailed, match="503|CosmosHttpResponseError"):
        await chain.process_all()
    assert chain.bus.queues["orders-out"].messages == [] and chain.bus.queues["orders-invalid"].messages == []


@pytest.mark.parametrize("body", [
    b'[{"specversion": "1.0", "id": "b-1", "source": "/s", "type": "t"}]',
])
async def test_a_batch_shaped_body_of_one_event_is_that_event(chain: Chain, body: bytes) -> None:
    chain.input.accept(DeliveredMessage(body, "b-1", {}))
    await chain.process_all()
    assert [item["eventId"] for item in chain.items()] == ["b-1"]
