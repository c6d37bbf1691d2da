"""Event processing: validate one message, forward its result, set aside what can never succeed.

Idempotent by construction: the output message's id is derived from the input
message's id, so a redelivered input produces a message that the output
queue's duplicate detection drops. A message that can never be processed (not
UTF-8, not JSON, not an object, no string ``id``) goes to the invalid queue
with its original body and the reason, and the invocation completes. A send
that keeps failing raises after the retry budget, so Service Bus redelivers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from common import clients, telemetry
from common.logs import InvocationLog, describe_error
from common.retry import RetryPolicy, retry_async
from common.settings import QueueSettings

if TYPE_CHECKING:
    import azure.functions as func
    from azure.servicebus import ServiceBusMessage

#: Namespace of the output message ids (uuid5 of the input message id).
OUTPUT_ID_NAMESPACE = uuid.UUID("6f1c7a52-4c8e-4d55-9d8e-1c0b9a6f2e31")
MAX_REASON_LENGTH = 512

InvalidReason = Literal["not_utf8", "not_json", "not_object", "missing_id"]
Outcome = Literal["forwarded", "invalid"]


class InvalidMessage(ValueError):
    """The message can never be processed, whatever the number of retries."""

    def __init__(self, reason: InvalidReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Sender(Protocol):
    async def send_messages(self, message: ServiceBusMessage, **kwargs: Any) -> None: ...


@dataclass(frozen=True)
class InboundMessage:
    body: bytes
    message_id: str | None
    correlation_id: str | None = None
    delivery_count: int | None = None
    content_type: str | None = None
    application_properties: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_trigger(cls, msg: func.ServiceBusMessage) -> InboundMessage:
        properties = getattr(msg, "application_properties", None) or getattr(msg, "user_properties", None) or {}
        return cls(
            body=msg.get_body(),
            message_id=msg.message_id or None,
            correlation_id=msg.correlation_id or None,
            delivery_count=msg.delivery_count,
            content_type=msg.content_type or None,
            application_properties=dict(properties),
        )

    def upstream_traceparents(self) -> list[str]:
        """Trace context the producer put on the message (``Diagnostic-Id`` or ``traceparent``)."""
        found = []
        for key in ("Diagnostic-Id", "traceparent"):
            value = self.application_properties.get(key)
            if isinstance(value, bytes):
                value = value.decode("ascii", "replace")
            if isinstance(value, str) and value not in found:
                found.append(value)
        return found

    def span_attributes(self, queue: str) -> dict[str, Any]:
        return {"messaging.system": "servicebus", "messaging.operation.type": "process",
                "messaging.destination.name": queue, "messaging.message.id": self.message_id,
                "messaging.servicebus.message.delivery_count": self.delivery_count}

    @property
    def effective_id(self) -> str:
        """The message id; for a message without one, a stable id derived from its body."""
        return self.message_id or "sha256-" + hashlib.sha256(self.body).hexdigest()[:40]


def parse_event(body: bytes) -> dict[str, Any]:
    """The message's JSON object, or :class:`InvalidMessage` saying why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage("not_utf8", f"body is not UTF-8 (invalid byte at position {exc.start})") from None
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidMessage("not_json", f"body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise InvalidMessage("not_json", "body nests JSON too deeply") from None
    except ValueError as exc:  # for example an integer past Python's digit limit
        raise InvalidMessage("not_json", f"body is not JSON ({str(exc)[:200]})") from None
    if not isinstance(event, dict):
        raise InvalidMessage("not_object", f"body is a JSON {type(event).__name__}, not an object")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise InvalidMessage("missing_id", "body has no non-empty string 'id'")
    try:
        event_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage("missing_id", "body's 'id' holds an unpaired UTF-16 surrogate, which is not text") from None
    return event


def output_message_id(input_message_id: str) -> str:
    """The same input id always gives the same output id (for duplicate detection)."""
    return str(uuid.uuid5(OUTPUT_ID_NAMESPACE, input_message_id))


def build_result(event: Mapping[str, Any], source_message_id: str, now: datetime) -> dict[str, Any]:
    return {
        "id": event["id"],
        "status": "processed",
        "processedTimestamp": now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sourceMessageId": source_message_id,
        "payload": dict(event),
    }


def _property_value(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, bytes)) or value is None:
        return value
    return json.dumps(value, default=str)


def result_message(inbound: InboundMessage, event: Mapping[str, Any], now: datetime) -> ServiceBusMessage:
    from azure.servicebus import ServiceBusMessage

    source_id = inbound.effective_id
    return ServiceBusMessage(
        # ASCII-escaped: a payload may hold escapes (a lone surrogate) that UTF-8 cannot encode.
        json.dumps(build_result(event, source_id, now)),
        message_id=output_message_id(source_id),
        correlation_id=inbound.correlation_id or source_id,
        content_type="application/json",
        application_properties={"sourceMessageId": source_id, "eventId": str(event["id"])[:256]},
    )


def invalid_message(inbound: InboundMessage, error: InvalidMessage, source_queue: str) -> ServiceBusMessage:
    """The original body and id, with the reason in application properties."""
    from azure.servicebus import ServiceBusMessage

    properties: dict[str | bytes, Any] = {str(k): _property_value(v) for k, v in inbound.application_properties.items()}
    properties.update(
        invalidReason=error.reason,
        invalidDetail=error.detail[:MAX_REASON_LENGTH],
        sourceQueue=source_queue,
        sourceMessageId=inbound.effective_id,
        sourceDeliveryCount=inbound.delivery_count if inbound.delivery_count is not None else 0,
    )
    return ServiceBusMessage(
        inbound.body,
        message_id=inbound.effective_id,
        correlation_id=inbound.correlation_id or inbound.effective_id,
        content_type=inbound.content_type,
        application_properties=properties,
    )


async def send_with_retry(queue: str, message: ServiceBusMessage, policy: RetryPolicy, log: InvocationLog,
                          sender_for: Callable[[str], Sender]) -> None:
    """Send once, retrying transient failures within the policy's budget; then raise."""

    async def attempt() -> None:
        try:
            await sender_for(queue).send_messages(message)
        except (TimeoutError, asyncio.CancelledError):
            # The link may be half-open after a cancelled send: the next attempt starts on a new one.
            clients.discard_queue_sender(queue)
            raise

    def on_retry(attempt_number: int, delay: float, error: BaseException) -> None:
        telemetry.count("app.queue.send_retries", **{"messaging.destination.name": queue})
        log.warning("message.send_retry", queue=queue, attempt=attempt_number, delayS=round(delay, 3),
                    error=describe_error(error))

    with telemetry.span(f"send {queue}", kind="producer", attributes={
            "messaging.system": "servicebus", "messaging.operation.type": "send",
            "messaging.destination.name": queue, "messaging.message.id": message.message_id}):
        # The consumer of this message continues (links to) this trace.
        properties: dict[str | bytes, Any] = dict(message.application_properties or {})
        properties.update(telemetry.trace_headers())
        message.application_properties = properties
        await retry_async(attempt, policy, on_retry=on_retry)


async def process_message(
    inbound: InboundMessage,
    *,
    queues: QueueSettings,
    log: InvocationLog,
    sender_for: Callable[[str], Sender] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Outcome:
    """Forward the processed result, or route the message aside; raise if neither send succeeds.

    ``sender_for(queue)`` defaults to ``common.clients.queue_sender`` (looked up per call).
    """
    started = time.perf_counter()
    if sender_for is None:
        def sender_for(queue: str) -> Sender:
            return clients.queue_sender(queue)

    # A send that hangs (a half-open link) is abandoned after a third of the budget and retried
    # on a new link, so one stuck connection cannot use up the whole budget.
    policy = RetryPolicy(max_attempts=queues.send_max_attempts, total_budget=queues.send_budget_seconds,
                         base_delay=0.5, max_delay=5.0, attempt_timeout=queues.send_budget_seconds / 3)
    log = log.bind(messageId=inbound.message_id, deliveryCount=inbound.delivery_count)
    if inbound.delivery_count is not None and inbound.delivery_count > 1:
        log.warning("message.redelivered", deliveryCount=inbound.delivery_count)

    def elapsed_ms() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    def outcome(name: str) -> None:
        telemetry.count("app.queue.messages", outcome=name, **{"messaging.destination.name": queues.input_queue})
        telemetry.record_duration("messaging.process.duration", time.perf_counter() - started, outcome=name)

    try:
        event = parse_event(inbound.body)
    except InvalidMessage as error:
        try:
            await send_with_retry(queues.invalid_queue, invalid_message(inbound, error, queues.input_queue),
                                  policy, log, sender_for)
        except Exception as exc:
            outcome("failed")
            log.error("message.failed", outcome="failed", stage="route_invalid", reason=error.reason,
                      error=describe_error(exc), durationMs=elapsed_ms())
            raise
        outcome("invalid")
        log.warning("message.routed_invalid", outcome="invalid", reason=error.reason, detail=error.detail,
                    queue=queues.invalid_queue, durationMs=elapsed_ms())
        return "invalid"

    try:
        message = result_message(inbound, event, now())
        await send_with_retry(queues.output_queue, message, policy, log, sender_for)
    except Exception as exc:
        outcome("failed")
        log.error("message.failed", outcome="failed", stage="forward", error=describe_error(exc),
                  durationMs=elapsed_ms())
        raise
    outcome("forwarded")
    log.info("message.forwarded", outcome="forwarded", queue=queues.output_queue,
             outputMessageId=message.message_id, durationMs=elapsed_ms())
    return "forwarded"
