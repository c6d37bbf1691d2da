"""Objects bound to the running event loop, built once and closed together.

Async Azure clients and credentials hold an aiohttp session, which belongs
to the event loop it was opened on. The Functions Python worker runs every
``async def main`` on one loop for the life of the process, so a client
built on the first invocation serves every later one. Tests that run each
case on a new loop get a fresh client per loop instead of a broken one.

Objects are closed in reverse order of creation (clients before the
credential they use) by :func:`aclose_all`, and best-effort at interpreter
exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import logging
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["aclose_all", "discard_soon", "get_or_build", "reset"]

T = TypeVar("T")
_log = logging.getLogger("app.common.loop_cache")  # under "app": the loggers Azure Monitor exports

# key -> (loop, object); dicts keep insertion order, which is creation order.
_entries: dict[Hashable, tuple[asyncio.AbstractEventLoop, Any]] = {}


def get_or_build(key: Hashable, build: Callable[[], T]) -> T:
    """The object cached under ``key`` for the running loop, built on first use."""
    loop = asyncio.get_running_loop()
    entry = _entries.get(key)
    if entry is not None:
        if entry[0] is loop:
            return entry[1]
        # Built on another loop (a test's, or one that has ended): unusable here.
        del _entries[key]
        _close_soon(entry)
    built = build()
    _entries[key] = (loop, built)
    return built


def discard_soon(key: Hashable) -> None:
    """Forget the object under ``key`` now and close it in the background.

    For an object left broken by a cancelled call: the caller (often inside a
    cancellation) must not wait on a close that may itself hang.
    """
    entry = _entries.pop(key, None)
    if entry is not None:
        _close_soon(entry)


async def aclose_all() -> None:
    """Close every object built on the running loop, newest first."""
    await _close_loop_entries(asyncio.get_running_loop())


def reset() -> None:
    """Forget every object without closing it (tests only)."""
    _entries.clear()


async def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if close is None:
        return
    try:
        result = close()
        if inspect.isawaitable(result):
            await result
    except Exception as exc:  # noqa: BLE001 - closing is best-effort
        _log.debug("closing %s failed: %s", type(obj).__name__, type(exc).__name__)


_closing: set[asyncio.Future[None]] = set()  # strong references until each close is done


def _close_soon(entry: tuple[asyncio.AbstractEventLoop, Any]) -> None:
    loop, obj = entry
    if loop.is_closed() or not loop.is_running():
        return

    def schedule() -> None:
        task = loop.create_task(_close(obj))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    loop.call_soon_threadsafe(schedule)


@atexit.register
def _close_at_exit() -> None:
    loops = {id(loop): loop for loop, _ in _entries.values()}
    for loop in loops.values():
        if loop.is_closed() or loop.is_running():
            continue
        with contextlib.suppress(Exception):  # the interpreter is exiting: best effort
            loop.run_until_complete(_close_loop_entries(loop))


async def _close_loop_entries(loop: asyncio.AbstractEventLoop) -> None:
    """Close the objects built on ``loop``, newest first (clients before their credential)."""
    for key in reversed(list(_entries)):
        entry = _entries.get(key)
        if entry is not None and entry[0] is loop:
            del _entries[key]
            await _close(entry[1])
