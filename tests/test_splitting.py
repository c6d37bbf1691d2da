"""The splitters: fed a blob in arbitrary chunks, their segments hold exactly the blob's records.

The reference is the inline reader (:func:`etl.records.iter_records` on the whole blob):
reading every segment on its own must give the same records, with the same indexes and line
numbers, and a blob the inline check refuses must be refused by the splitter too.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.records import BlobFormatError, RawRecord, check_blob, iter_array_segment, iter_records
from etl.splitting import JsonArraySplitter, JsonLinesSplitter, Segment


def split(splitter: JsonLinesSplitter | JsonArraySplitter, data: bytes, chunk: int) -> list[Segment]:
    segments: list[Segment] = []
    for offset in range(0, len(data), chunk):
        segments += splitter.feed(data[offset:offset + chunk])
    return segments + splitter.finish()


def records_of_segments(data: bytes, segments: list[Segment], fmt: str) -> list[RawRecord]:
    records: list[RawRecord] = []
    for segment in segments:
        if segment.oversized:
            records.append(RawRecord(segment.first_index, error="oversized", line=segment.first_line))
            continue
        piece = data[segment.start:segment.end]
        if fmt == "jsonl":
            found = list(iter_records(piece, "jsonl", first_index=segment.first_index,
                                      first_line=segment.first_line or 1))
        else:
            found = list(iter_array_segment(piece, segment.first_index))
        assert len(found) == segment.records, segment
        records += found
    return records


def check_segments(segments: list[Segment], max_records: int, max_bytes: int) -> None:
    assert [s.number for s in segments] == list(range(len(segments)))
    for before, after in zip(segments, segments[1:], strict=False):
        assert before.end <= after.start
        assert after.first_index == before.first_index + before.records
    for segment in segments:
        assert 0 < segment.records <= max_records or segment.oversized
        # One record alone may be longer than the byte bound; otherwise the bound holds.
        assert segment.end - segment.start <= max_bytes or segment.records == 1


lines = st.one_of(
    st.builds(lambda i, d: json.dumps({"id": f"r{i}", "data": d, "source": "s", "type": "t"}),
              st.integers(0, 50), st.text(max_size=12)),
    st.sampled_from(["", "   ", "\t\r", "{not json", "[1, 2]", "\"text\"", "{\"id\": \"x\"}", "\u00e9\u4e2d"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines, max_size=40), st.booleans(), st.booleans(), st.integers(1, 64),
       st.integers(1, 7), st.integers(16, 400))
def test_json_lines_segments_hold_exactly_the_blobs_records(items, bom, trailing_newline, chunk, max_records,
                                                            max_bytes):
    text = "\n".join(items) + ("\n" if trailing_newline and items else "")
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    segments = split(JsonLinesSplitter(max_records, max_bytes), data, chunk)
    check_segments(segments, max_records, max_bytes)
    assert records_of_segments(data, segments, "jsonl") == list(iter_records(data, "jsonl"))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["{\"a\": 1}", "x" * 40, "", "y" * 10]), min_size=1, max_size=12),
       st.integers(1, 50), st.booleans())
def test_a_line_longer_than_a_record_may_be_becomes_an_oversized_segment(items, chunk, trailing_newline):
    data = ("\n".join(items) + ("\n" if trailing_newline else "")).encode()
    segments = split(JsonLinesSplitter(3, 64, max_record_bytes=30), data, chunk)
    expected = list(iter_records(data, "jsonl"))
    found = records_of_segments(data, segments, "jsonl")
    assert [r.index for r in found] == [r.index for r in expected]
    assert [r.line for r in found] == [r.line for r in expected]
    for segment in segments:
        if segment.oversized:
            assert segment.records == 1
            assert len(data[segment.start:segment.end].rstrip(b"\n")) > 30


def test_json_lines_that_are_not_utf8_are_refused_at_their_byte():
    data = b'{"id": "a"}\n{"id": "\xff"}\n'
    with pytest.raises(BlobFormatError) as caught:
        split(JsonLinesSplitter(10, 1000), data, 5)
    assert caught.value.position == data.index(b"\xff")


elements = st.one_of(
    st.builds(lambda i, d: json.dumps({"id": f"r{i}", "data": d, "source": "s", "type": "t"}),
              st.integers(0, 50), st.text(max_size=12)),
    st.sampled_from(["1", "null", "\"a,]}\"", "[1, [2, {\"b\": \"]\"}]]", "{}", "1e400", "-0.5",
                     "[" * 70 + "]" * 70]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(elements, max_size=30), st.sampled_from([", ", ",", " ,\n "]), st.booleans(),
       st.integers(1, 64), st.integers(1, 7), st.integers(8, 300))
def test_json_array_segments_hold_exactly_the_blobs_records(items, comma, bom, chunk, max_records, max_bytes):
    data = (b"\xef\xbb\xbf" if bom else b"") + (" [" + comma.join(items) + "] \n").encode()
    check_blob(data, "json")
    segments = split(JsonArraySplitter(max_records, max_bytes), data, chunk)
    check_segments(segments, max_records, max_bytes)
    assert records_of_segments(data, segments, "json") == list(iter_records(data, "json"))


@settings(max_examples=300, deadline=None)
@given(st.lists(elements, max_size=8), st.integers(0, 200), st.sampled_from(
    ["", "x", ",", "]", "[", "}", "\"", "{", " ", "\xff", "1]", ",,"]), st.integers(1, 40))
def test_a_json_array_the_inline_check_refuses_is_refused_by_the_splitter(items, at, insert, chunk):
    text = "[" + ",".join(items) + "]"
    at = min(at, len(text))
    data = text[:at].encode() + (b"\xff" if insert == "\xff" else insert.encode()) + text[at:].encode()
    try:
        check_blob(data, "json")
    except BlobFormatError:
        inline_refused = True
    else:
        inline_refused = False
    try:
        split(JsonArraySplitter(3, 100), data, chunk)
    except BlobFormatError:
        splitter_refused = True
    else:
        splitter_refused = False
    assert splitter_refused == inline_refused


def test_an_empty_array_has_no_segments_and_an_empty_blob_is_refused():
    assert split(JsonArraySplitter(3, 100), b" [ ] ", 2) == []
    with pytest.raises(BlobFormatError, match="empty"):
        split(JsonArraySplitter(3, 100), b"  ", 2)
    with pytest.raises(BlobFormatError, match="top level"):
        split(JsonArraySplitter(3, 100), b'{"id": 1}', 2)


def test_an_element_longer_than_a_record_may_be_is_refused_with_its_index():
    data = b'[{"a": 1}, "' + b"x" * 100 + b'", 3]'
    with pytest.raises(BlobFormatError, match="record 1 is longer than 50 bytes"):
        split(JsonArraySplitter(10, 1000, max_record_bytes=50), data, 10)


def test_a_long_line_completed_by_the_next_chunk_is_oversized_too():
    data = b'{"a": 1}\n' + b"y" * 15 + b"\n" + b'{"b": 2}\n'
    for chunk in (1, 4, 8, 13, 40):
        segments = split(JsonLinesSplitter(5, 100, max_record_bytes=10), data, chunk)
        assert [s.oversized for s in segments] == [False, True, False], chunk
        assert [s.first_index for s in segments] == [0, 1, 2]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("position", ["first", "middle", "last", "nested", "alone"])
def test_a_non_standard_constant_is_one_invalid_record_wherever_it_stands(constant: str, position: str) -> None:
    """Issue 28: a bare constant (`[rec, rec, NaN]`) is not a syntax error of the array: like one inside a
    record, it is that record refused by name (docs/pipeline.md says so); inline and fanned out alike."""
    record = lambda i: json.dumps({"id": f"r{i}", "data": "d", "source": "s", "type": "t"})  # noqa: E731
    elements = [record(1), record(2), record(3)]
    where = {"first": 0, "middle": 1, "last": 3, "nested": 1, "alone": 0}[position]
    if position == "nested":
        elements[1] = '{"id": "n", "data": "d", "source": "s", "type": "t", "v": {"w": [1, ' + constant + ']}}'
    elif position == "alone":
        elements = [constant]
    else:
        elements.insert(where, constant)
    data = ("[" + ", ".join(elements) + "]").encode()
    check_blob(data, "json")  # not a BlobFormatError: the array's syntax holds
    inline = [(r.index, r.error) for r in iter_records(data, "json") if r.error]
    splitter = JsonArraySplitter(2, 1 << 20)
    segments = splitter.feed(data) + splitter.finish()
    fanned = [(r.index, r.error) for s in segments for r in iter_array_segment(data[s.start:s.end], s.first_index)
              if r.error]
    assert inline == fanned and [index for index, _ in inline] == [where]
    assert f"{constant} is not a JSON number" in str(inline[0][1])
    lines = (record(1) + "\n" + constant + "\n" + record(3) + "\n").encode()
    check_blob(lines, "jsonl")
    assert [(r.index, r.line) for r in iter_records(lines, "jsonl") if r.error] == [(1, 2)]
