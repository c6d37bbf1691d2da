"""Accept one event over HTTP and publish it to Event Grid as a CloudEvent: ``POST /api/events``.

It receives the request's parts, a publisher (the ``send`` of
``azure.eventgrid.aio.EventGridPublisherClient``) and the settings, and returns a
:class:`~common.http_api.Reply`: 202 once Event Grid accepted the event, 4xx for an event that
can never be published, 503 with ``Retry-After`` when Event Grid did not accept it within
``EVENT_PUBLISH_BUDGET_SECONDS``. The event carries the request's trace context and correlation
id. docs/http-api.md has the contract with examples.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from common import cloud_events, strict_json, telemetry
from common.errors import ConfigurationError, InvalidInput, Reason, TransientFailure
from common.http_api import CallerCheck, Reply, Responder, admit, body_error
from common.logs import InvocationLog, describe_error
from common.retry import event_publish_policy, is_transient, retry_after_seconds, retry_async
from common.settings import EventSettings
from common.timing import utc_timestamp
from identity import Requirement, RouteAccess

__all__ = [
    "PLAIN_EVENT_SOURCE",
    "PLAIN_EVENT_TYPE",
    "BadEvent",
    "EventRequest",
    "PublishUnavailable",
    "Publisher",
    "build_event",
    "event_id_for_key",
    "respond",
]

#: The app role (application callers) or delegated scope (users) a caller needs; the API key only
#: with AUTH_MODE=apikey, the local fallback.
ACCESS = RouteAccess(Requirement(roles={"Events.Publish"}, scopes={"Events.Publish"}), api_key="apikey_mode")


#: A plain object is published as the data of a CloudEvent of this type, from this source.
PLAIN_EVENT_TYPE = "serverless-patterns.event"
PLAIN_EVENT_SOURCE = "/api/events"
#: Namespace of the event ids derived from Idempotency-Key (uuid5).
IDEMPOTENCY_NAMESPACE = uuid.UUID("8a3e6c1d-2f4b-4e7a-b5c9-3d1f0e2a6b84")
#: The extension attribute that carries the request's correlation id to QueueProcessor.
CORRELATION_ATTRIBUTE = "correlationid"
#: Visible ASCII, as an HTTP header token may hold; long enough for a UUID or a hash.
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_ACCEPTED_MEDIA_TYPES = frozenset({"application/json", "application/cloudevents+json"})
#: What a caller is told to wait when Event Grid named no time of its own.
DEFAULT_RETRY_AFTER_SECONDS = 5
MAX_RETRY_AFTER_SECONDS = 60


@dataclass(frozen=True)
class EventRequest:
    body: bytes
    api_key: str | None
    content_type: str | None = None
    caller_correlation_id: str | None = None
    idempotency_key: str | None = None
    method: str = "POST"
    authorization: str | None = None
    client_principal: str | None = None


class Publisher(Protocol):
    """What is used of ``azure.eventgrid.aio.EventGridPublisherClient``."""

    # A property: the SDK's send is wrapped by its tracing decorator, which no method signature matches.
    @property
    def send(self) -> Callable[..., Awaitable[None]]: ...


class BadEvent(InvalidInput):
    """The request cannot be published as sent: a 4xx whose detail tells the caller why."""

    def __init__(self, status: int, detail: str, reason: Reason) -> None:
        super().__init__(detail, reason=reason)
        self.status = status


class PublishUnavailable(TransientFailure):
    """Event Grid did not accept the event within the budget; a later request may succeed."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PublishRefused(ConfigurationError):
    """Event Grid refused the app itself (401/403: a missing role; 404: no such topic): what an
    operator fixes in the deployment, so a configuration error naming the topic's setting."""

    def __init__(self, detail: str) -> None:
        super().__init__("EVENT_GRID_TOPIC_ENDPOINT", "names a topic that refused the app: its identity needs "
                         f"'EventGrid Data Sender' on that topic, and the topic must exist ({detail})")


def check_content_type(value: str | None) -> None:
    """JSON or a structured CloudEvent, in UTF-8; absent is read as JSON."""
    if value is None or not value.strip():
        return
    media_type, _, parameters = value.partition(";")
    media_type = media_type.strip().lower()
    if media_type == "application/cloudevents-batch+json":
        raise BadEvent(415, "Batches are not accepted: send one event per request, as "
                       "'application/cloudevents+json' or 'application/json'.", "batch")
    if media_type not in _ACCEPTED_MEDIA_TYPES:
        raise BadEvent(415, "Content-Type must be 'application/json' or 'application/cloudevents+json'.",
                       "unsupported_media_type")
    for parameter in parameters.split(";"):
        name, _, charset = parameter.partition("=")
        if name.strip().lower() == "charset" and charset.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise BadEvent(415, "The body must be UTF-8 (charset=utf-8).", "unsupported_charset")


def event_id_for_key(idempotency_key: str) -> str:
    """The same Idempotency-Key always gives the same event id."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key))


def read_body(body: bytes, max_bytes: int) -> dict[str, Any]:
    """The body's one JSON object, read strictly; :class:`BadEvent` saying why not."""
    if len(body) > max_bytes:
        raise BadEvent(413, f"The event is {len(body)} bytes; at most {max_bytes} are accepted.", "too_large")
    if not body.strip():
        raise BadEvent(400, "The body is empty: send one event as a JSON object.", "empty")
    try:
        value = strict_json.loads(body)
    except strict_json.JsonInputError as exc:
        raise BadEvent(400, body_error(exc), "not_json") from None
    if isinstance(value, list):
        raise BadEvent(400, "Send one event per request, as a JSON object, not an array.", "batch")
    if not isinstance(value, dict):
        raise BadEvent(400, f"The body must be a JSON object, not a JSON {type(value).__name__}.", "not_object")
    return value


def build_event(value: dict[str, Any], *, idempotency_key: str | None, correlation_id: str,
                now: datetime) -> dict[str, Any]:
    """The CloudEvent to publish, as its JSON object; :class:`BadEvent` when it is not valid.

    The request's trace context replaces any ``traceparent``/``tracestate`` the caller sent
    (the event's trace is the request's), and the request's correlation id any ``correlationid``.
    """
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise BadEvent(400, "Idempotency-Key must be 1 to 255 visible ASCII characters.", "bad_idempotency_key")
    if cloud_events.is_cloud_event(value):
        event = dict(value)
    else:
        event = {
            "specversion": cloud_events.SPEC_VERSION,
            "id": event_id_for_key(idempotency_key) if idempotency_key else str(uuid.uuid4()),
            "source": PLAIN_EVENT_SOURCE,
            "type": PLAIN_EVENT_TYPE,
            "time": utc_timestamp(now),
            "datacontenttype": "application/json",
            "data": value,
        }
    for name in cloud_events.TRACE_ATTRIBUTES:
        event.pop(name, None)
    event[CORRELATION_ATTRIBUTE] = correlation_id
    try:
        return cloud_events.validate(event)
    except cloud_events.CloudEventError as exc:
        raise BadEvent(400, f"The event is not a valid CloudEvent: {exc.detail}.", "invalid_cloud_event") from None


def to_sdk_event(event: dict[str, Any]) -> Any:
    """``event`` (validated) as ``azure.core.messaging.CloudEvent``, built attribute by attribute.

    Not ``CloudEvent.from_dict``: it reads a ``time`` offset by its first digit only (``+05:30``
    became ``-00:30``) and refuses a lower-case ``t`` or ``z``. The time is parsed here, by the
    rules both ends apply, and sent in UTC: the same instant, to the microsecond.
    """
    import base64

    from azure.core.messaging import CloudEvent

    extensions = {k: v for k, v in event.items() if k not in cloud_events.CONTEXT_ATTRIBUTES}
    data: Any = base64.b64decode(event["data_base64"]) if "data_base64" in event else event.get("data")
    time = cloud_events.parse_time(event["time"]).astimezone(UTC) if "time" in event else None
    return CloudEvent(source=event["source"], type=event["type"], specversion=event["specversion"], id=event["id"],
                      time=time, data=data, subject=event.get("subject"),
                      datacontenttype=event.get("datacontenttype"), dataschema=event.get("dataschema"),
                      extensions=extensions or None)


def _status_of(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    cause = error.__cause__
    if status is None and cause is not None:
        # The SDK re-raises a 404 as a new ResourceNotFoundError without a status, from the original.
        status = getattr(cause, "status_code", None)
    return status if isinstance(status, int) else None


def _token_unavailable(error: BaseException) -> bool:
    """The managed identity endpoint failed to issue a token (a hiccup of the platform, not a
    missing role): azure-identity raises ClientAuthenticationError without an HTTP status. A
    missing identity (CredentialUnavailableError) stays a configuration error."""
    from azure.core.exceptions import ClientAuthenticationError

    if type(error).__name__ == "CredentialUnavailableError":
        return False
    return isinstance(error, ClientAuthenticationError) and _status_of(error) is None


def _retry_after(error: BaseException) -> int:
    asked = retry_after_seconds(error)
    if asked is None:
        return DEFAULT_RETRY_AFTER_SECONDS
    return max(1, min(MAX_RETRY_AFTER_SECONDS, math.ceil(asked)))


async def publish(event: dict[str, Any], publisher: Publisher, cfg: EventSettings, log: InvocationLog) -> None:
    """Publish ``event`` with the current trace context, retrying within the budget.

    Raises :class:`BadEvent` (413: too large with its trace context; 400/413: Event Grid refused
    it), :class:`PublishUnavailable` (still failing when the budget ran out: unreachable, timing
    out, throttled, 5xx) or :class:`PublishRefused` (the app is not allowed to publish).
    """
    too_large = 0
    with telemetry.span("publish events", kind="producer", attributes={
            "messaging.system": "eventgrid", "messaging.operation.type": "send",
            "messaging.message.id": event["id"]}):
        # Set here, inside the producer span, so the consumer continues this span. Set by the app,
        # the SDK's CloudEventDistributedTracingPolicy leaves the event alone (it adds the context
        # only to events that have none).
        headers = telemetry.trace_headers()
        stamped = dict(event)
        for name in cloud_events.TRACE_ATTRIBUTES:
            if headers.get(name):
                stamped[name] = headers[name]
        size = len(strict_json.dumps(stamped))
        if size > cfg.max_event_bytes:
            too_large = size
        else:
            try:
                cloud_event = to_sdk_event(stamped)
            except ValueError as exc:  # a rule of azure-core's CloudEvent that common.cloud_events lacks
                raise BadEvent(400, f"The event cannot be sent as a CloudEvent: {exc}", "invalid_cloud_event") from None

            def on_retry(attempt_number: int, delay: float, error: BaseException) -> None:
                telemetry.count("app.events.publish_retries")
                log.warning("event.publish_retry", attempt=attempt_number, delayS=round(delay, 3),
                            error=describe_error(error))

            try:
                await retry_async(lambda: publisher.send(cloud_event), event_publish_policy(cfg.publish_budget_seconds),
                                  on_retry=on_retry)
            except Exception as exc:
                status = _status_of(exc)
                if is_transient(exc) or _token_unavailable(exc):
                    raise PublishUnavailable(describe_error(exc), _retry_after(exc)) from None
                if status == 400:
                    raise BadEvent(400, f"Event Grid refused the event: {describe_error(exc, 300)}",
                                   "refused_by_event_grid") from None
                if status == 413:
                    raise BadEvent(413, "Event Grid refused the event as too large.", "too_large") from None
                if status in (401, 403, 404):
                    raise PublishRefused(describe_error(exc)) from None
                raise
    if too_large:
        raise BadEvent(413, f"The event with its trace context is {too_large} bytes; at most {cfg.max_event_bytes} "
                       "are accepted.", "too_large")


async def respond(
    request: EventRequest,
    *,
    invocation_id: str,
    log: InvocationLog,
    publisher: Callable[[], Publisher],
    read_settings: Callable[[], EventSettings],
    callers: CallerCheck,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Reply:
    """The reply to one request. Raises nothing: every outcome is a status
    (:meth:`common.http_api.Responder.guard`): :class:`BadEvent` its 4xx, :class:`PublishUnavailable`
    503 with ``Retry-After``, :class:`PublishRefused` (a configuration error) 500.

    ``publisher()`` is called only for an event to publish; ``read_settings()`` inside the guard,
    so a malformed setting is a logged 500.
    """
    reply = Responder.for_request("event", method=request.method, caller_correlation_id=request.caller_correlation_id,
                                  invocation_id=invocation_id, log=log, requests_metric="app.events.requests")
    correlation_id = reply.correlation_id

    async def publish_one() -> Reply:
        from identity import Credentials

        caller = await admit(Credentials(request.authorization, request.api_key, request.client_principal), reply,
                             callers)
        if isinstance(caller, Reply):
            return caller
        cfg = read_settings()
        check_content_type(request.content_type)
        event = build_event(read_body(request.body, cfg.max_event_bytes), idempotency_key=request.idempotency_key,
                            correlation_id=correlation_id, now=now())
        await publish(event, publisher(), cfg, reply.log.bind(eventId=event["id"]))
        reply.log.info("event.published", eventId=event["id"], eventType=event["type"][:128],
                       eventSource=event["source"][:128])
        return reply(202, {"id": event["id"], "correlationId": correlation_id}, "published")

    return await reply.guard(publish_one)
