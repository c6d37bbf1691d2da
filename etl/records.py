"""Reading a blob's records incrementally, validating them, and shaping Cosmos items.

No Azure SDK here: pure functions over bytes and dicts.

- :func:`check_blob` makes one pass that proves the blob readable (UTF-8,
  well-formed, the right top-level shape) keeping no records, so a truncated
  or malformed blob writes nothing.
- :func:`iter_records` then yields records one at a time from the same bytes,
  each read by the app's strict JSON reader (:mod:`common.strict_json`), so a
  record that breaks one of its rules is refused by name and the rest land.
- :func:`validate_record` and :func:`to_item` decide what a record becomes.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from common.errors import InvalidInput
from common.strict_json import (
    MAX_DEPTH,
    ArrayElement,
    JsonInputError,
    check_syntax,
    has_unpaired_surrogate,
    iter_array_elements,
    loads,
    loads_array_element,
)

BlobFormat = Literal["json", "jsonl"]

REQUIRED_FIELDS = ("id", "data", "source", "type")
#: Cosmos DB limits: id length and characters, item size (2 MB, with room for system properties).
MAX_ID_LENGTH = 255
FORBIDDEN_ID_CHARACTERS = frozenset("/\\?#")
MAX_ITEM_BYTES = 2 * 1024 * 1024 - 16 * 1024
#: Deeper records are refused before anything tries to serialize them.
MAX_NESTING = MAX_DEPTH
_UTF8_BOM = codecs.BOM_UTF8
_CHUNK = 256 * 1024


class BlobFormatError(InvalidInput):
    """The blob as a whole cannot be read; ``position`` is a byte offset where known."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} (at byte {position})", reason="unreadable_blob")
        self.position = position


@dataclass(frozen=True)
class RawRecord:
    index: int
    value: Any = None
    #: Set when the record itself could not be read (a JSON Lines line that is not JSON).
    error: str | None = None
    line: int | None = None


class InvalidRecord(InvalidInput):
    """One record can never become an item; the summary names it with this reason."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, reason="invalid_record")


def detect_format(blob_name: str, data: bytes | memoryview) -> BlobFormat:
    """By extension (``.json``; ``.jsonl``/``.ndjson``), else by the first non-blank byte."""
    lowered = blob_name.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lowered.endswith(".json"):
        return "json"
    first = _first_significant_byte(data)
    if first == ord("["):
        return "json"
    if first == ord("{"):
        return "jsonl"
    raise BlobFormatError("unsupported blob: expected a JSON array (.json) or JSON Lines (.jsonl, .ndjson)")


def _body(data: bytes | memoryview) -> memoryview:
    view = memoryview(data)
    return view[len(_UTF8_BOM):] if bytes(view[:3]) == _UTF8_BOM else view


def _reader(data: bytes | memoryview) -> io.BytesIO:
    """A file over the blob's bytes, past any byte order mark, without copying them.

    ``io.BytesIO`` shares a ``bytes`` object's buffer until written to, whereas a
    memoryview or a slice would be copied: one more copy of the whole blob.
    """
    raw = data if isinstance(data, bytes) else bytes(data)
    stream = io.BytesIO(raw)
    if raw[:3] == _UTF8_BOM:
        stream.seek(len(_UTF8_BOM))
    return stream


def _first_significant(view: memoryview) -> tuple[int | None, int]:
    """The first byte that is not JSON white space, and its offset."""
    for offset in range(0, len(view), 4096):
        chunk = bytes(view[offset:offset + 4096])
        stripped = chunk.lstrip(b" \t\r\n")
        if stripped:
            return stripped[0], offset + len(chunk) - len(stripped)
    return None, len(view)


def _first_significant_byte(data: bytes | memoryview) -> int | None:
    return _first_significant(_body(data))[0]


def _check_utf8(view: memoryview, base: int) -> None:
    """Raise at the byte offset (from the start of the blob, ``base`` being the body's) of the
    first byte that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for offset in range(0, len(view), _CHUNK):
        chunk = view[offset:offset + _CHUNK]
        held = len(decoder.getstate()[0])  # bytes of a character begun in the previous chunk
        try:
            decoder.decode(chunk, final=offset + _CHUNK >= len(view))
        except UnicodeDecodeError as exc:
            raise BlobFormatError("blob is not valid UTF-8", base + offset - held + exc.start) from None


def check_blob(data: bytes, fmt: BlobFormat) -> None:
    """Raise :class:`BlobFormatError` unless the blob can be read as ``fmt``. Keeps no records.

    For a JSON array, every element's syntax is checked (each element is parsed and dropped,
    one at a time), so a truncated or malformed blob writes nothing; the error's position is
    exact and found without a second copy of the blob. A record that is well-formed JSON but
    breaks a limit (too deep, a number too long, NaN) is not a blob error: it is refused by
    name when :func:`iter_records` reaches it.
    """
    view = _body(data)
    base = len(data) - len(view)  # a byte order mark's length
    _check_utf8(view, base)
    if fmt == "jsonl":
        return  # each line stands alone; a bad line is a bad record, not a bad blob
    first, position = _first_significant(view)
    if first is None:
        raise BlobFormatError("blob is empty: expected a JSON array of records")
    if first != ord("["):
        raise BlobFormatError("blob's top level must be a JSON array of records", base + position)
    offset = len(data) - len(view) + position
    try:
        for element in iter_array_elements(data, offset):
            check_array_element(data, element)
    except JsonInputError as exc:
        raise BlobFormatError(f"blob {exc.detail}", exc.position) from None


def check_array_element(data: bytes, element: ArrayElement) -> None:
    """Raise :class:`JsonInputError` (``not_json``) unless the element is JSON. A well-formed element
    that breaks a limit (too deep, a number too long) passes: it is refused by name later."""
    if element.depth > MAX_NESTING:
        check_syntax(data, element.start, element.end)  # refused later, but must be JSON
        return
    try:
        loads_array_element(data, element, exact_numbers=True)
    except JsonInputError as exc:
        if exc.reason == "not_json":
            raise
        check_syntax(data, element.start, element.end)  # a refused number must not hide a syntax error


def iter_records(data: bytes, fmt: BlobFormat, *, first_index: int = 0, first_line: int = 1) -> Iterator[RawRecord]:
    """Records one by one, in blob order, each read by the strict reader. Call :func:`check_blob` first.

    A record that nests deeper than :data:`MAX_NESTING` is refused before it is built.
    Numbers stay exact: a double's overflow (``1e400``) is kept as a Decimal, not refused,
    since the record's other fields may still be valid.

    ``first_index`` and ``first_line`` number the records of a JSON Lines segment (a range of
    whole lines of a larger blob) as in the whole blob; see :func:`iter_array_segment` for arrays.
    """
    if fmt == "json":
        body = _body(data)
        offset = len(data) - len(body) + _first_significant(body)[1]
        yield from _iter_array(data, offset, first_index)
        return
    index = first_index
    for line_number, line in enumerate(_reader(data), start=first_line):
        if not line.strip(b" \t\r\n"):  # JSON's white space only: a form feed alone is a bad line, named
            continue
        try:
            value = loads(line, max_depth=MAX_NESTING, exact_numbers=True)
        except JsonInputError as exc:
            yield RawRecord(index, error=f"line {exc.detail}", line=line_number)
        else:
            yield RawRecord(index, value, line=line_number)
        index += 1


def iter_array_segment(elements: bytes, first_index: int) -> Iterator[RawRecord]:
    """Records of a JSON array segment: ``elements`` is the bytes from one element's first byte to a
    later element's last (elements and the commas between them), the first being ``first_index``."""
    yield from _iter_array(b"[" + elements + b"]", 0, first_index)


def _iter_array(data: bytes, offset: int, first_index: int) -> Iterator[RawRecord]:
    for element in iter_array_elements(data, offset):
        index = first_index + element.index
        if element.depth > MAX_NESTING:
            yield RawRecord(index, error=f"record nests deeper than {MAX_NESTING} levels")
            continue
        try:
            yield RawRecord(index, loads_array_element(data, element, exact_numbers=True))
        except JsonInputError as exc:
            yield RawRecord(index, error=f"record {exc.detail}")


def validate_record(value: Any) -> dict[str, Any]:
    """The record if it can become an item; :class:`InvalidRecord` saying why not."""
    if not isinstance(value, dict):
        raise InvalidRecord(f"record is a JSON {_json_type(value)}, not an object")
    for name in REQUIRED_FIELDS:
        field_value = value.get(name)
        if name not in value:
            raise InvalidRecord(f"missing '{name}'")
        if not isinstance(field_value, str):
            raise InvalidRecord(f"'{name}' must be a string, not {_json_type(field_value)}")
        if not field_value.strip():
            raise InvalidRecord(f"'{name}' must not be empty")
        if has_unpaired_surrogate(field_value):
            raise InvalidRecord(f"'{name}' holds an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text")
    record_id = value["id"]
    if len(record_id) > MAX_ID_LENGTH:
        raise InvalidRecord(f"'id' is longer than {MAX_ID_LENGTH} characters")
    if any(ch in FORBIDDEN_ID_CHARACTERS for ch in record_id) or any(ord(ch) < 32 for ch in record_id):
        raise InvalidRecord("'id' contains a character Cosmos DB does not allow ('/', '\\', '?', '#' or a control character)")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def to_item(record: dict[str, Any], source_blob: str, timestamp: str) -> dict[str, Any]:
    """The Cosmos item for a valid record. Raises :class:`InvalidRecord` if it would be too large."""
    processed = record["data"].upper()
    if len(processed) * 4 > MAX_ITEM_BYTES and len(processed.encode("utf-8")) > MAX_ITEM_BYTES:
        raise InvalidRecord("'data' is too large for a Cosmos DB item (2 MB)")
    return {
        "id": record["id"],
        "processedData": processed,
        "timestamp": timestamp,
        "metadata": {"source": record["source"], "type": record["type"]},
        "sourceBlob": source_blob,
    }
