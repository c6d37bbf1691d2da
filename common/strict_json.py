"""The app's one JSON reader and writer: strict in, strict out, bounded in depth and size.

Every function that reads JSON from outside (an HTTP body, a Service Bus
message, a blob's records) reads it here, so each rule holds everywhere::

    from common.strict_json import JsonInputError, loads, dumps

    try:
        event = loads(body)                  # bytes or str
    except JsonInputError as exc:
        exc.reason, exc.detail, exc.position  # 'too_deep', '... nests deeper than 64 levels', 1024

The rules, and why:

- **UTF-8 only.** Bytes are decoded as UTF-8 (a leading byte order mark is
  skipped); anything else is ``not_utf8`` with the offset of the bad byte.
- **Depth before building.** Nesting past ``max_depth`` (default 64) is refused
  by a scan of the raw text *before* the value is built, so a few hundred
  kilobytes of ``[[[[...`` cannot take gigabytes or the interpreter's stack.
- **Standard numbers only.** ``NaN``, ``Infinity`` and ``-Infinity`` are not
  JSON (RFC 8259 section 6) and strict consumers reject them: ``non_standard``.
  An integer longer than :data:`MAX_INTEGER_DIGITS` (Python's own limit for
  converting text to ``int``) is ``number_too_long``. A number beyond a
  double's range (``1e400``) is ``number_out_of_range``, unless the caller asks
  for ``exact_numbers``, which keeps it as a :class:`decimal.Decimal`.
- **Unpaired surrogates are kept exactly.** JSON may escape half of a UTF-16
  pair (``"\\ud800"``); it is read as that code point, and :func:`dumps` writes
  it back as the same escape, so a forwarded payload is not altered. Callers
  that need real text (a Cosmos DB id, a greeting) check with
  :func:`has_unpaired_surrogate`.

:func:`dumps` writes UTF-8 (not ASCII escapes, which double the size of
non-Latin text against a message size limit) and refuses non-finite numbers.
:func:`iter_array_elements` splits a top-level JSON array into its elements'
byte ranges without parsing them, for readers of large blobs.
"""

from __future__ import annotations

import codecs
import json
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from common.errors import InvalidInput, Reason

__all__ = [
    "ArrayElement",
    "JsonInputError",
    "check_syntax",
    "MAX_DEPTH",
    "MAX_INTEGER_DIGITS",
    "dumps",
    "exceeds_depth",
    "has_unpaired_surrogate",
    "iter_array_elements",
    "line_and_column",
    "loads",
    "loads_array_element",
]

#: Deepest nesting accepted by default (objects and arrays together).
MAX_DEPTH = 64
#: Python's default limit on the digits of an int converted from text (sys.int_info.default_max_str_digits).
MAX_INTEGER_DIGITS = 4300
_UTF8_BOM = codecs.BOM_UTF8

#: Everything up to the next structural byte, complete strings (escapes included) skipped whole:
#: at an array's top level commas count, inside an element only brackets do. Possessive, so a
#: long string or an unterminated one cannot make the match backtrack.
_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_SKIP_AT_TOP = re.compile(rb'(?:[^"\[\]{},]++|' + _STRING + rb")*+", re.DOTALL)
_SKIP_INSIDE = re.compile(rb'(?:[^"\[\]{}]++|' + _STRING + rb")*+", re.DOTALL)
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")
_WHITESPACE = b" \t\r\n"
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_WHITESPACE = re.compile(rb"[^ \t\r\n]")


class JsonInputError(InvalidInput):
    """JSON that can never be accepted. ``reason`` is a stable code; ``position`` a byte offset where known.

    Reasons: ``not_utf8``, ``not_json`` (syntax), ``too_deep``, ``non_standard`` (NaN, Infinity),
    ``number_too_long``, ``number_out_of_range``.
    """

    def __init__(self, reason: Reason, detail: str, position: int | None = None) -> None:
        super().__init__(detail, reason=reason)
        self.position = position


class _NumberRefused(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail


def _integer_digit_limit() -> int:
    """MAX_INTEGER_DIGITS, or the interpreter's own limit when something set a lower one."""
    current = sys.get_int_max_str_digits()
    return min(MAX_INTEGER_DIGITS, current) if current else MAX_INTEGER_DIGITS


def _parse_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    limit = _integer_digit_limit()
    if digits > limit:
        raise _NumberRefused("number_too_long", f"an integer of {digits} digits is longer than {limit}")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NumberRefused("number_out_of_range", f"the number {text[:40]} is outside the range of a double")
    return value


def _parse_exact_float(text: str) -> float | Decimal:
    value = float(text)
    if not math.isinf(value):
        return value
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent past Decimal's own range (10**18)
        raise _NumberRefused("number_out_of_range", f"the number {text[:40]} is outside the range of a decimal") from None


def _parse_decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent past Decimal's own range (10**18)
        raise _NumberRefused("number_out_of_range", f"the number {text[:40]} is outside the range of a decimal") from None


def _parse_constant(name: str) -> Any:
    raise _NumberRefused("non_standard", f"{name} is not a JSON number (strict JSON has no NaN or Infinity)")


_STRICT = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
_EXACT = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_exact_float, parse_constant=_parse_constant)
_DECIMAL = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_decimal, parse_constant=_parse_constant)


def _skip(pattern: re.Pattern[bytes], data: bytes, position: int, end: int | None = None) -> int:
    """Where what ``pattern`` skips ends, from ``position`` (the next structural byte, or the end)."""
    match = pattern.match(data, position, len(data) if end is None else end)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def exceeds_depth(data: bytes, limit: int) -> int | None:
    """The byte offset where nesting first goes past ``limit``, or None. Builds nothing."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return None  # too few brackets to go that deep: no scan needed
    depth = 0
    position = 0
    size = len(data)
    while (position := _skip(_SKIP_INSIDE, data, position)) < size:
        byte = data[position]
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                return position
        elif byte in _CLOSERS:
            depth -= 1
        else:  # a '"' that starts no complete string: the rest is inside it, and the parser refuses it
            return None
        position += 1
    return None


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    body = data[len(_UTF8_BOM):] if data[:3] == _UTF8_BOM else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + (len(data) - len(body))
        raise JsonInputError("not_utf8", f"is not valid UTF-8 (invalid byte at position {offset})", offset) from None


def loads(data: bytes | str, *, max_depth: int | None = MAX_DEPTH, exact_numbers: bool = False,
          decimals: bool = False) -> Any:
    """The JSON value of ``data`` under the module's rules, or :class:`JsonInputError` saying why not.

    ``decimals``: every number with a fraction or an exponent is a :class:`decimal.Decimal`, exactly
    as written (for money: ``0.1`` stays one tenth, and 30 significant digits stay 30).
    ``max_depth=None`` skips the depth scan (for a caller that has already measured it).
    Messages read as the continuation of a subject: ``f"body {exc.detail}"``.
    """
    if max_depth is not None:
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
        where = exceeds_depth(raw, max_depth)
        if where is not None:
            raise JsonInputError("too_deep", f"nests deeper than {max_depth} levels (at byte {where})", where)
    text = _decode(data)
    decoder = _DECIMAL if decimals else (_EXACT if exact_numbers else _STRICT)
    skipped = len(_UTF8_BOM) if isinstance(data, bytes) and data[:3] == _UTF8_BOM else 0
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as exc:
        position = skipped + len(text[: exc.pos].encode("utf-8", "surrogatepass"))
        raise JsonInputError("not_json", f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             position) from None
    except _NumberRefused as exc:
        raise JsonInputError(exc.reason, f"is not accepted: {exc.detail}") from None
    except RecursionError:  # only reachable with max_depth=None on a value deeper than the interpreter's stack
        raise JsonInputError("too_deep", "nests too deeply") from None


def has_unpaired_surrogate(text: str) -> bool:
    """True when ``text`` holds half of a UTF-16 pair, which no UTF-8 encoder (Cosmos DB's included) accepts."""
    return _SURROGATE.search(text) is not None


def dumps(value: Any) -> bytes:
    """Compact strict JSON as UTF-8. Non-finite numbers raise ValueError; unpaired surrogates
    are written as their ``\\uXXXX`` escapes, so what :func:`loads` read comes back unchanged."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if has_unpaired_surrogate(text):
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.encode("utf-8")


def line_and_column(data: bytes, position: int) -> tuple[int, int]:
    """1-based line and character column of a byte offset, in bounded memory (no copy of the text)."""
    line = data.count(b"\n", 0, position) + 1
    line_start = data.rfind(b"\n", 0, position) + 1
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    column = 1
    for offset in range(line_start, position, 1 << 18):
        column += len(decoder.decode(data[offset:min(position, offset + (1 << 18))]))
    return line, column


@dataclass(frozen=True)
class ArrayElement:
    """One element of a top-level JSON array: its index, byte range and nesting depth (0 for a scalar,
    1 for an object of scalars, as :func:`exceeds_depth` counts)."""

    index: int
    start: int
    end: int
    depth: int


def _syntax_error(data: bytes, position: int, message: str) -> JsonInputError:
    line, column = line_and_column(data, position)
    return JsonInputError("not_json", f"is not valid JSON: {message} at line {line} column {column}", position)


def _element(data: bytes, index: int, start: int, end: int, depth: int) -> ArrayElement | None:
    """The element between two separators, trimmed; None for the empty space of ``[]``."""
    while start < end and data[start] in _WHITESPACE:
        start += 1
    while end > start and data[end - 1] in _WHITESPACE:
        end -= 1
    return ArrayElement(index, start, end, depth) if end > start else None


def iter_array_elements(data: bytes, offset: int = 0) -> Iterator[ArrayElement]:
    """Split the JSON array that starts at ``offset`` into elements, without parsing them.

    Structural errors (an unterminated string, an unbalanced bracket, a missing element,
    text after the array) raise :class:`JsonInputError` with the byte position. An element's
    own syntax is checked by :func:`loads` on its range. Strings are skipped whole, so a
    bracket inside a string never counts; inside an element only brackets are looked at,
    so the loop turns once per bracket, not once per token.
    """
    size = len(data)
    if offset >= size or data[offset] != 0x5B:  # '['
        raise _syntax_error(data, min(offset, size), "Expecting '['")
    depth = 1
    index = 0
    position = start = offset + 1
    deepest = 1
    while True:
        position = _skip(_SKIP_AT_TOP if depth == 1 else _SKIP_INSIDE, data, position)
        if position >= size:
            raise _syntax_error(data, size, "Expecting ',' delimiter" if depth == 1 else "Unexpected end of data")
        byte = data[position]
        if byte == 0x22:  # '"' that does not start a complete string
            raise _syntax_error(data, position, "Unterminated string starting")
        if byte in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSERS:
            if depth > 1:
                depth -= 1
            elif byte != 0x5D:  # '}' closing the array
                raise _syntax_error(data, position, "Expecting ',' delimiter")
            else:
                element = _element(data, index, start, position, deepest - 1)
                if element is None and index > 0:
                    raise _syntax_error(data, position, "Expecting value")
                if element is not None:
                    yield element
                break
        else:  # ',' between elements (inside elements commas are skipped)
            element = _element(data, index, start, position, deepest - 1)
            if element is None:
                raise _syntax_error(data, position, "Expecting value")
            yield element
            index += 1
            start = position + 1
            deepest = 1
        position += 1
    extra = _NOT_WHITESPACE.search(data, position + 1)
    if extra is not None:
        raise _syntax_error(data, extra.start(), "Extra data")


#: Syntax only: every number and constant is accepted and dropped, so no limit of the strict
#: reader can stop the check (C speed, but recursive: only for values within the depth limit).
_SYNTAX_ONLY = json.JSONDecoder(parse_int=lambda _: None, parse_float=lambda _: None,
                                parse_constant=lambda _: None)
#: A JSON string as the grammar allows it (no raw control characters, only the defined escapes).
_STRICT_STRING = rb'"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+"'
_STRING_TOKEN = re.compile(_STRICT_STRING)
_VALUE_TOKEN = re.compile(_STRICT_STRING + rb"|-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+"
                          rb"|true|false|null|NaN|Infinity|-Infinity")
_WHITESPACE_RUN = re.compile(rb"[ \t\r\n]*+")
_VALUE_OR_CLOSE = "value_or_close"
_KEY_OR_CLOSE = "key_or_close"


def check_syntax(data: bytes, start: int, end: int) -> None:
    """Raise :class:`JsonInputError` (``not_json``) unless ``data[start:end]`` is one JSON value.

    Numbers of any length, ``NaN`` and ``Infinity`` pass, and any depth is checked without
    building anything: an explicit stack, not recursion. For an element the strict reader
    refused for a limit, so a syntax error inside it still makes the whole array malformed.
    """
    raw = data[start:end]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonInputError("not_utf8", f"is not valid UTF-8 (invalid byte at position {start + exc.start})",
                             start + exc.start) from None
    if exceeds_depth(raw, MAX_DEPTH) is None:
        try:
            _SYNTAX_ONLY.decode(text)
        except json.JSONDecodeError as exc:
            raise _syntax_error(data, start + len(text[: exc.pos].encode("utf-8")), exc.msg) from None
        return
    stack: list[int] = []
    expect = "value"  # value | value_or_close | key | key_or_close | colon | comma_or_close
    position = start
    while True:
        position = _skip(_WHITESPACE_RUN, data, position, end)
        if position >= end:
            if expect == "comma_or_close" and not stack:
                return
            raise _syntax_error(data, position, "Expecting value" if expect.startswith("value") else "Unexpected end of data")
        byte = data[position]
        if expect == "comma_or_close" and not stack:
            raise _syntax_error(data, position, "Extra data")
        if (expect, byte) in ((_VALUE_OR_CLOSE, 0x5D), (_KEY_OR_CLOSE, 0x7D)):  # an empty [] or {}
            stack.pop()
            position, expect = position + 1, "comma_or_close"
        elif expect in ("value", _VALUE_OR_CLOSE):
            if byte in _OPENERS:
                stack.append(byte)
                position, expect = position + 1, (_VALUE_OR_CLOSE if byte == 0x5B else _KEY_OR_CLOSE)
                continue
            token = _VALUE_TOKEN.match(data, position, end)
            if token is None:
                raise _syntax_error(data, position, "Expecting value")
            position, expect = token.end(), "comma_or_close"
        elif expect in ("key", _KEY_OR_CLOSE):
            token = _STRING_TOKEN.match(data, position, end)
            if token is None:
                raise _syntax_error(data, position, "Expecting property name enclosed in double quotes")
            position, expect = token.end(), "colon"
        elif expect == "colon":
            if byte != 0x3A:
                raise _syntax_error(data, position, "Expecting ':' delimiter")
            position, expect = position + 1, "value"
        else:  # comma_or_close inside a container
            closer = 0x5D if stack[-1] == 0x5B else 0x7D
            if byte == 0x2C:
                position, expect = position + 1, ("value" if closer == 0x5D else "key")
            elif byte == closer:
                stack.pop()
                position += 1
            else:
                raise _syntax_error(data, position, "Expecting ',' delimiter")


def loads_array_element(data: bytes, element: ArrayElement, *, exact_numbers: bool = False) -> Any:
    """:func:`loads` of one element of :func:`iter_array_elements`, with positions in the whole array.

    Its depth is already known, so it is not scanned again. Two values in one element mean a
    comma is missing between them, and say so, as a parse of the whole array would.
    """
    try:
        return loads(data[element.start:element.end], max_depth=None, exact_numbers=exact_numbers)
    except JsonInputError as exc:
        if exc.position is None:
            raise
        position = element.start + exc.position
        if exc.reason != "not_json":
            raise JsonInputError(exc.reason, exc.detail, position) from None
        message = str(exc).removeprefix("is not valid JSON: ").split(" at line ")[0]
        raise _syntax_error(data, position, "Expecting ',' delimiter" if message == "Extra data" else message) from None
