"""What the strict JSON rules accept, worked out with the standard library alone.

The property tests compare the app's strict reader (common.strict_json) against this
independent reading, rather than against the reader itself.
"""

from __future__ import annotations

import json
import math
from typing import Any


class Refused(Exception):
    """The body breaks a strict rule (not UTF-8, not JSON, NaN/Infinity, a non-finite double,
    an integer past 4300 digits, nesting past 64 levels)."""


def nesting(value: Any) -> int:
    """Depth of containers, without recursion (the standard library builds values thousands deep)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (list, dict)):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def strict_document(body: bytes) -> Any:
    """The body's JSON value under the strict rules, or :class:`Refused`."""
    def refuse(*_: Any) -> Any:
        raise Refused

    def finite(text: str) -> float:
        number = float(text)
        if math.isinf(number):
            raise Refused
        return number

    try:
        value = json.loads(body.removeprefix(b"\xef\xbb\xbf").decode("utf-8"), parse_constant=refuse, parse_float=finite)
    except (ValueError, RecursionError):
        raise Refused from None
    if nesting(value) > 64:
        raise Refused
    return value
