"""Splitting a blob into segments without holding it: the fan-out half of the pipeline.

No Azure SDK here. A splitter is fed the blob's bytes in order, chunk by chunk
(:meth:`feed`, then :meth:`finish`), keeps at most one chunk plus one record in
memory, and returns :class:`Segment` s: byte ranges of the blob, each bounded
by a number of records and of bytes, that a worker reads on its own.

- :class:`JsonLinesSplitter` does not parse: it finds line ends (C-speed
  searches), so a segment holds whole lines. A range owns exactly the lines
  that start inside it, and the splitter knows each segment's first record
  index and line number, so a worker's summary names records as an inline run
  would. A line longer than ``max_record_bytes`` becomes a segment of its own
  marked ``oversized``, which its worker names as invalid without reading it.
- :class:`JsonArraySplitter` scans the array's structure (strings skipped
  whole) and checks every element's syntax as :func:`etl.records.check_blob`
  does, so a malformed array fails before any segment exists, as inline.

Both check UTF-8 as they go. A blob that cannot be read raises
:class:`~etl.records.BlobFormatError` with the byte position.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from common.strict_json import JsonInputError, iter_array_elements

from .records import BlobFormatError, check_array_element

#: The most bytes one record may take in a fanned-out blob: an item is at most 2 MB, and even
#: text written wholly in ``\\uXXXX`` escapes (6 bytes a character) stays under this.
MAX_RECORD_BYTES = 16 * 1024 * 1024
_UTF8_BOM = codecs.BOM_UTF8
_BLANK_LINE = re.compile(rb"^[ \t\r]*\n", re.MULTILINE)
_NOT_WHITESPACE = re.compile(rb"[^ \t\r\n]")


@dataclass(frozen=True)
class Segment:
    """Records ``first_index`` .. ``first_index + records - 1`` of the blob, in bytes ``start`` .. ``end - 1``."""

    number: int
    start: int
    end: int
    first_index: int
    records: int
    #: JSON Lines: the line number of the segment's first line (blank lines count as lines).
    first_line: int | None = None
    #: One line longer than ``MAX_RECORD_BYTES``: named invalid by its worker, never read.
    oversized: bool = False

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"segment": self.number, "start": self.start, "end": self.end,
                                   "firstIndex": self.first_index, "records": self.records}
        if self.first_line is not None:
            data["firstLine"] = self.first_line
        if self.oversized:
            data["oversized"] = True
        return data


class _Utf8Check:
    """UTF-8 validity of a byte stream fed in pieces, raising at the first bad byte's offset."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._offset = 0

    def feed(self, chunk: bytes, final: bool = False) -> None:
        held = len(self._decoder.getstate()[0])
        try:
            self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            raise BlobFormatError("blob is not valid UTF-8", self._offset - held + exc.start) from None
        self._offset += len(chunk)


class JsonLinesSplitter:
    """Segments of a JSON Lines blob: whole lines, at most ``max_records`` lines (so at most that
    many records) and ``max_bytes`` bytes each, unless one line alone is longer."""

    def __init__(self, max_records: int, max_bytes: int, *, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_record_bytes = max_record_bytes
        self._utf8 = _Utf8Check()
        self._segments: list[Segment] = []
        self._number = 0
        self._fed = 0  # bytes fed so far
        self._carry = b""  # the current line's bytes, from _carry_start (never more than max_record_bytes)
        self._carry_start = 0
        self._oversized = False  # skipping the rest of a line longer than max_record_bytes
        self._bom_checked = False
        # The open segment: [start, end) holding `lines` lines, `records` of them not blank.
        self._start = 0
        self._end = 0
        self._lines = 0
        self._records = 0
        self._index = 0  # records before the open segment
        self._line = 1  # line number of the open segment's first line

    # ----------------------------------------------------------------- feeding

    def feed(self, chunk: bytes) -> list[Segment]:
        """Take the next bytes of the blob; return the segments they complete."""
        if len(chunk) > self.max_record_bytes:
            # In pieces no longer than a record may be, so every line longer than that spans two
            # pieces and is caught where a piece's first line completes the carried one.
            done: list[Segment] = []
            for offset in range(0, len(chunk), self.max_record_bytes):
                done += self.feed(chunk[offset:offset + self.max_record_bytes])
            return done
        self._utf8.feed(chunk)
        base = self._fed
        self._fed += len(chunk)
        if not self._bom_checked:
            # The byte order mark is not part of any line (nor of the first segment's range).
            pending = self._carry + chunk
            if len(pending) < len(_UTF8_BOM) and _UTF8_BOM.startswith(pending):
                self._carry = pending
                return self._take()
            self._bom_checked = True
            skip = len(_UTF8_BOM) if pending.startswith(_UTF8_BOM) else 0
            self._carry = b""
            base, chunk = skip, pending[skip:]
            self._start = self._end = self._carry_start = skip
        self._consume(base, chunk)
        return self._take()

    def finish(self) -> list[Segment]:
        """The blob has ended: return the last segments."""
        self._utf8.feed(b"", final=True)
        if not self._bom_checked and self._carry:  # a blob of one or two bytes
            self._bom_checked = True
            carry, self._carry = self._carry, b""
            self._start = self._end = self._carry_start = 0
            self._consume(0, carry)
        if self._oversized:
            self._emit_oversized(self._fed)
        elif self._carry:  # the last line has no line end
            self._add_lines(self._carry_start, self._carry, final_line=True)
            self._carry = b""
        self._close()
        return self._take()

    def _take(self) -> list[Segment]:
        done, self._segments = self._segments, []
        return done

    def _consume(self, base: int, chunk: bytes) -> None:
        position = 0
        if not self._oversized and self._carry:
            newline = chunk.find(b"\n")
            if newline >= 0 and len(self._carry) + newline > self.max_record_bytes:
                self._oversized = True  # the carried line ends here, longer than a record may be
                self._carry = b""
        if self._oversized:
            newline = chunk.find(b"\n")
            if newline < 0:
                return
            self._emit_oversized(base + newline + 1)
            position = newline + 1
            self._carry_start = base + position
        last = chunk.rfind(b"\n", position)
        if last >= 0:
            block = self._carry + chunk[position:last + 1] if self._carry else chunk[position:last + 1]
            start = self._carry_start
            self._carry = b""
            self._add_lines(start, block)
            position = last + 1
            self._carry_start = base + position
        rest = chunk[position:]
        if len(self._carry) + len(rest) > self.max_record_bytes:
            self._oversized = True
            self._carry = b""
        else:
            self._carry += rest

    # -------------------------------------------------------------- segments

    def _add_lines(self, offset: int, block: bytes, final_line: bool = False) -> None:
        """Whole lines ``block`` (each ending in a line end, unless ``final_line``) at blob ``offset``."""
        position = 0
        size = len(block)
        while position < size:
            used = offset + position - self._start  # bytes already in the open segment
            if self._lines >= self.max_records or (self._lines and used >= self.max_bytes):
                self._close()
                used = 0
            limit = min(size, position + self.max_bytes - used)  # how far the open segment may reach
            end = _after_lines(block, position, self.max_records - self._lines, limit)
            if end == limit < size and block[limit - 1] != 0x0A:  # the limit falls inside a line
                cut = block.rfind(b"\n", position, limit)  # the last line end before it
                if cut >= 0:
                    end = cut + 1
                elif self._lines:
                    self._close()  # the next line does not fit: it starts the next segment
                    continue
                else:  # one line longer than max_bytes on its own
                    end = (block.find(b"\n", limit) + 1) or size
            piece = block[position:end]
            unterminated = final_line and not piece.endswith(b"\n")
            lines = piece.count(b"\n") + (1 if unterminated else 0)
            blank = len(_BLANK_LINE.findall(piece))
            if unterminated and not piece[piece.rfind(b"\n") + 1:].strip(b" \t\r"):
                blank += 1  # a last line of white space only
            self._lines += lines
            self._records += lines - blank
            self._end = offset + end
            position = end

    def _close(self) -> None:
        if self._records:  # a run of blank lines alone is no work for anyone
            self._segments.append(Segment(self._number, self._start, self._end, self._index, self._records,
                                          first_line=self._line))
            self._number += 1
        self._index += self._records
        self._line += self._lines
        self._start = self._end
        self._lines = self._records = 0

    def _emit_oversized(self, end: int) -> None:
        self._close()
        self._segments.append(Segment(self._number, self._carry_start, end, self._index, 1,
                                      first_line=self._line, oversized=True))
        self._number += 1
        self._index += 1
        self._line += 1
        self._start = self._end = end
        self._oversized = False


def _after_lines(block: bytes, position: int, count: int, stop: int) -> int:
    """The block position just after ``count`` more lines from ``position``, or ``stop`` when fewer
    lines end before it. Each search starts where the last ended: linear in the lines taken."""
    end = position
    for _ in range(count):
        newline = block.find(b"\n", end, stop)
        if newline < 0:
            return stop
        end = newline + 1
    return end


class JsonArraySplitter:
    """Segments of a JSON array blob: runs of whole elements, at most ``max_records`` elements and
    ``max_bytes`` bytes each (from the first element's first byte to the last one's last)."""

    def __init__(self, max_records: int, max_bytes: int, *, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_record_bytes = max_record_bytes
        self._utf8 = _Utf8Check()
        self._buffer = b""
        self._buffer_offset = 0  # blob offset of _buffer[0]
        self._opened = False  # the array's '[' was found
        self._closed = False  # its ']' was found: only white space may follow
        self._index = 0  # elements seen
        self._segments: list[Segment] = []
        self._number = 0
        self._open: list[int] | None = None  # [start, end, first_index, count] of the open segment
        self._after_comma = False  # the buffer starts after a comma: an element must follow

    def feed(self, chunk: bytes) -> list[Segment]:
        self._utf8.feed(chunk)
        self._buffer += chunk
        self._scan(final=False)
        return self._take()

    def finish(self) -> list[Segment]:
        self._utf8.feed(b"", final=True)
        self._scan(final=True)
        if not self._opened:
            raise BlobFormatError("blob is empty: expected a JSON array of records")
        if not self._closed:
            raise BlobFormatError("blob is not valid JSON: the array is not closed", self._buffer_offset + len(self._buffer))
        self._close_segment()
        return self._take()

    def _take(self) -> list[Segment]:
        done, self._segments = self._segments, []
        return done

    def _drop(self, count: int) -> None:
        self._buffer = self._buffer[count:]
        self._buffer_offset += count

    def _scan(self, *, final: bool) -> None:
        if self._closed:
            extra = _NOT_WHITESPACE.search(self._buffer)
            if extra is not None:
                raise BlobFormatError("blob is not valid JSON: Extra data after the array",
                                      self._buffer_offset + extra.start())
            self._drop(len(self._buffer))
            return
        if not self._opened:
            if self._buffer_offset == 0 and len(self._buffer) < 3 and _UTF8_BOM.startswith(self._buffer) and not final:
                return
            if self._buffer_offset == 0 and self._buffer.startswith(_UTF8_BOM):
                self._drop(len(_UTF8_BOM))
            first = _NOT_WHITESPACE.search(self._buffer)
            if first is None:
                self._drop(len(self._buffer))
                return
            if self._buffer[first.start()] != 0x5B:  # '['
                raise BlobFormatError("blob's top level must be a JSON array of records",
                                      self._buffer_offset + first.start())
            self._drop(first.start() + 1)
            self._opened = True
        # The rest of the array from here, as an array of its own: "[" + what follows the last comma.
        view = b"[" + self._buffer
        consumed = 0  # bytes of _buffer whose elements are done
        yielded = False
        try:
            for element in iter_array_elements(view, 0):
                yielded = True
                self._check(view, element)
                self._add(self._buffer_offset + element.start - 1, self._buffer_offset + element.end - 1)
                separator = _NOT_WHITESPACE.search(view, element.end)
                consumed = (separator.end() if separator is not None else len(view)) - 1
            if self._after_comma and not yielded:
                raise BlobFormatError("blob is not valid JSON: Expecting value", self._buffer_offset)
            self._closed = True
            self._drop(len(self._buffer))
            return
        except JsonInputError as exc:
            position = exc.position if exc.position is not None else len(view)
            truncated = position >= len(view) or "Unterminated string" in exc.detail
            if final or not truncated:
                message = exc.detail.split(" at line ")[0]
                raise BlobFormatError(f"blob {message}", self._buffer_offset + position - 1) from None
        if consumed:
            self._drop(consumed)
            self._after_comma = True
        if len(self._buffer) > self.max_record_bytes:
            raise BlobFormatError(f"record {self._index} is longer than {self.max_record_bytes} bytes, the most one "
                                  "record of a fanned-out blob may take (or its string is never closed)",
                                  self._buffer_offset)

    def _check(self, view: bytes, element: object) -> None:
        try:
            check_array_element(view, element)  # type: ignore[arg-type]
        except JsonInputError as exc:
            position = exc.position if exc.position is not None else getattr(element, "start", 0)
            message = exc.detail.split(" at line ")[0]
            raise BlobFormatError(f"blob {message}", self._buffer_offset + position - 1) from None

    def _add(self, start: int, end: int) -> None:
        current = self._open
        if current is not None and (current[3] >= self.max_records or end - current[0] > self.max_bytes):
            self._close_segment()
            current = None
        if current is None:
            self._open = [start, end, self._index, 1]
        else:
            current[1] = end
            current[3] += 1
        self._index += 1

    def _close_segment(self) -> None:
        if self._open is not None:
            start, end, first, count = self._open
            self._segments.append(Segment(self._number, start, end, first, count))
            self._number += 1
            self._open = None
