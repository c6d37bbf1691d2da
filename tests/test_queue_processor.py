from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage as ServiceBusTriggerMessage
from azure.servicebus import exceptions as sb

import QueueProcessor
from common import clients
from common.logs import InvocationFailed
from common.settings import QueueSettings
from QueueProcessor.processing import InboundMessage, item_id, output_message_id, process_message, read_event
from tests.conftest import FakeContext, set_env, use_fake_clients
from tests.fakes import FakeContainer, FakeServiceBus

QUEUES = QueueSettings(input_queue="in", output_queue="out", invalid_queue="invalid",
                       send_max_attempts=4, send_budget_seconds=5.0)


@pytest.fixture
def store() -> FakeContainer:
    """The Cosmos DB container results are stored in (partitioned by /id, as infra/ creates it)."""
    return FakeContainer()


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch, store: FakeContainer) -> FakeServiceBus:
    fake = FakeServiceBus("out", "invalid")
    use_fake_clients(monkeypatch, bus=fake, cosmos=store)
    set_env(monkeypatch, INPUT_QUEUE_NAME="in", OUTPUT_QUEUE_NAME="out", INVALID_QUEUE_NAME="invalid",
            QUEUE_SEND_MAX_ATTEMPTS="4", QUEUE_SEND_BUDGET_SECONDS="5")
    return fake


def trigger(body: bytes | str | dict[str, Any], *, message_id: str | None = "msg-1", delivery_count: int = 1,
            correlation_id: str | None = None, properties: dict[str, Any] | None = None,
            content_type: str | None = "application/json") -> func.ServiceBusMessage:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return ServiceBusTriggerMessage(body=body, message_id=message_id, delivery_count=delivery_count,
                                    correlation_id=correlation_id, content_type=content_type,
                                    application_properties=properties or {}, user_properties=properties or {})


async def run(msg: func.ServiceBusMessage) -> None:
    await QueueProcessor.main(msg, FakeContext(function_name="QueueProcessor"))


def body_of(message: Any) -> dict[str, Any]:
    return json.loads(b"".join(message.body))


async def test_valid_message_is_forwarded_once_with_derived_ids(bus: FakeServiceBus) -> None:
    await run(trigger({"id": "order-7", "amount": 12.5}, message_id="m-123", correlation_id="corr-1"))
    [out] = bus.queues["out"].messages
    assert out.message_id == output_message_id(item_id("/queues/in", "order-7"), {"id": "order-7", "amount": 12.5})
    assert out.correlation_id == "corr-1"
    assert out.content_type == "application/json"
    body = body_of(out)
    assert body["id"] == "order-7" and body["status"] == "processed" and body["sourceMessageId"] == "m-123"
    assert body["payload"] == {"id": "order-7", "amount": 12.5}
    assert body["processedTimestamp"].endswith("Z")
    assert bus.queues["invalid"].messages == []


async def test_correlation_id_falls_back_to_the_message_id(bus: FakeServiceBus) -> None:
    await run(trigger({"id": "a"}, message_id="m-9"))
    assert bus.queues["out"].messages[0].correlation_id == "m-9"


async def test_redelivery_produces_the_same_output_id_and_is_deduplicated(
        bus: FakeServiceBus, caplog: pytest.LogCaptureFixture) -> None:
    await run(trigger({"id": "a"}, message_id="m-1"))
    with caplog.at_level(logging.WARNING):
        await run(trigger({"id": "a"}, message_id="m-1", delivery_count=2))
    assert bus.senders["out"].attempts == 2
    assert len(bus.queues["out"].messages) == 1
    assert "message.redelivered" in caplog.text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe not utf8", "not_utf8"),
        (b"{not json", "not_json"),
        (b"", "not_json"),
        (b"[1, 2, 3]", "not_object"),
        (b"\"just a string\"", "not_object"),
        (b"{\"name\": \"no id\"}", "missing_id"),
        (b"{\"id\": 42}", "missing_id"),
        (b"{\"id\": \"  \"}", "missing_id"),
        (b"[" * 100000, "not_json"),
    ],
)
async def test_invalid_messages_are_routed_aside_with_reason(bus: FakeServiceBus, body: bytes, reason: str) -> None:
    await run(trigger(body, message_id="bad-1", properties={"tenant": "t1"}, correlation_id="c-5"))
    assert bus.queues["out"].messages == []
    [aside] = bus.queues["invalid"].messages
    assert b"".join(aside.body) == body
    assert aside.message_id == "bad-1"
    assert aside.correlation_id == "c-5"
    props = aside.application_properties
    assert props["invalidReason"] == reason
    assert props["invalidDetail"]
    assert props["sourceQueue"] == "in" and props["tenant"] == "t1"


async def test_failure_to_route_aside_fails_the_invocation(bus: FakeServiceBus) -> None:
    bus.senders["invalid"].failures = [sb.MessagingEntityNotFoundError(message="queue 'invalid' not found")]
    with pytest.raises(InvocationFailed, match="MessagingEntityNotFoundError"):
        await run(trigger(b"{broken"))


async def test_transient_failures_are_retried_then_succeed(bus: FakeServiceBus,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    bus.senders["out"].failures = [sb.ServiceBusServerBusyError(message="busy"),
                                   sb.ServiceBusConnectionError(message="link detached")]
    with caplog.at_level(logging.WARNING):
        await run(trigger({"id": "a"}))
    assert bus.senders["out"].attempts == 3
    assert len(bus.queues["out"].messages) == 1
    assert caplog.text.count("message.send_retry") == 2


async def test_persistent_failure_raises_after_the_attempts(bus: FakeServiceBus) -> None:
    bus.senders["out"].failures = [sb.OperationTimeoutError(message="timeout") for _ in range(10)]
    with pytest.raises(InvocationFailed, match="OperationTimeoutError"):
        await run(trigger({"id": "a"}))
    assert bus.senders["out"].attempts == 4
    assert bus.queues["out"].messages == []


async def test_permanent_send_error_is_not_retried(bus: FakeServiceBus) -> None:
    bus.senders["out"].failures = [sb.ServiceBusAuthorizationError(message="Unauthorized access. 'Send' claim(s) are required")]
    with pytest.raises(InvocationFailed, match="ServiceBusAuthorizationError"):
        await run(trigger({"id": "a"}))
    assert bus.senders["out"].attempts == 1


async def test_a_result_too_large_to_send_is_set_aside_with_its_reason_not_retried(bus: FakeServiceBus) -> None:
    # Issue 14: MessageSizeExceededError used to fail every delivery until Service Bus dead-lettered
    # the message without a reason. Retrying cannot shrink it.
    bus.senders["out"].failures = [sb.MessageSizeExceededError(message="too large")]
    await run(trigger({"id": "a"}))
    assert bus.senders["out"].attempts == 1 and bus.queues["out"].messages == []
    [aside] = bus.queues["invalid"].messages
    assert aside.application_properties["invalidReason"] == "result_too_large"
    assert "larger than queue 'out' accepts" in aside.application_properties["invalidDetail"]


async def test_unreachable_service_bus_fails_within_the_budget(bus: FakeServiceBus) -> None:
    bus.senders["out"].hang = True
    queues = QueueSettings("in", "out", "invalid", send_max_attempts=5, send_budget_seconds=1.0)
    from common.logs import bind_invocation

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await process_message(InboundMessage(b'{"id": "a"}', "m-1"), queues=queues,
                              log=bind_invocation(FakeContext()), container=FakeContainer(),
                              sender_for=bus.sender_for)
    assert loop.time() - started < 2.5


async def test_log_records_message_identity_outcome_and_duration(bus: FakeServiceBus,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        await run(trigger({"id": "a"}, message_id="m-77", delivery_count=1, correlation_id="c-77"))
    payload = json.loads(caplog.records[-1].getMessage())
    assert payload["event"] == "message.forwarded"
    assert payload["messageId"] == "m-77" and payload["correlationId"] == "c-77"
    assert payload["deliveryCount"] == 1 and payload["outcome"] == "forwarded"
    assert payload["durationMs"] >= 0


def test_a_plain_event_is_any_object_with_a_string_id() -> None:
    parsed = read_event(b'{"id": "x", "nested": {"a": [1, 2]}}')
    assert not parsed.cloud_event and parsed.event["nested"] == {"a": [1, 2]}


def test_output_ids_are_stable_and_distinct() -> None:
    event = {"id": "a", "qty": 1}
    assert output_message_id("a", event) == output_message_id("a", dict(reversed(list(event.items()))))
    assert output_message_id("a", event) != output_message_id("b", event)
    assert output_message_id("a", event) != output_message_id("a", {"id": "a", "qty": 2})
    # The transport's attributes are not the event's content: a resend renews them.
    assert output_message_id("a", {**event, "traceparent": "x", "correlationid": "c"}) == output_message_id("a", event)
    assert len(output_message_id("x" * 500, event)) == 36


async def test_the_same_event_resent_in_a_new_message_is_stored_and_forwarded_once(bus: FakeServiceBus,
                                                                                   store: FakeContainer) -> None:
    for message_id in ("m-1", "m-2", "m-3"):
        await run(trigger({"id": "order-1", "qty": 1}, message_id=message_id))
    assert len(store.items) == 1 and len(bus.queues["out"].messages) == 1
    # Changed content under the same identity: the item is rewritten and the change forwarded.
    await run(trigger({"id": "order-1", "qty": 2}, message_id="m-4"))
    assert len(store.items) == 1 and [body_of(m)["payload"]["qty"] for m in bus.queues["out"].messages] == [1, 2]


async def test_message_without_id_gets_a_stable_derived_one(bus: FakeServiceBus) -> None:
    await run(trigger({"id": "a"}, message_id=None))
    await run(trigger({"id": "a"}, message_id=None))
    assert len(bus.queues["out"].messages) == 1


async def test_failures_reach_the_host_masked(bus: FakeServiceBus) -> None:
    """The runtime hands an escaping exception's message to the host's logs: no key may be in it."""
    bus.senders["out"].failures = [sb.ServiceBusAuthenticationError(
        message="Put token failed: Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=TOPSECRETKEYVALUE==")]
    with pytest.raises(InvocationFailed) as info:
        await run(trigger({"id": "a"}))
    assert "TOPSECRETKEYVALUE" not in str(info.value)
    assert "ServiceBusAuthenticationError" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"id": "a", "n": ' + b"1" * 5000 + b"}", "not_json"),
    (b'{"id": "\\ud800"}', "missing_id"),
])
async def test_pathological_json_is_routed_aside(bus: FakeServiceBus, body: bytes, reason: str) -> None:
    await run(trigger(body))
    [aside] = bus.queues["invalid"].messages
    assert aside.application_properties["invalidReason"] == reason


async def test_payload_with_escaped_surrogate_is_forwarded_as_valid_json(bus: FakeServiceBus) -> None:
    await run(trigger(b'{"id": "a", "note": "\\udc00 broken half"}'))
    [out] = bus.queues["out"].messages
    body = b"".join(out.body)
    body.decode("utf-8")
    assert json.loads(body)["payload"]["note"] == "\udc00 broken half"


async def test_a_cancelled_send_discards_the_cached_sender_and_the_next_builds_a_new_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from common import loop_cache
    from tests.fakes import FakeQueue, FakeSender

    set_env(monkeypatch, ServiceBusConnection="Endpoint=sb://unit.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=a2V5",
            INPUT_QUEUE_NAME="in", OUTPUT_QUEUE_NAME="out", INVALID_QUEUE_NAME="invalid",
            QUEUE_SEND_BUDGET_SECONDS="3", QUEUE_SEND_MAX_ATTEMPTS="3")
    queue = FakeQueue("out")
    hanging, healthy = FakeSender(queue), FakeSender(queue)
    hanging.hang = True
    senders = iter([hanging, healthy])

    class Client:
        def get_queue_sender(self, name: str) -> FakeSender:
            return next(senders)

    use_fake_clients(monkeypatch, service_bus_client=Client(), cosmos=FakeContainer())
    await run(trigger({"id": "a"}))
    await asyncio.sleep(0)  # the discarded sender is closed in the background
    assert hanging.closed and hanging.attempts == 1
    assert healthy.attempts == 1 and len(queue.messages) == 1
    assert clients.queue_sender("out") is healthy
    loop_cache.reset()


# ---- issue 14: strict JSON in and out, every property type through the set-aside path ----

def amqp_round_trip(message: Any) -> Any:
    """Encode a message with the SDK's own AMQP encoder (as a real send does) and decode it back."""
    from azure.servicebus._pyamqp._decode import decode_payload
    from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

    encoded = bytearray()
    from azure.servicebus._pyamqp._encode import encode_payload

    encode_payload(encoded, PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message))
    return decode_payload(memoryview(encoded))


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-2.5E+999"])
async def test_non_standard_numbers_are_set_aside_not_forwarded(bus: FakeServiceBus, number: bytes) -> None:
    await run(trigger(b'{"id": "a", "amount": ' + number + b"}"))
    assert bus.queues["out"].messages == []
    [aside] = bus.queues["invalid"].messages
    assert aside.application_properties["invalidReason"] == "not_json"
    assert "not accepted" in aside.application_properties["invalidDetail"]


async def test_forwarded_body_is_strict_utf8_json(bus: FakeServiceBus) -> None:
    text = "Grüße, 東京 " * 50
    await run(trigger({"id": "a", "note": text, "big": 10**30, "x": 1.5e300}))
    [out] = bus.queues["out"].messages
    body = b"".join(out.body)
    assert text.encode("utf-8") in body  # UTF-8, not \\u escapes that double the size
    assert b"NaN" not in body and b"Infinity" not in body
    payload = json.loads(body, parse_constant=lambda name: pytest.fail(f"non-standard {name}"))
    assert payload["payload"] == {"id": "a", "note": text, "big": 10**30, "x": 1.5e300}


async def test_every_property_type_survives_the_set_aside_path(bus: FakeServiceBus) -> None:
    properties = {"epochMs": 1709502629433, "long": -(2**40), "ulong": 2**63 + 5, "beyond": 10**30,
                  "small": 7, "flag": True, "ratio": 1.5, "none": None, "text": "x\ud800y", "raw": b"\x00\xff", "utf8": "é".encode(),
                  "list": [1, 2], "object": {"a": 1}}
    await run(trigger(b"{broken", properties=properties))
    [aside] = bus.queues["invalid"].messages
    # pyamqp's decoder hands AMQP strings back as UTF-8 bytes.
    decoded = {key.decode(): value.decode() if isinstance(value, bytes) else value
               for key, value in amqp_round_trip(aside).application_properties.items()}
    assert decoded["epochMs"] == 1709502629433 and decoded["long"] == -(2**40) and decoded["ulong"] == 2**63 + 5
    assert decoded["beyond"] == str(10**30)  # AMQP has no integer past 64 bits: its exact text
    assert decoded["small"] == 7 and decoded["flag"] is True and decoded["ratio"] == 1.5 and decoded["none"] is None
    assert decoded["text"] == "x\\ud800y" and decoded["utf8"] == "é"
    assert decoded["raw"] == "AP8="  # not UTF-8: its base64 (the SDK sends bytes as text)
    assert json.loads(decoded["list"]) == [1, 2] and json.loads(decoded["object"]) == {"a": 1}
    assert decoded["invalidReason"] == "not_json"


async def test_a_set_aside_copy_too_large_is_sent_compact(bus: FakeServiceBus) -> None:
    """An input close to the size limit: the result is refused, then the full copy; the compact one fits."""
    bus.senders["out"].failures = [sb.MessageSizeExceededError(message="too large")]
    bus.senders["invalid"].failures = [sb.MessageSizeExceededError(message="too large")]
    await run(trigger({"id": "a"}))
    [aside] = bus.queues["invalid"].messages
    assert aside.application_properties["invalidReason"] == "result_too_large"
    assert len(aside.application_properties["invalidDetail"]) <= 64


async def test_when_no_copy_fits_the_invocation_fails_so_service_bus_keeps_the_whole_message(
        bus: FakeServiceBus) -> None:
    bus.senders["out"].failures = [sb.MessageSizeExceededError(message="too large")]
    bus.senders["invalid"].failures = [sb.MessageSizeExceededError(message="too large") for _ in range(2)]
    with pytest.raises(InvocationFailed, match="MessageSizeExceededError"):
        await run(trigger({"id": "a"}))
    assert bus.queues["invalid"].messages == [] and bus.queues["out"].messages == []


async def test_producer_properties_named_like_the_copys_own_are_kept_as_original(bus: FakeServiceBus) -> None:
    producer = {"traceparent": "00-11111111111111111111111111111111-2222222222222222-01",
                "Diagnostic-Id": "producer-diag", "sourceQueue": "producer-value", "tenant": "t1"}
    await run(trigger(b"{broken", properties=producer))
    [aside] = bus.queues["invalid"].messages
    props = aside.application_properties
    assert props["original.traceparent"] == producer["traceparent"]
    assert props["original.Diagnostic-Id"] == "producer-diag" and props["original.sourceQueue"] == "producer-value"
    assert props["sourceQueue"] == "in" and props["tenant"] == "t1"
