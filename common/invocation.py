"""The one invocation wrapper: every ``main()`` opens it, and it applies the error model.

It does what each function would otherwise repeat: bind the log to the invocation, open
the invocation's span, turn each kind of failure (:mod:`common.errors`) into the trigger's
outcome by looking the error's class up in :data:`OUTCOMES`, and mask what reaches the
host::

    async def main(msg: func.QueueMessage, context: func.Context) -> None:
        async with invocation.run(context, Trigger.STORAGE_QUEUE, "BlobEtlWorker",
                                  attributes=invocation.queue_attributes(msg.id, msg.dequeue_count)) as call:
            await handle_work(msg.get_body(), log=call.log, ...)

An HTTP function's logic answers every outcome with a status itself, through
:meth:`common.http_api.Responder.guard`, which asks :func:`http_status` here; the
wrapper's part is the log, the span and the last-resort mask. docs/architecture.md has
the table in prose.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from common import telemetry
from common.errors import ConfigurationError, InvalidInput, InvocationFailed, TransientFailure
from common.logs import InvocationLog, bind_invocation, describe_error

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["OUTCOMES", "Invocation", "Outcome", "Trigger", "http_attributes", "http_status", "outcome_of", "queue_attributes",
           "retry_after_of", "run"]


class Trigger(StrEnum):
    HTTP = "http"
    SERVICE_BUS = "servicebus"
    STORAGE_QUEUE = "queue"
    EVENT_GRID = "eventgrid"
    TIMER = "timer"


class Outcome(StrEnum):
    #: HTTP: the caller gets a status for the error (:func:`http_status`).
    REPLY = "reply"
    #: The invocation completes; the input is named in an error log line and never retried.
    COMPLETE = "complete"
    #: The input is handed to the function's set-aside hook (an invalid queue), then completes.
    SET_ASIDE = "set_aside"
    #: The invocation fails; the platform delivers the input again (then dead-letters or poisons it).
    RETRY = "retry"
    #: The invocation fails; nothing redelivers it (a timer's next run starts afresh).
    FAIL = "fail"


#: What each trigger does with each kind of failure, looked up along the error's class hierarchy.
#: ``Exception`` is anything unexpected, an SDK error past its retry budget included.
OUTCOMES: Mapping[Trigger, Mapping[type[BaseException], Outcome]] = {
    Trigger.HTTP: {InvalidInput: Outcome.REPLY, TransientFailure: Outcome.REPLY,
                   ConfigurationError: Outcome.REPLY, Exception: Outcome.REPLY},
    Trigger.SERVICE_BUS: {InvalidInput: Outcome.SET_ASIDE, TransientFailure: Outcome.RETRY,
                          ConfigurationError: Outcome.RETRY, Exception: Outcome.RETRY},
    # A Storage queue has no set-aside of its own: the host retries up to maxDequeueCount, then
    # moves the message to <queue>-poison, which is where a malformed message belongs too.
    Trigger.STORAGE_QUEUE: {InvalidInput: Outcome.RETRY, TransientFailure: Outcome.RETRY,
                            ConfigurationError: Outcome.RETRY, Exception: Outcome.RETRY},
    # Event Grid retries a failed delivery for up to a day: an event that can never succeed completes.
    Trigger.EVENT_GRID: {InvalidInput: Outcome.COMPLETE, TransientFailure: Outcome.RETRY,
                         ConfigurationError: Outcome.RETRY, Exception: Outcome.RETRY},
    Trigger.TIMER: {InvalidInput: Outcome.FAIL, TransientFailure: Outcome.FAIL,
                    ConfigurationError: Outcome.FAIL, Exception: Outcome.FAIL},
}

#: How long an HTTP caller is asked to wait after a transient failure that named no time.
DEFAULT_RETRY_AFTER_SECONDS = 30


def outcome_of(trigger: Trigger, error: BaseException) -> Outcome:
    """The outcome of ``error`` for ``trigger``: the entry of its nearest class in :data:`OUTCOMES`."""
    table = OUTCOMES[trigger]
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return Outcome.FAIL if trigger is Trigger.TIMER else Outcome.RETRY


def http_status(error: BaseException) -> int:
    """The HTTP status of an error: its own 4xx for invalid input (``status``, else 400), 503 for a
    transient failure, 500 for a configuration error or anything unexpected."""
    if isinstance(error, InvalidInput):
        status = getattr(error, "status", 400)
        return status if isinstance(status, int) and 400 <= status < 500 else 400
    if isinstance(error, TransientFailure):
        return 503
    return 500


def retry_after_of(error: BaseException) -> int:
    """Seconds an HTTP caller should wait after ``error`` (its ``retry_after``, else the default)."""
    value = getattr(error, "retry_after", None)
    return value if isinstance(value, int) and value > 0 else DEFAULT_RETRY_AFTER_SECONDS


@dataclass
class Invocation:
    """What the wrapper hands the adapter: the bound log and the invocation's span."""

    log: InvocationLog
    span: Span


SetAside = Callable[[InvalidInput], Awaitable[None]]


@contextlib.asynccontextmanager
async def run(context: Any, trigger: Trigger, name: str, *, attributes: Mapping[str, Any] | None = None,
              log_fields: Mapping[str, Any] | None = None, correlation_id: str | None = None,
              links_from: Sequence[str] = (), continues: str | None = None,
              set_aside: SetAside | None = None,
              refused_event: str = "invocation.input_refused") -> AsyncIterator[Invocation]:
    """One invocation of a function named ``name`` (its span's name) for ``trigger``.

    ``attributes`` go on the span, ``log_fields`` on every log line; ``links_from`` and
    ``continues`` are traceparents (:func:`common.telemetry.invocation_span`). An error is
    handled as :data:`OUTCOMES` says; one that fails the invocation reaches the host as
    :class:`~common.errors.InvocationFailed` with a masked message. ``set_aside`` is the
    Service Bus hook for invalid input; without it such input is retried (and dead-lettered).
    ``refused_event`` names the log line of input that completes unprocessed.
    """
    log = bind_invocation(context, correlation_id=correlation_id, **dict(log_fields or {}))
    try:
        with telemetry.invocation_span(context, name, attributes=attributes, links_from=links_from,
                                       continues=continues) as span:
            recorded = span.get_span_context()
            if span.is_recording() and recorded.is_valid:
                # Log lines join the trace their work is recorded under (operation_Id), which is the
                # event's when the span continues one, not the host's.
                log = log.bind(traceId=f"{recorded.trace_id:032x}", spanId=f"{recorded.span_id:016x}")
            try:
                yield Invocation(log, span)
            except Exception as exc:
                outcome = outcome_of(trigger, exc)
                if outcome is Outcome.SET_ASIDE and set_aside is not None and isinstance(exc, InvalidInput):
                    await set_aside(exc)
                elif outcome is Outcome.COMPLETE and isinstance(exc, InvalidInput):
                    log.error(refused_event, outcome=str(outcome), reason=exc.reason, detail=exc.detail)
                else:
                    if isinstance(exc, ConfigurationError):
                        log.error("invocation.misconfigured", setting=exc.setting, error=describe_error(exc))
                    raise
    except InvocationFailed:
        raise
    except Exception as exc:
        raise InvocationFailed(describe_error(exc)) from None


def queue_attributes(message_id: str | None, dequeue_count: int) -> dict[str, Any]:
    """The span attributes of a Storage queue message."""
    return {"faas.trigger": "pubsub", "messaging.system": "azure_storage_queue",
            "messaging.message.id": message_id, "app.queue.dequeue_count": dequeue_count}


def http_attributes(method: str, route: str) -> dict[str, Any]:
    """The span attributes of an HTTP request (an internal span: the host reports the request itself)."""
    return {"http.request.method": method, "http.route": route}
