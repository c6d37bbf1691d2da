"""Operations in flight that adapt to a Cosmos DB request-unit budget.

Cosmos DB answers 429 (with ``x-ms-retry-after-ms``) to requests beyond the RU/s a
container grants. Every request retried that way still costs a round trip and client
CPU: with 32 writes in flight against a budget that sustains 8, most of the requests
sent are refused. :class:`AdaptiveConcurrency` bounds the operations in flight like a
semaphore, but its bound follows the budget: additive increase, multiplicative decrease
(as TCP's congestion control), on the signal of :class:`ThrottleSignal`, which the
Cosmos client's transport feeds with every 429 it receives, the SDK's own retries
included (``common.clients``)::

    limit = AdaptiveConcurrency(cfg.write_concurrency, clients.cosmos_throttle_signal())
    async with limit:              # one attempt; release before a retry's wait
        await container.upsert_item(item)

- 429s since the last release: the bound halves (at least 1), at most once per ``cooldown``
  seconds, so one burst of refusals counts as one signal;
- otherwise, after ``bound`` completed operations the bound grows by one, up to ``ceiling``
  (the configured concurrency, which it never exceeds).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["AdaptiveConcurrency", "ThrottleSignal"]


class ThrottleSignal:
    """How many 429 answers one client has received (its transport counts them)."""

    def __init__(self) -> None:
        self.count = 0

    def throttled(self) -> None:
        self.count += 1


class AdaptiveConcurrency:
    """At most ``bound`` operations at once; ``bound`` follows the throttle signal (see module)."""

    def __init__(self, ceiling: int, signal: ThrottleSignal | None = None, *, cooldown: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ceiling < 1:
            raise ValueError(f"ceiling must be at least 1, got {ceiling}")
        self.ceiling = ceiling
        self.bound = ceiling
        #: The lowest bound reached (for the run's log line).
        self.lowest = ceiling
        self.signal = signal or ThrottleSignal()
        self.cooldown = cooldown
        self.clock = clock
        self._seen = self.signal.count
        self._active = 0
        self._completed = 0
        self._cut_at = float("-inf")
        #: Waiting operations, first come first served; each is woken with its slot already taken.
        self._waiters: deque[asyncio.Future[None]] = deque()

    def _adjust(self) -> None:
        if self.signal.count != self._seen:
            self._seen = self.signal.count
            now = self.clock()
            if now - self._cut_at >= self.cooldown:
                self.bound = max(1, self.bound // 2)
                self.lowest = min(self.lowest, self.bound)
                self._cut_at = now
                self._completed = 0
            return
        self._completed += 1
        if self._completed >= self.bound and self.bound < self.ceiling:
            self.bound += 1
            self._completed = 0

    def _wake(self) -> None:
        """Hand free slots to waiters, one each (never all at once: a release wakes who can run)."""
        while self._waiters and self._active < self.bound:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._active += 1
                waiter.set_result(None)

    async def __aenter__(self) -> AdaptiveConcurrency:
        if self._active < self.bound and not self._waiters:
            self._active += 1
            return self
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # the slot was granted as it was cancelled
                self._active -= 1
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._active -= 1
        self._adjust()
        self._wake()
