"""What the app reads from its own host.json: the function timeout, which bounds every budget.

::

    from common.host_config import function_timeout_seconds

    function_timeout_seconds()   # 600.0 for "functionTimeout": "00:10:00"; None when unbounded
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

from common.errors import ConfigurationError

__all__ = ["APP_ROOT", "DEFAULT_MAX_DEQUEUE_COUNT", "function_timeout_seconds", "queue_max_dequeue_count",
           "read_function_timeout", "read_queue_max_dequeue_count", "timespan_seconds"]

APP_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def function_timeout_seconds() -> float | None:
    """The app's host.json ``functionTimeout`` in seconds (read once); None when unbounded or absent."""
    return read_function_timeout(APP_ROOT / "host.json")


def read_function_timeout(host_json: Path) -> float | None:
    """``functionTimeout`` of the given host.json in seconds; None when unbounded or absent."""
    try:
        data = json.loads(host_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    value = data.get("functionTimeout")
    if value in (None, "-1"):
        return None
    return timespan_seconds("functionTimeout", value)


def timespan_seconds(name: str, value: object) -> float:
    """A host.json time span (``[d.]hh:mm:ss[.fff]``) in seconds; :class:`ConfigurationError` naming
    the setting otherwise."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", str(value))
    if not match:
        raise ConfigurationError(name, f"must look like '00:10:00'; got {value!r}.", source="host.json setting")
    days, hours, minutes, seconds = match.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


#: The queue extension's default ``maxDequeueCount``.
DEFAULT_MAX_DEQUEUE_COUNT = 5


@functools.lru_cache(maxsize=1)
def queue_max_dequeue_count() -> int:
    """``extensions.queues.maxDequeueCount`` (read once): the delivery after which a failed queue
    message goes to the poison queue. The app setting
    ``AzureFunctionsJobHost__extensions__queues__maxDequeueCount`` overrides host.json, as the host
    reads it (https://learn.microsoft.com/azure/azure-functions/functions-host-json#override-hostjson-values)."""
    override = os.environ.get(MAX_DEQUEUE_OVERRIDE)
    if override is not None:
        if not override.strip().isdigit() or int(override) < 1:
            raise ConfigurationError(MAX_DEQUEUE_OVERRIDE, f"must be a whole number of at least 1; got {override!r}.")
        return int(override)
    return read_queue_max_dequeue_count(APP_ROOT / "host.json")


#: The app setting that overrides host.json's maxDequeueCount.
MAX_DEQUEUE_OVERRIDE = "AzureFunctionsJobHost__extensions__queues__maxDequeueCount"


def read_queue_max_dequeue_count(host_json: Path) -> int:
    try:
        data = json.loads(host_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return DEFAULT_MAX_DEQUEUE_COUNT
    value = ((data.get("extensions") or {}).get("queues") or {}).get("maxDequeueCount", DEFAULT_MAX_DEQUEUE_COUNT)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError("extensions.queues.maxDequeueCount", f"must be a whole number of at least 1; got {value!r}.",
                                 source="host.json setting")
    return value
