"""AdaptiveConcurrency: a semaphore whose bound follows Cosmos DB's 429s (common/throttle.py)."""

from __future__ import annotations

import asyncio

import pytest

from common.throttle import AdaptiveConcurrency, ThrottleSignal
from tests.fakes import FakeClock


async def run_one(limit: AdaptiveConcurrency, signal: ThrottleSignal | None = None, throttled: bool = False) -> None:
    async with limit:
        if throttled and signal is not None:
            signal.throttled()


async def test_it_bounds_operations_in_flight_like_a_semaphore() -> None:
    limit = AdaptiveConcurrency(3)
    active = peak = 0

    async def op() -> None:
        nonlocal active, peak
        async with limit:
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.001)
            active -= 1

    await asyncio.gather(*(op() for _ in range(20)))
    assert peak == 3


async def test_a_429_halves_the_bound_once_per_cooldown_and_never_below_one() -> None:
    clock, signal = FakeClock(), ThrottleSignal()
    limit = AdaptiveConcurrency(32, signal, cooldown=0.1, clock=clock)
    await run_one(limit, signal, throttled=True)
    assert limit.bound == 16
    for _ in range(5):  # the same burst of refusals: one signal
        await run_one(limit, signal, throttled=True)
    assert limit.bound == 16
    for _ in range(10):
        clock.now += 0.2
        await run_one(limit, signal, throttled=True)
    assert limit.bound == 1 and limit.lowest == 1


async def test_without_429s_the_bound_grows_back_by_one_per_bound_operations_up_to_the_ceiling() -> None:
    clock, signal = FakeClock(), ThrottleSignal()
    limit = AdaptiveConcurrency(8, signal, clock=clock)
    await run_one(limit, signal, throttled=True)
    assert limit.bound == 4
    for _ in range(4):
        await run_one(limit)
    assert limit.bound == 5
    for _ in range(200):
        await run_one(limit)
    assert limit.bound == 8 and limit.lowest == 4


async def test_a_429_seen_by_another_user_of_the_client_counts_too() -> None:
    """The signal is the client's: the ETL and the cleanup sharing an account slow down together."""
    signal = ThrottleSignal()
    etl, cleanup = AdaptiveConcurrency(32, signal), AdaptiveConcurrency(16, signal)
    await run_one(etl, signal, throttled=True)
    await run_one(cleanup)
    assert (etl.bound, cleanup.bound) == (16, 8)


def test_the_bound_must_admit_something() -> None:
    with pytest.raises(ValueError):
        AdaptiveConcurrency(0)


async def test_a_cancelled_waiter_gives_back_nothing_it_did_not_take() -> None:
    limit = AdaptiveConcurrency(1)
    release = asyncio.Event()

    async def holder() -> None:
        async with limit:
            await release.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(run_one(limit))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await first
    # The slot is free again, exactly once: two more operations run one after the other.
    await asyncio.wait_for(asyncio.gather(run_one(limit), run_one(limit)), 1)
    assert limit._active == 0
