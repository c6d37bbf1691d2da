"""Event processing: validate one message, store its result, forward it, set aside what can never succeed.

A message carries a CloudEvent or a plain JSON event with a string ``id``; its result is upserted
into Cosmos DB and forwarded to ``OUTPUT_QUEUE_NAME`` when set. Item and output ids derive from the
event, so a redelivery rewrites the same item and sends a message duplicate detection drops. What
can never be processed goes to the invalid queue with its reason; a write or send past its budget
raises, so Service Bus redelivers. docs/event-chain.md has the contract.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from common import cloud_events, telemetry
from common.cosmos import partition_key_of
from common.errors import ConfigurationError, InvalidInput, Reason
from common.logs import InvocationLog, describe_error, sane_correlation_id
from common.retry import RetryPolicy, cosmos_write_policy, queue_send_policy, retry_async
from common.settings import QueueSettings
from common.strict_json import JsonInputError, dumps, has_unpaired_surrogate, loads
from common.timing import elapsed_ms, utc_timestamp

if TYPE_CHECKING:
    import azure.functions as func
    from azure.cosmos.aio import ContainerProxy
    from azure.servicebus import ServiceBusMessage

#: Namespace of the output message ids (uuid5 of the input message id).
OUTPUT_ID_NAMESPACE = uuid.UUID("6f1c7a52-4c8e-4d55-9d8e-1c0b9a6f2e31")
#: Namespace of the stored items' ids (uuid5 of the event's source and id).
ITEM_ID_NAMESPACE = uuid.UUID("0d7c2f4e-5b1a-4f3e-9a6d-2c8e7b1f4a90")
#: The type stored for a plain event, which names none.
PLAIN_EVENT_TYPE = "plain"
MAX_REASON_LENGTH = 512

Outcome = Literal["forwarded", "stored", "invalid"]


class InvalidMessage(InvalidInput):
    """The message can never be processed, whatever the number of retries."""

    reason: Reason

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail, reason=reason)

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class Sender(Protocol):
    async def send_messages(self, message: ServiceBusMessage, **kwargs: Any) -> None: ...


@dataclass(frozen=True)
class ParsedEvent:
    """What a message carries: a validated CloudEvent, or a plain JSON event with a string ``id``."""

    event: dict[str, Any]
    cloud_event: bool

    @property
    def id(self) -> str:
        return str(self.event["id"])

    @property
    def source(self) -> str | None:
        return str(self.event["source"]) if self.cloud_event else None

    @property
    def type(self) -> str | None:
        return str(self.event["type"]) if self.cloud_event else None

    @property
    def traceparent(self) -> str | None:
        """The producer's trace context (the CloudEvents distributed tracing extension)."""
        return cloud_events.valid_traceparent(self.event.get("traceparent")) if self.cloud_event else None


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

    @functools.cached_property
    def parsed(self) -> ParsedEvent | InvalidMessage:
        """The body read once: the event, or why it can never be processed."""
        try:
            return read_event(self.body)
        except InvalidMessage as error:
            return error

    def event_correlation_id(self) -> str | None:
        """The correlation id PublishEvent put on the event (the ``correlationid`` extension)."""
        parsed = self.parsed
        value = parsed.event.get("correlationid") if isinstance(parsed, ParsedEvent) and parsed.cloud_event else None
        return sane_correlation_id(value)

    def event_traceparent(self) -> str | None:
        """The trace context the event's producer put on the event itself (PublishEvent's request)."""
        parsed = self.parsed
        return parsed.traceparent if isinstance(parsed, ParsedEvent) else None

    def log_correlation_id(self) -> str | None:
        """The id the invocation's log lines carry: the message's, else the event's, else the message id."""
        return self.correlation_id or self.event_correlation_id() or self.message_id

    @property
    def effective_id(self) -> str:
        """The message id; for a message without one, a stable id derived from its body."""
        return self.message_id or "sha256-" + hashlib.sha256(self.body).hexdigest()[:40]


def read_event(body: bytes) -> ParsedEvent:
    """The message's event, read strictly, or :class:`InvalidMessage` saying why not.

    A JSON object with ``specversion`` is a CloudEvent in structured mode and must be valid
    (:func:`common.cloud_events.validate`); a one-event JSON array of one is read as that event
    (Event Grid delivers one event per message, but a batch-shaped body of one is unambiguous).
    Any other object is a plain event and needs a non-empty string ``id``.
    """
    try:
        value = loads(body)
    except JsonInputError as exc:
        raise InvalidMessage("not_utf8" if exc.reason == "not_utf8" else "not_json", f"body {exc.detail}") from None
    if isinstance(value, list) and len(value) == 1 and cloud_events.is_cloud_event(value[0]):
        value = value[0]
    if not isinstance(value, dict):
        raise InvalidMessage("not_object", f"body is a JSON {type(value).__name__}, not an object")
    if cloud_events.is_cloud_event(value):
        try:
            return ParsedEvent(cloud_events.validate(value), cloud_event=True)
        except cloud_events.CloudEventError as exc:
            raise InvalidMessage("invalid_cloud_event", f"body is not a valid CloudEvent: {exc.detail}") from None
    event_id = value.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise InvalidMessage("missing_id", "body has no non-empty string 'id'")
    if has_unpaired_surrogate(event_id):
        raise InvalidMessage("missing_id", "body's 'id' holds an unpaired UTF-16 surrogate, which is not text")
    return ParsedEvent(value, cloud_event=False)


def output_message_id(item_id: str, event: Mapping[str, Any]) -> str:
    """The forwarded message's id: the same event, with the same content, always gives the same id,
    whatever message carried it, so the output queue's duplicate detection drops a redelivery and a
    producer's resend alike. Storing and forwarding share the event's identity (``item_id``);
    the content hash leaves out the trace context and correlation id, which a resend renews.
    A changed event under the same identity is forwarded again (and its item rewritten)."""
    content = {k: v for k, v in event.items() if k not in TRANSPORT_ATTRIBUTES}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
    return str(uuid.uuid5(OUTPUT_ID_NAMESPACE, f"{item_id}\n{digest}"))


#: Attributes of an event that belong to its transport, not its content.
TRANSPORT_ATTRIBUTES = frozenset({*cloud_events.TRACE_ATTRIBUTES, "correlationid"})


def build_result(parsed: ParsedEvent, source_message_id: str, now: datetime) -> dict[str, Any]:
    """The processed result: what is stored and what is forwarded.

    A plain event's result carries the whole event as ``payload``; a CloudEvent's carries its
    identity (``id``, ``source``, ``type``, ``subject``, ``time``) and its data as ``payload``
    (or ``payloadBase64`` for binary data).
    """
    result: dict[str, Any] = {"id": parsed.id}
    if parsed.cloud_event:
        event = parsed.event
        result.update({name: event[name] for name in ("source", "type", "subject", "time") if name in event})
    result.update(status="processed", processedTimestamp=utc_timestamp(now), sourceMessageId=source_message_id)
    if not parsed.cloud_event:
        result["payload"] = dict(parsed.event)
    elif "data_base64" in parsed.event:
        result["payloadBase64"] = parsed.event["data_base64"]
    else:
        result["payload"] = parsed.event.get("data")
    return result


def item_id(source: str, event_id: str) -> str:
    """The stored item's id: the same event (source and id, as CloudEvents identify one) always
    gives the same id, made only of characters Cosmos DB accepts in an id."""
    return str(uuid.uuid5(ITEM_ID_NAMESPACE, json.dumps([source, event_id], ensure_ascii=False)))


def stored_item(parsed: ParsedEvent, result: Mapping[str, Any], input_queue: str) -> dict[str, Any]:
    """The Cosmos DB item of a result. ``timestamp`` is what CleanupTimer's retention reads;
    ``metadata.source`` and ``metadata.type`` are shaped as BlobEtl's items, so the container's
    partition key may be ``/id`` or ``/metadata/source`` for both. A plain event's source is
    its queue."""
    source = parsed.source or f"/queues/{input_queue}"
    return {
        **result,
        "id": item_id(source, parsed.id),
        "eventId": parsed.id,
        "timestamp": result["processedTimestamp"],
        "metadata": {"source": source, "type": parsed.type or PLAIN_EVENT_TYPE},
    }


async def store_result(container: ContainerProxy, item: dict[str, Any], policy: RetryPolicy,
                       log: InvocationLog) -> None:
    """Upsert ``item``, retrying transient failures within the policy; then raise.

    Raises :class:`InvalidMessage` when Cosmos DB refuses the item itself (400, or 413 for an
    item over 2 MB): no retry can store it. Raises :class:`ConfigurationError` when the
    container's partition key is a path the item does not carry.
    """
    from azure.cosmos.exceptions import CosmosHttpResponseError

    key = await partition_key_of(container)
    try:
        key.value_of(item)
    except KeyError as missing:
        raise ConfigurationError(
            "COSMOS_CONTAINER", f"names container '{container.id}', partitioned by {missing}, a path the stored "
            "events do not carry (they carry /id, /metadata/source and /metadata/type)") from None

    def on_retry(attempt_number: int, delay: float, error: BaseException) -> None:
        log.warning("message.store_retry", container=container.id, attempt=attempt_number,
                    delayS=round(delay, 3), error=describe_error(error))

    with telemetry.span(f"upsert {container.id}", kind="client", attributes={
            "db.system.name": "azure.cosmosdb", "db.operation.name": "upsert_item",
            "db.collection.name": container.id}):
        try:
            await retry_async(lambda: container.upsert_item(item), policy, on_retry=on_retry)
        except CosmosHttpResponseError as exc:
            if exc.status_code == 413:
                raise InvalidMessage("result_too_large", "the processed result is larger than a Cosmos DB item "
                                     f"may be: {describe_error(exc)}") from None
            if exc.status_code == 400:
                raise InvalidMessage("not_storable", f"Cosmos DB refused the result: {describe_error(exc)}") from None
            raise


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


def result_message(inbound: InboundMessage, result: Mapping[str, Any], message_id: str) -> ServiceBusMessage:
    from azure.servicebus import ServiceBusMessage

    source_id = inbound.effective_id
    properties: dict[str | bytes, Any] = {"sourceMessageId": source_id, "eventId": _text(str(result["id"])[:256])}
    for name, key in (("source", "eventSource"), ("type", "eventType")):
        if name in result:
            properties[key] = _text(str(result[name])[:256])
    return ServiceBusMessage(
        # UTF-8, not ASCII escapes (which double non-Latin text against the 256 KB limit of the
        # Standard tier); strict JSON, so no NaN or Infinity reaches a consumer.
        dumps(result),
        message_id=message_id,
        correlation_id=inbound.correlation_id or source_id,
        content_type="application/json",
        application_properties=properties,
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
    container: ContainerProxy,
    sender_for: Callable[[str], Sender],
    discard_sender: Callable[[str], None] = _no_discard,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Outcome:
    """Store the processed result and forward it (when an output queue is set), or route the
    message aside; raise if that cannot be done within the budgets.

    ``sender_for(queue)`` gives the sender of a queue (looked up per send); ``discard_sender(queue)``
    drops a cached one whose link may be half-open.
    """
    started = time.perf_counter()
    discard = discard_sender
    policy = queue_send_policy(queues.send_max_attempts, queues.send_budget_seconds)
    log = log.bind(messageId=inbound.message_id, deliveryCount=inbound.delivery_count)
    if inbound.delivery_count is not None and inbound.delivery_count > 1:
        log.warning("message.redelivered", deliveryCount=inbound.delivery_count)

    def outcome(name: str) -> None:
        telemetry.count("app.queue.messages", outcome=name, **{"messaging.destination.name": queues.input_queue})
        telemetry.record_duration("messaging.process.duration", time.perf_counter() - started, outcome=name)

    def failed(stage: str, exc: BaseException, **fields: Any) -> None:
        outcome("failed")
        log.error("message.failed", outcome="failed", stage=stage, error=describe_error(exc),
                  durationMs=elapsed_ms(started), **fields)

    async def route_aside(error: InvalidMessage) -> Outcome:
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
            failed("route_invalid", exc, reason=error.reason)
            raise
        outcome("invalid")
        log.warning("message.routed_invalid", outcome="invalid", reason=error.reason, detail=error.detail,
                    queue=queues.invalid_queue, durationMs=elapsed_ms(started))
        return "invalid"

    parsed = inbound.parsed
    if isinstance(parsed, InvalidMessage):
        return await route_aside(parsed)
    log = log.bind(eventId=parsed.id[:128])
    result = build_result(parsed, inbound.effective_id, now())
    item = stored_item(parsed, result, queues.input_queue)

    try:
        await store_result(container, item,
                           cosmos_write_policy(queues.store_budget_seconds), log)
    except InvalidMessage as error:
        return await route_aside(error)
    except Exception as exc:
        failed("store", exc)
        raise
    if queues.output_queue is None:
        outcome("stored")
        log.info("message.stored", outcome="stored", itemId=item["id"], durationMs=elapsed_ms(started))
        return "stored"

    try:
        message = result_message(inbound, result, output_message_id(item["id"], parsed.event))
        await send_with_retry(queues.output_queue, message, policy, log, sender_for, discard)
    except Exception as exc:
        if _is_too_large(exc):
            # Retrying cannot shrink it: set the input aside with the reason instead of
            # failing every delivery until Service Bus dead-letters it without one.
            size = len(b"".join(message.body))
            return await route_aside(InvalidMessage(
                "result_too_large", f"the processed result ({size} bytes of body) is stored as item "
                f"'{item['id']}' but is larger than queue '{queues.output_queue}' accepts: {describe_error(exc)}"))
        failed("forward", exc)
        raise
    outcome("forwarded")
    log.info("message.forwarded", outcome="forwarded", queue=queues.output_queue, itemId=item["id"],
             outputMessageId=message.message_id, durationMs=elapsed_ms(started))
    return "forwarded"
