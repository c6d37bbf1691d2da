"""Property-based tests of common.strict_json, the one JSON reader and writer of every input surface (issue 14).

Invariants pinned here:
- what ``dumps`` writes, ``loads`` reads back unchanged (lone surrogates included);
- ``dumps`` writes valid UTF-8 that a strict reader (no NaN, no Infinity) accepts;
- ``loads`` raises nothing but :class:`JsonInputError` (with a documented reason), whatever the bytes
  (with ``exact_numbers`` too, for an exponent past decimal.Decimal's range: see its own test);
- ``iter_array_elements`` + ``loads_array_element`` give back the list ``json.dumps`` wrote;
- ``check_syntax`` accepts exactly the single JSON values the standard parser accepts (numbers of any
  length, NaN and Infinity included), at any depth and at any offset in a larger buffer;
- for any bytes, ``iter_array_elements`` either raises :class:`JsonInputError` or yields elements whose
  byte ranges are inside the data, disjoint and in order (and so do the elements it yields before raising).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st

from common.strict_json import (
    MAX_DEPTH,
    JsonInputError,
    check_syntax,
    dumps,
    iter_array_elements,
    loads,
    loads_array_element,
)

REASONS = {"not_utf8", "not_json", "too_deep", "non_standard", "number_too_long", "number_out_of_range"}

# ----------------------------------------------------------------------------------- strategies

#: Any code point, lone surrogates and C0 controls included (st.text() leaves surrogates out).
WILD_CHAR = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.characters(max_codepoint=31))


def wild_text(max_size: int = 20) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=max_size), st.lists(WILD_CHAR, max_size=max_size).map("".join))


#: Integers past 64 bits, but within the digit limit a JSON reader accepts.
JSON_INTS = st.one_of(st.integers(), st.integers(min_value=-(10**200), max_value=10**200),
                      st.sampled_from([2**31, 2**63, 2**64, -(2**63) - 1, 10**4299, -(10**4299)]))
FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | JSON_INTS | FINITE_FLOATS | text
    return st.recursive(scalars, lambda children: st.lists(children, max_size=6)
                        | st.dictionaries(text, children, max_size=6), max_leaves=25)


JSON_VALUES = json_values(wild_text())
JSON_LISTS = st.lists(JSON_VALUES, max_size=12)

#: Bytes assembled from JSON's own pieces (and a few of its near misses), so that arbitrary input
#: reaches past the first byte more often than uniformly random bytes do.
FRAGMENTS = st.sampled_from([
    b"[", b"]", b"{", b"}", b",", b":", b'"', b'"a"', b'"\\"', b'"\\u', b"\\", b"\\ud800", b'"\\ud83d\\ude00"',
    b"0", b"-1", b"1e400", b"-0.0", b"9" * 4301, b"NaN", b"Infinity", b"-Infinity", b"true", b"null", b"nul",
    b" ", b"\n", b"\t", b"\r", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xc3\xa9", b"\xed\xa0\x80", b"\x00", b"//", b"'",
])
JSONISH_BYTES = st.lists(FRAGMENTS, max_size=40).map(b"".join)


@st.composite
def mutated_json(draw: st.DrawFn) -> bytes:
    """A valid JSON document (an array, mostly), then up to three edits: the near misses a fuzzer
    built from random bytes seldom reaches (a dropped comma, a cut string, an extra bracket)."""
    value = draw(st.one_of(st.lists(json_values(wild_text(8)), max_size=6), json_values(wild_text(8))))
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1])))
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        if edit == "truncate":
            del data[position:]
        elif edit == "delete":
            del data[position:position + draw(st.integers(1, 3))]
        else:
            fragment = draw(FRAGMENTS)
            data[position:position + (edit == "replace")] = fragment
    return bytes(data)


ANY_BYTES = st.one_of(st.binary(max_size=200), JSONISH_BYTES,
                      st.tuples(st.sampled_from([b"[", b" [", b"\xef\xbb\xbf["]), JSONISH_BYTES).map(b"".join),
                      mutated_json())


def depth_of(value: Any) -> int:
    """Nesting as exceeds_depth counts it: 1 for a container of scalars."""
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


def as_json_reads_it(value: Any) -> Any:
    """``value`` as any JSON reader gives it back: a high surrogate followed by a low one is written
    as the escape pair ``\\ud800\\udc00``, which JSON defines as one astral character (RFC 8259
    section 7), so such a Python string has no JSON spelling of its own. Lone surrogates stay."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if isinstance(value, list):
        return [as_json_reads_it(v) for v in value]
    if isinstance(value, dict):
        joined: dict[str, Any] = {}
        for key, item in value.items():
            joined[as_json_reads_it(key)] = as_json_reads_it(item)
        return joined
    return value


def strict_loads(data: bytes) -> Any:
    """The standard library's reader, refusing NaN and Infinity."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"non-standard constant {name} in dumps output")

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


def same(a: Any, b: Any) -> bool:
    """Equality that also tells -0.0 from 0.0 and an int from a float (1 == 1.0 would hide a lost type)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


# ------------------------------------------------------------------------------------ properties

@given(JSON_VALUES)
def test_loads_of_dumps_gives_back_the_value(value: Any) -> None:
    assume(depth_of(value) <= MAX_DEPTH)
    assert same(loads(dumps(value)), as_json_reads_it(value))


@given(JSON_VALUES)
def test_dumps_writes_strict_utf8_json(value: Any) -> None:
    data = dumps(value)
    data.decode("utf-8")  # strict: a lone surrogate must have been escaped, not encoded
    assert same(strict_loads(data), as_json_reads_it(value))


@given(JSON_VALUES, st.sampled_from([math.nan, math.inf, -math.inf]))
def test_dumps_refuses_non_finite_numbers(value: Any, non_finite: float) -> None:
    with pytest.raises(ValueError):
        dumps([value, {"x": non_finite}])


@given(ANY_BYTES, st.sampled_from([MAX_DEPTH, 3, None]), st.booleans())
def test_loads_raises_only_json_input_error_for_any_bytes(data: bytes, max_depth: int | None,
                                                          exact_numbers: bool) -> None:
    try:
        loads(data, max_depth=max_depth, exact_numbers=exact_numbers)
    except JsonInputError as exc:
        assert exc.reason in REASONS
        assert str(exc)
        assert exc.position is None or 0 <= exc.position <= len(data)


@given(mantissa=st.sampled_from([b"1", b"-1", b"2.5", b"0.1", b"9" * 30]), sign=st.sampled_from([b"", b"+"]),
       exponent=st.integers(10**18, 10**40), e=st.sampled_from([b"e", b"E"]))
def test_loads_with_exact_numbers_refuses_an_exponent_past_decimals_range_as_json_input_error(
        mantissa: bytes, sign: bytes, exponent: int, e: bytes) -> None:
    data = b'{"x": ' + mantissa + e + sign + str(exponent).encode() + b"}"
    try:
        loads(data, exact_numbers=True)
    except JsonInputError as exc:
        assert exc.reason in REASONS


@given(ANY_BYTES)
def test_loads_accepts_exactly_what_a_strict_standard_reader_accepts(data: bytes) -> None:
    """A differential check against json.loads refusing NaN/Infinity, out-of-range and over-long numbers."""
    def refuse(_: str) -> Any:
        raise ValueError("refused")

    def finite(text: str) -> float:
        number = float(text)
        if math.isinf(number):
            raise ValueError("refused")
        return number

    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    try:
        expected = json.loads(body.decode("utf-8"), parse_constant=refuse, parse_float=finite)
        ok = depth_of(expected) <= MAX_DEPTH
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError and the digit limit included
        ok = False
    try:
        got = loads(data)
    except JsonInputError:
        assert not ok, f"strict_json refused what the standard reader accepts: {data!r}"
    else:
        assert ok and same(got, expected)


@given(JSON_LISTS, st.sampled_from([None, 0, 2]), st.booleans())
def test_array_elements_of_a_dumped_list_load_back(items: list[Any], indent: int | None, ascii_only: bool) -> None:
    assume(all(depth_of(item) <= MAX_DEPTH for item in items))
    data = json.dumps(items, indent=indent, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if not ascii_only:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            data = json.dumps(items, indent=indent).encode()  # a lone surrogate can only travel escaped
    elements = list(iter_array_elements(data))
    assert [e.index for e in elements] == list(range(len(items)))
    assert same([loads_array_element(data, e) for e in elements], as_json_reads_it(items))
    assert [e.depth for e in elements] == [depth_of(item) for item in items]


@given(ANY_BYTES)
def test_array_element_ranges_are_disjoint_ordered_and_inside_the_data_or_the_split_raises(data: bytes) -> None:
    offset = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    elements = []
    try:
        for element in iter_array_elements(data, offset):
            elements.append(element)
    except JsonInputError as exc:
        assert exc.reason == "not_json" and exc.position is not None and 0 <= exc.position <= len(data)
    previous_end = offset
    for number, element in enumerate(elements):
        assert element.index == number
        assert previous_end < element.start < element.end <= len(data)  # after the '[' or the ','
        assert data[element.start] not in b" \t\r\n" and data[element.end - 1] not in b" \t\r\n"
        assert data[previous_end:element.start].strip(b" \t\r\n") in (b"[", b",")
        previous_end = element.end


@given(ANY_BYTES)
def test_a_split_that_completes_agrees_with_a_parse_of_the_whole_array(data: bytes) -> None:
    """When the standard reader reads the bytes as an array, the splitter finds the same elements."""
    try:
        whole = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return
    if not isinstance(whole, list):
        return
    start = len(data) - len(data.lstrip(b" \t\r\n"))  # the array starts at its '[', as check_blob finds it
    elements = list(iter_array_elements(data, start))
    assert len(elements) == len(whole)
    for element, expected in zip(elements, whole, strict=True):
        got = json.loads(data[element.start:element.end].decode("utf-8"))
        assert json.dumps(got) == json.dumps(expected)  # NaN included, which is not equal to itself


def standard_syntax_ok(text: str) -> bool:
    """Whether the standard parser reads ``text`` as one JSON value, every number and constant accepted."""
    def drop(_: str) -> None:
        return None

    try:
        json.loads(text, parse_int=drop, parse_float=drop, parse_constant=drop)
    except ValueError:
        return False
    return True


@given(data=ANY_BYTES.filter(lambda d: not d.startswith(b"\xef\xbb\xbf")), depth=st.sampled_from([0, MAX_DEPTH + 1, 300]),
       prefix=st.sampled_from([b"", b"[1, ", b"\xc3\xa9 ]"]), suffix=st.sampled_from([b"", b"]", b", 2]"]))
def test_check_syntax_agrees_with_the_standard_parser_at_any_depth_and_offset(data: bytes, depth: int, prefix: bytes,
                                                                            suffix: bytes) -> None:
    """Past MAX_DEPTH check_syntax walks the value with its own stack, not the parser: both must agree.
    Its caller (check_blob) has checked the blob is UTF-8, so the domain is UTF-8 text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    value = b"[" * depth + data + b"]" * depth
    expected = standard_syntax_ok("[" * depth + text + "]" * depth)  # 300 levels: within the parser's recursion
    event(f"valid JSON: {expected}")
    buffer = prefix + value + suffix
    start, end = len(prefix), len(prefix) + len(value)
    try:
        check_syntax(buffer, start, end)
    except JsonInputError as exc:
        assert not expected, f"refused a value the standard parser reads: {value!r}"
        assert exc.reason == "not_json" and exc.position is not None and start <= exc.position <= end
    else:
        assert expected, f"accepted what the standard parser refuses: {value!r}"
