"""Reading a blob's records incrementally, validating them, and shaping Cosmos items.

No Azure SDK here: pure functions over bytes and dicts.

- :func:`check_blob` makes one streaming pass that proves the blob readable
  (UTF-8, well-formed, the right top-level shape) without building records,
  so a truncated or malformed blob writes nothing.
- :func:`iter_records` then yields records one at a time from the same bytes.
- :func:`validate_record` and :func:`to_item` decide what a record becomes.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from decimal import Decimal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

BlobFormat = Literal["json", "jsonl"]

REQUIRED_FIELDS = ("id", "data", "source", "type")
#: Cosmos DB limits: id length and characters, item size (2 MB, with room for system properties).
MAX_ID_LENGTH = 255
FORBIDDEN_ID_CHARACTERS = frozenset("/\\?#")
MAX_ITEM_BYTES = 2 * 1024 * 1024 - 16 * 1024
#: Deeper records are refused before anything tries to serialize them.
MAX_NESTING = 64
_UTF8_BOM = codecs.BOM_UTF8
#: A \\uD800-\\uDBFF escape not followed by a \\uDC00-\\uDFFF one, or the reverse.
_LONE_SURROGATE_ESCAPE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
_CHUNK = 1024 * 1024


class BlobFormatError(ValueError):
    """The blob as a whole cannot be read; ``position`` is a byte offset where known."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} (at byte {position})")
        self.position = position


@dataclass(frozen=True)
class RawRecord:
    index: int
    value: Any = None
    #: Set when the record itself could not be read (a JSON Lines line that is not JSON).
    error: str | None = None
    line: int | None = None


class InvalidRecord(ValueError):
    pass


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


def _check_utf8(view: memoryview) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    for offset in range(0, len(view), _CHUNK):
        chunk = view[offset:offset + _CHUNK]
        try:
            decoder.decode(chunk, final=offset + _CHUNK >= len(view))
        except UnicodeDecodeError as exc:
            raise BlobFormatError("blob is not valid UTF-8", offset + exc.start) from None


def _json_error_position(view: memoryview) -> tuple[str, int | None]:
    """Exact message and byte position of a JSON syntax error (only runs on a failed blob)."""
    text = bytes(view).decode("utf-8")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"blob is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", len(text[: exc.pos].encode())
    except (ValueError, RecursionError) as exc:
        return f"blob is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}", None
    return "blob is not valid JSON", None


def check_blob(data: bytes | memoryview, fmt: BlobFormat) -> None:
    """Raise :class:`BlobFormatError` unless the blob can be read as ``fmt``. Builds no records."""
    import ijson

    view = _body(data)
    _check_utf8(view)
    if fmt == "jsonl":
        return  # each line stands alone; a bad line is a bad record, not a bad blob
    first, position = _first_significant(view)
    if first is None:
        raise BlobFormatError("blob is empty: expected a JSON array of records")
    if first != ord("["):
        raise BlobFormatError("blob's top level must be a JSON array of records", position)
    try:
        for _ in ijson.basic_parse(_reader(data)):
            pass
    except ijson.JSONError:
        message, error_position = _json_error_position(view)
        raise BlobFormatError(message, error_position) from None


def iter_records(data: bytes | memoryview, fmt: BlobFormat) -> Iterator[RawRecord]:
    """Records one by one, in blob order. Call :func:`check_blob` first."""
    import ijson

    if fmt == "json":
        # The C parser turns an unpaired surrogate escape ("\\ud800") into "?", silently changing
        # the data; the rare blob that holds one is parsed by ijson's Python parser, which keeps
        # it, so the record is refused by name instead of stored altered.
        parser = ijson.get_backend("python") if _LONE_SURROGATE_ESCAPE.search(data) else ijson
        # Numbers stay exact (int, Decimal): floats would overflow on valid JSON such as 1e400.
        for index, value in enumerate(parser.items(_reader(data), "item")):
            yield RawRecord(index, value)
        return
    index = 0
    for line_number, line in enumerate(_reader(data), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            yield RawRecord(index, error=f"line is not valid JSON: {getattr(exc, 'msg', exc)}", line=line_number)
        except RecursionError:
            yield RawRecord(index, error="line nests JSON too deeply", line=line_number)
        except ValueError as exc:  # for example an integer past Python's digit limit
            yield RawRecord(index, error=f"line is not valid JSON: {str(exc)[:200]}", line=line_number)
        else:
            yield RawRecord(index, value, line=line_number)
        index += 1


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, (dict, list)))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return False


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
    if _depth_exceeds(value, MAX_NESTING):
        raise InvalidRecord(f"record nests deeper than {MAX_NESTING} levels")
    return value


def has_unpaired_surrogate(text: str) -> bool:
    """JSON may escape one (``"\\ud800"``); no UTF-8 encoder, Cosmos DB's included, accepts it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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


def utc_timestamp(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
