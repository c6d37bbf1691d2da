"""Time as the app writes it: UTC timestamps in one format, durations in milliseconds.

::

    from common.timing import elapsed_ms, utc_timestamp

    started = time.perf_counter()
    utc_timestamp(datetime.now(UTC))   # '2026-11-27T10:00:00.000Z'
    elapsed_ms(started)                # 12.345
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["elapsed_ms", "utc_timestamp"]


def utc_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``: sortable as text, read by every consumer.

    A naive ``moment`` is taken as local time (``datetime.astimezone``'s rule); pass aware ones.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading), to the microsecond."""
    return round((time.perf_counter() - started) * 1000, 3)
