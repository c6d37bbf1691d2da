"""Async retry with exponential backoff and full jitter, bounded in attempts and time.

For work the SDKs' own retry policy cannot see: a whole forwarded message, a
write that already went through the SDK's retries and still got 429. Do not
wrap a single SDK call in this as a second blind loop::

    from common.retry import RetryPolicy, retry_async

    policy = RetryPolicy(max_attempts=5, total_budget=20.0)
    await retry_async(lambda: sender.send_messages(message), policy)

Each attempt runs under the time that is left of the budget, so an
unreachable service fails the call within the budget instead of hanging.
When attempts or time run out, the last error is raised unchanged so the
platform's own retry or dead-letter path takes over.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "RetryPolicy",
    "cosmos_delete_policy",
    "cosmos_write_policy",
    "event_publish_policy",
    "is_transient",
    "queue_send_policy",
    "retry_after_seconds",
    "retry_async",
    "summary_upload_policy",
]

T = TypeVar("T")

#: The shortest wait after a 429, whatever it asked for (a "retry after 0 ms" must not spin).
MIN_THROTTLE_WAIT = 0.005
#: HTTP statuses that a later attempt may get past.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    #: First backoff ceiling in seconds; doubles each attempt up to ``max_delay``.
    base_delay: float = 0.5
    max_delay: float = 10.0
    #: Seconds for all attempts and waits together.
    total_budget: float = 30.0
    #: Longest one attempt may take (None: what is left of the budget). A hung connection is
    #: then abandoned in time for another attempt, instead of eating the whole budget.
    attempt_timeout: float | None = None

    def __post_init__(self) -> None:
        if (self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or self.total_budget <= 0
                or (self.attempt_timeout is not None and self.attempt_timeout <= 0)):
            raise ValueError(f"invalid retry policy: {self!r}")

    def backoff_ceiling(self, attempt: int) -> float:
        """Upper bound of the wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))


# The app's retry policies, one per thing they protect. Budgets come from app settings
# (through the callers); the shapes (attempts, backoff) are decided here and nowhere else.

def cosmos_write_policy(budget_seconds: float) -> RetryPolicy:
    """One BlobEtl upsert, after the SDK's own retries of 429: a longer backoff lets a throttled
    container recover. Budget: ``ETL_WRITE_BUDGET_SECONDS``."""
    return RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=15.0, total_budget=budget_seconds)


def summary_upload_policy(budget_seconds: float) -> RetryPolicy:
    """BlobEtl's summary blob upload. Budget: ``ETL_WRITE_BUDGET_SECONDS``."""
    return RetryPolicy(max_attempts=5, total_budget=budget_seconds)


def queue_send_policy(max_attempts: int, budget_seconds: float) -> RetryPolicy:
    """One Service Bus send (forward or set aside), well inside the message lock.

    A send that hangs (a half-open link) is abandoned after a third of the budget and retried
    on a new link, so one stuck connection cannot use up the whole budget. Settings:
    ``QUEUE_SEND_MAX_ATTEMPTS``, ``QUEUE_SEND_BUDGET_SECONDS``.
    """
    return RetryPolicy(max_attempts=max_attempts, total_budget=budget_seconds, base_delay=0.5, max_delay=5.0,
                       attempt_timeout=budget_seconds / 3)


def event_publish_policy(budget_seconds: float) -> RetryPolicy:
    """One PublishEvent publish to Event Grid, inside the HTTP request. A publish that hangs is
    abandoned after half the budget and tried once more with the same event id (the input
    queue's duplicate detection drops a copy that did land). ``EVENT_PUBLISH_BUDGET_SECONDS``."""
    return RetryPolicy(max_attempts=4, base_delay=0.25, max_delay=2.0, total_budget=budget_seconds,
                       attempt_timeout=budget_seconds / 2)


def cosmos_delete_policy(budget_seconds: float) -> RetryPolicy:
    """One CleanupTimer delete, within what is left of the run's time budget (never past it)."""
    return RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=10.0, total_budget=max(0.001, budget_seconds))


def _status_code(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Whether a later attempt may succeed where this one failed.

    True for timeouts and dropped connections, Azure SDK request errors
    (``ServiceRequestError``, ``ServiceResponseError``), HTTP 408/429/5xx
    responses (``HttpResponseError`` and Cosmos's subclass), and Service Bus
    errors that the SDK marks retryable (connection, timeout, server busy),
    except authentication and authorization failures.
    """
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    retryable = getattr(exc, "retryable", None)
    if isinstance(retryable, bool):
        return retryable
    servicebus = sys.modules.get("azure.servicebus.exceptions")
    if servicebus is not None and isinstance(exc, servicebus.ServiceBusError):
        # By public class, not the SDK's private flag: these are the ones azure-servicebus builds as
        # retryable (exceptions.py), less authentication, authorization and a disabled entity, which
        # never heal within a send's budget. A bare ServiceBusError is not retried.
        return isinstance(exc, (servicebus.ServiceBusConnectionError, servicebus.ServiceBusCommunicationError,
                                servicebus.OperationTimeoutError, servicebus.ServiceBusServerBusyError,
                                servicebus.SessionCannotBeLockedError))
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return True
    if isinstance(exc, HttpResponseError):
        return _status_code(exc) in TRANSIENT_STATUS
    return False


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait a service asked for (``retry-after-ms``, ``x-ms-retry-after-ms``, ``Retry-After``)."""
    headers = getattr(exc, "headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    except AttributeError:
        return None
    for key in ("retry-after-ms", "x-ms-retry-after-ms"):
        if key in lowered:
            try:
                return max(0.0, float(lowered[key]) / 1000.0)
            except ValueError:
                pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


OnRetry = Callable[[int, float, BaseException], None]


async def retry_async(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    transient: Callable[[BaseException], bool] = is_transient,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Run ``operation`` until it succeeds, a non-transient error occurs, or the policy runs out.

    A 429 that says when to come back (``x-ms-retry-after-ms``, ``Retry-After``) waits that long
    (spread by up to as much again) and does not count as one of ``max_attempts``: under a
    request-unit budget, throttling is pacing, and only the time budget bounds it.
    ``on_retry(attempt, delay, error)`` is called before each wait, for logging.
    Raises the last error; a timed-out attempt raises :class:`TimeoutError`.
    """
    deadline = clock() + policy.total_budget
    attempt = 0
    throttled = 0
    while True:
        attempt += 1
        remaining = deadline - clock()
        if remaining <= 0:
            raise TimeoutError(f"retry budget of {policy.total_budget:g} s spent before attempt {attempt}")
        limit = remaining if policy.attempt_timeout is None else min(remaining, policy.attempt_timeout)
        try:
            async with asyncio.timeout(limit):
                return await operation()
        except TimeoutError as exc:
            error: BaseException = exc
            if deadline - clock() <= 0:
                raise TimeoutError(
                    f"attempt {attempt} did not finish within the retry budget of {policy.total_budget:g} s"
                ) from exc
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised when not transient
            error = exc
            if not transient(exc):
                raise
        asked = retry_after_seconds(error)
        if _status_code(error) == 429 and asked is not None:
            # Throttled, told when to come back: the service is pacing us, not failing. Wait what it
            # asked (spread over up to twice that, so writers throttled together do not return
            # together), within the time budget but without using up an attempt.
            throttled += 1
            delay = max(asked, MIN_THROTTLE_WAIT) * (1 + jitter())
        else:
            if attempt - throttled >= policy.max_attempts:
                raise error
            delay = jitter() * policy.backoff_ceiling(attempt - throttled)
            if asked is not None:
                delay = max(delay, asked)
        if clock() + delay >= deadline:
            raise error
        if on_retry is not None:
            on_retry(attempt, delay, error)
        await sleep(delay)
