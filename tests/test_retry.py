from __future__ import annotations

import asyncio

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError

from common.retry import RetryPolicy, is_transient, retry_after_seconds, retry_async
from tests.fakes import FakeClock, Scripted


class _Response:
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}
        self.reason = "test"

    def text(self) -> str:
        return ""


def http_error(status: int, headers: dict[str, str] | None = None) -> HttpResponseError:
    return HttpResponseError(message=f"status {status}", response=_Response(status, headers))


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses(status: int) -> None:
    assert is_transient(http_error(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 412, 413])
def test_permanent_statuses(status: int) -> None:
    assert not is_transient(http_error(status))


def test_other_errors_are_classified() -> None:
    assert is_transient(ServiceRequestError("connection refused"))
    assert is_transient(TimeoutError())
    assert is_transient(ConnectionResetError())
    assert not is_transient(ResourceNotFoundError("gone"))
    assert not is_transient(ValueError("bad"))

    class Retryable(Exception):
        retryable = True

    class NotRetryable(Exception):
        retryable = False

    assert is_transient(Retryable()) and not is_transient(NotRetryable())


def test_retry_after_headers() -> None:
    assert retry_after_seconds(http_error(429, {"x-ms-retry-after-ms": "1500"})) == 1.5
    assert retry_after_seconds(http_error(429, {"Retry-After": "3"})) == 3.0
    assert retry_after_seconds(http_error(503, {})) is None
    assert retry_after_seconds(ValueError()) is None


async def test_succeeds_after_transient_failures_with_growing_backoff() -> None:
    clock = FakeClock()
    flaky = Scripted(http_error(503), http_error(503), http_error(503), result="ok")
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=100.0, total_budget=1000.0)
    result = await retry_async(flaky, policy, sleep=clock.sleep, clock=clock, jitter=lambda: 1.0)
    assert result == "ok" and flaky.calls == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]


async def test_full_jitter_scales_the_ceiling() -> None:
    clock = FakeClock()
    flaky = Scripted(ServiceRequestError("refused"), ServiceRequestError("refused"))
    await retry_async(flaky, RetryPolicy(base_delay=2.0), sleep=clock.sleep, clock=clock, jitter=lambda: 0.25)
    assert clock.sleeps == [0.5, 1.0]


async def test_retry_after_is_honoured() -> None:
    clock = FakeClock()
    throttled = Scripted(http_error(429, {"x-ms-retry-after-ms": "2500"}))
    await retry_async(throttled, RetryPolicy(base_delay=0.1), sleep=clock.sleep, clock=clock, jitter=lambda: 0.0)
    assert clock.sleeps == [2.5]
    # Spread over up to twice the asked time, so writers throttled together come back apart.
    clock = FakeClock()
    throttled = Scripted(http_error(429, {"x-ms-retry-after-ms": "2500"}))
    await retry_async(throttled, RetryPolicy(base_delay=0.1), sleep=clock.sleep, clock=clock, jitter=lambda: 0.5)
    assert clock.sleeps == [3.75]


async def test_throttling_is_bounded_by_time_not_by_attempts() -> None:
    """A 429 with a retry-after is the service pacing the caller: it does not use up an attempt."""
    clock = FakeClock()
    paced = Scripted(*[http_error(429, {"x-ms-retry-after-ms": "10"}) for _ in range(50)], result="done")
    assert await retry_async(paced, RetryPolicy(max_attempts=3, total_budget=5.0), sleep=clock.sleep, clock=clock,
                             jitter=lambda: 0.0) == "done"
    assert paced.calls == 51
    # A 429 without a retry-after, or a 503, still counts.
    clock = FakeClock()
    failing = Scripted(*[http_error(429, {}) for _ in range(5)], result="done")
    with pytest.raises(HttpResponseError):
        await retry_async(failing, RetryPolicy(max_attempts=3, total_budget=500.0), sleep=clock.sleep, clock=clock,
                          jitter=lambda: 0.0)
    assert failing.calls == 3
    # And the time budget still ends a throttled operation.
    clock = FakeClock()
    endless = Scripted(*[http_error(429, {"x-ms-retry-after-ms": "1000"}) for _ in range(100)])
    with pytest.raises(HttpResponseError):
        await retry_async(endless, RetryPolicy(max_attempts=3, total_budget=5.0), sleep=clock.sleep, clock=clock,
                          jitter=lambda: 0.0)
    assert sum(clock.sleeps) < 5.0


async def test_permanent_error_is_raised_at_once() -> None:
    clock = FakeClock()
    broken = Scripted(http_error(400))
    with pytest.raises(HttpResponseError):
        await retry_async(broken, RetryPolicy(), sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


async def test_attempts_run_out_and_the_last_error_is_raised() -> None:
    clock = FakeClock()
    failing = Scripted(http_error(503), http_error(502), http_error(504))
    retried: list[int] = []
    with pytest.raises(HttpResponseError) as info:
        await retry_async(failing, RetryPolicy(max_attempts=3), sleep=clock.sleep, clock=clock,
                          on_retry=lambda attempt, delay, exc: retried.append(attempt))
    assert info.value.status_code == 504
    assert retried == [1, 2]


async def test_budget_stops_waiting_when_the_next_wait_would_exceed_it() -> None:
    clock = FakeClock()
    failing = Scripted(*(http_error(429, {"retry-after": "30"}) for _ in range(10)))
    with pytest.raises(HttpResponseError):
        await retry_async(failing, RetryPolicy(max_attempts=10, total_budget=10), sleep=clock.sleep, clock=clock)
    assert failing.calls == 1 and clock.sleeps == []


async def test_a_hanging_attempt_fails_within_the_budget() -> None:
    async def hangs() -> None:
        await asyncio.sleep(3600)

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError, match="retry budget"):
        await retry_async(hangs, RetryPolicy(max_attempts=5, total_budget=0.3))
    assert loop.time() - started < 2.0


def test_invalid_policy_is_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_service_bus_errors_follow_the_sdk_flag_except_auth() -> None:
    from azure.servicebus import exceptions as sb

    assert is_transient(sb.ServiceBusConnectionError(message="link detached"))
    assert is_transient(sb.OperationTimeoutError(message="timed out"))
    assert is_transient(sb.ServiceBusServerBusyError(message="busy"))
    assert is_transient(sb.ServiceBusCommunicationError(message="dns"))
    assert not is_transient(sb.MessageSizeExceededError(message="too big"))
    assert not is_transient(sb.MessagingEntityNotFoundError(message="no queue"))
    assert not is_transient(sb.ServiceBusAuthorizationError(message="no role"))
    assert not is_transient(sb.ServiceBusAuthenticationError(message="bad key"))


async def test_a_hung_attempt_is_abandoned_after_the_attempt_timeout_and_retried() -> None:
    calls = 0

    async def hangs_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(3600)
        return "second"

    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await retry_async(hangs_once, RetryPolicy(total_budget=5, attempt_timeout=0.2, base_delay=0.01))
    assert (result, calls) == ("second", 2)
    assert loop.time() - started < 1.0


async def test_a_429_asking_for_no_wait_still_waits_a_little() -> None:
    clock = FakeClock()
    paced = Scripted(*[http_error(429, {"x-ms-retry-after-ms": "0"}) for _ in range(3)], result="done")
    assert await retry_async(paced, RetryPolicy(max_attempts=2, total_budget=5.0), sleep=clock.sleep, clock=clock,
                             jitter=lambda: 0.0) == "done"
    assert clock.sleeps == [0.005] * 3
