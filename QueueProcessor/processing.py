"""Event processing: validate one message, forward its result, set aside what can never succeed.

Idempotent by construction: the output message's id is derived from the input
message's id, so a redelivered input produces a message that the output
queue's duplicate detection drops. A message that can never be processed (not
UTF-8, not strict JSON, not an object, no string ``id``, or a result too large
to send) goes to the invalid queue with its original body, its application
properties and the reason, and the invocation completes. A send that keeps
failing raises after the retry budget, so Service Bus redelivers.

Strict JSON in and out (:mod:`common.strict_json`): ``NaN``, ``Infinity`` and
numbers beyond a double's range are refused on the way in, and the result is
written as UTF-8 JSON with no non-standard constants, so a strict consumer
reads exactly what was sent.

Errors (:mod:`common.errors`): :func:`process_message` raises nothing for bad
input (it is set aside); it raises :class:`~common.errors.ConfigurationError`
for a bad setting and lets a send that failed past its retry budget (an SDK
error) propagate, so Service Bus redelivers, then dead-letters.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from common import clients, telemetry
from common.errors import InvalidInput
from common.logs import InvocationLog, describe_error
from common.retry import RetryPolicy, queue_send_policy, retry_async
from common.settings import QueueSettings
from common.timing import elapsed_ms, utc_timestamp
from common.strict_json import JsonInputError, dumps, has_unpaired_surrogate, loads

if TYPE_CHECKING:
    import azure.functions as func
    from azure.servicebus import ServiceBusMessage

#: Namespace of the output message ids (uuid5 of the input message id).
OUTPUT_ID_NAMESPACE = uuid.UUID("6f1c7a52-4c8e-4d55-9d8e-1c0b9a6f2e31")
MAX_REASON_LENGTH = 512

InvalidReason = Literal["not_utf8", "not_json", "not_object", "missing_id", "result_too_large"]
Outcome = Literal["forwarded", "invalid"]


class InvalidMessage(InvalidInput):
    """The message can never be processed, whatever the number of retries."""

    reason: InvalidReason

    def __init__(self, reason: InvalidReason, detail: str) -> None:
        super().__init__(detail, reason=reason)

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


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
    """The message's JSON object, read strictly, or :class:`InvalidMessage` saying why not."""
    try:
        event = loads(body)
    except JsonInputError as exc:
        raise InvalidMessage("not_utf8" if exc.reason == "not_utf8" else "not_json", f"body {exc.detail}") from None
    if not isinstance(event, dict):
        raise InvalidMessage("not_object", f"body is a JSON {type(event).__name__}, not an object")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise InvalidMessage("missing_id", "body has no non-empty string 'id'")
    if has_unpaired_surrogate(event_id):
        raise InvalidMessage("missing_id", "body's 'id' holds an unpaired UTF-16 surrogate, which is not text")
    return event


def output_message_id(input_message_id: str) -> str:
    """The same input id always gives the same output id (for duplicate detection)."""
    return str(uuid.uuid5(OUTPUT_ID_NAMESPACE, input_message_id))


def build_result(event: Mapping[str, Any], source_message_id: str, now: datetime) -> dict[str, Any]:
    return {
        "id": event["id"],
        "status": "processed",
        "processedTimestamp": utc_timestamp(now),
        "sourceMessageId": source_message_id,
        "payload": dict(event),
    }


_INT32 = range(-(2**31), 2**31)
_INT64 = range(-(2**63), 2**63)
_UINT64 = range(2**63, 2**64)


def _text(value: str) -> str:
    """AMQP strings are UTF-8: half of a UTF-16 pair is written as its ``\\uXXXX`` escape."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if has_unpaired_surrogate(value) else value


def _property_value(value: Any) -> Any:
    """An application property as the AMQP encoder can send it, whatever the producer put there.

    The trigger hands properties over as JSON values, so a .NET ``long`` (epoch milliseconds,
    a sequence number) arrives as a plain int, and the SDK encodes every plain int as a 32-bit
    AMQP int: anything larger fails every send (azure-sdk-for-python issue 34717). Such ints go
    as AMQP ``long`` (or ``ulong`` up to 2**64), through the typed-value form the SDK's encoder
    accepts; larger ones, which AMQP cannot carry, as their decimal text. Lists and objects
    (not AMQP simple types) go as their JSON text. Bytes (which the trigger's JSON cannot carry,
    but an in-process caller can) go as text, as the SDK sends them: decoded if UTF-8, else
    as base64, since the SDK's decoding would fail every send.
    """
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, bytes):
        try:
            return _text(value.decode("utf-8"))
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    if isinstance(value, int):
        if value in _INT32:
            return value
        from azure.servicebus._pyamqp.types import TYPE, VALUE, AMQPTypes

        if value in _INT64:
            return {TYPE: AMQPTypes.long, VALUE: value}
        if value in _UINT64:
            return {TYPE: AMQPTypes.ulong, VALUE: value}
        return str(value)
    if isinstance(value, str):
        return _text(value)
    return _text(json.dumps(value, default=str))


def result_message(inbound: InboundMessage, event: Mapping[str, Any], now: datetime) -> ServiceBusMessage:
    from azure.servicebus import ServiceBusMessage

    source_id = inbound.effective_id
    return ServiceBusMessage(
        # UTF-8, not ASCII escapes (which double non-Latin text against the 256 KB limit of the
        # Standard tier); strict JSON, so no NaN or Infinity reaches a consumer.
        dumps(build_result(event, source_id, now)),
        message_id=output_message_id(source_id),
        correlation_id=inbound.correlation_id or source_id,
        content_type="application/json",
        application_properties={"sourceMessageId": source_id, "eventId": str(event["id"])[:256]},
    )


#: Properties the set-aside copy sets itself (the reason, and the trace context of the send).
SET_ASIDE_PROPERTIES = frozenset({"invalidReason", "invalidDetail", "sourceQueue", "sourceMessageId",
                                  "sourceDeliveryCount", "traceparent", "tracestate", "Diagnostic-Id"})
#: The prefix under which a producer's property of one of those names is kept.
ORIGINAL_PREFIX = "original."
#: invalidDetail's length in a copy that must be small to fit the queue's message size limit.
COMPACT_DETAIL_LENGTH = 64


def invalid_message(inbound: InboundMessage, error: InvalidMessage, source_queue: str, *,
                    compact: bool = False) -> ServiceBusMessage:
    """The original body, id and properties, with the reason in application properties.

    A producer's property whose name the copy uses itself is kept as ``original.<name>``.
    ``compact`` trims the detail, for an input so close to the size limit that the full
    copy does not fit.
    """
    from azure.servicebus import ServiceBusMessage

    properties: dict[str | bytes, Any] = {}
    for key, value in inbound.application_properties.items():
        name = _text(str(key))
        properties[ORIGINAL_PREFIX + name if name in SET_ASIDE_PROPERTIES else name] = _property_value(value)
    properties.update(
        invalidReason=error.reason,
        invalidDetail=error.detail[:COMPACT_DETAIL_LENGTH if compact else MAX_REASON_LENGTH],
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


def _no_discard(queue: str) -> None:
    """For injected senders: nothing is cached here, so nothing to drop."""


async def send_with_retry(queue: str, message: ServiceBusMessage, policy: RetryPolicy, log: InvocationLog,
                          sender_for: Callable[[str], Sender],
                          discard_sender: Callable[[str], None] = _no_discard) -> None:
    """Send once, retrying transient failures within the policy's budget; then raise.

    ``discard_sender(queue)`` is called after a send timed out or was cancelled: the link may
    be half-open, so the next attempt should get a new sender from ``sender_for``.
    """

    async def attempt() -> None:
        try:
            await sender_for(queue).send_messages(message)
        except (TimeoutError, asyncio.CancelledError):
            discard_sender(queue)
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


def _is_too_large(error: BaseException) -> bool:
    from azure.servicebus.exceptions import MessageSizeExceededError

    return isinstance(error, MessageSizeExceededError)


async def process_message(
    inbound: InboundMessage,
    *,
    queues: QueueSettings,
    log: InvocationLog,
    sender_for: Callable[[str], Sender] | None = None,
    discard_sender: Callable[[str], None] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Outcome:
    """Forward the processed result, or route the message aside; raise if neither send succeeds.

    ``sender_for(queue)`` and ``discard_sender(queue)`` default to ``common.clients``'
    ``queue_sender`` and ``discard_queue_sender`` (looked up per call); a caller that passes its
    own ``sender_for`` may pass a ``discard_sender`` too (otherwise nothing is discarded).
    """
    started = time.perf_counter()
    if sender_for is None:
        sender_for = clients.queue_sender
        discard_sender = discard_sender or clients.discard_queue_sender
    discard = discard_sender or _no_discard
    policy = queue_send_policy(queues.send_max_attempts, queues.send_budget_seconds)
    log = log.bind(messageId=inbound.message_id, deliveryCount=inbound.delivery_count)
    if inbound.delivery_count is not None and inbound.delivery_count > 1:
        log.warning("message.redelivered", deliveryCount=inbound.delivery_count)

    def outcome(name: str) -> None:
        telemetry.count("app.queue.messages", outcome=name, **{"messaging.destination.name": queues.input_queue})
        telemetry.record_duration("messaging.process.duration", time.perf_counter() - started, outcome=name)

    async def route_aside(error: InvalidMessage) -> Outcome:
        assert sender_for is not None
        try:
            try:
                await send_with_retry(queues.invalid_queue, invalid_message(inbound, error, queues.input_queue),
                                      policy, log, sender_for, discard)
            except Exception as exc:
                if not _is_too_large(exc):
                    raise
                # The input came within a few hundred bytes of the limit: the copy's properties tip
                # it over. Once more with the detail trimmed; if even that does not fit, the
                # invocation fails and Service Bus dead-letters the whole message, body included.
                await send_with_retry(queues.invalid_queue,
                                      invalid_message(inbound, error, queues.input_queue, compact=True),
                                      policy, log, sender_for, discard)
        except Exception as exc:
            outcome("failed")
            log.error("message.failed", outcome="failed", stage="route_invalid", reason=error.reason,
                      error=describe_error(exc), durationMs=elapsed_ms(started))
            raise
        outcome("invalid")
        log.warning("message.routed_invalid", outcome="invalid", reason=error.reason, detail=error.detail,
                    queue=queues.invalid_queue, durationMs=elapsed_ms(started))
        return "invalid"

    try:
        event = parse_event(inbound.body)
    except InvalidMessage as error:
        return await route_aside(error)

    try:
        message = result_message(inbound, event, now())
        await send_with_retry(queues.output_queue, message, policy, log, sender_for, discard)
    except Exception as exc:
        if _is_too_large(exc):
            # Retrying cannot shrink it: set the input aside with the reason instead of
            # failing every delivery until Service Bus dead-letters it without one.
            size = len(b"".join(message.body))
            return await route_aside(InvalidMessage(
                "result_too_large", f"the processed result ({size} bytes of body) is larger than queue "
                f"'{queues.output_queue}' accepts: {describe_error(exc)}"))
        outcome("failed")
        log.error("message.failed", outcome="failed", stage="forward", error=describe_error(exc),
                  durationMs=elapsed_ms(started))
        raise
    outcome("forwarded")
    log.info("message.forwarded", outcome="forwarded", queue=queues.output_queue,
             outputMessageId=message.message_id, durationMs=elapsed_ms(started))
    return "forwarded"
