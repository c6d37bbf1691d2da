"""Property-based tests of the pipeline's input surfaces: the BlobCreated event BlobEtl reads, and
the work messages BlobEtlWorker reads from its Storage queue.

Invariants, for anything Event Grid or a queue could hand over:
- a BlobCreated event yields the blob it names (container and name exactly as the subject says),
  or ``InvalidInput`` naming why not; another event type yields None; nothing else escapes;
- a work message is a split or a segment whose byte range fits the blob, or ``InvalidInput``
  (``bad_work_message``) whose message says what is wrong; nothing else escapes;
- what the splitter sends, the worker reads back unchanged (encode, then parse, is the identity).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from common.errors import InvalidInput
from etl import BLOB_CREATED, BlobVersion, SegmentWork, SplitWork, encode_work, parse_blob_created, parse_work
from etl.splitting import Segment
from tests.properties.test_greeting_properties import JSON_VALUES, wild_text

NAMES = st.one_of(st.text(min_size=1, max_size=40), wild_text(40))


@given(st.one_of(st.just(BLOB_CREATED), st.text(max_size=40)), st.one_of(st.none(), NAMES, st.builds(
    lambda c, n: f"/blobServices/default/containers/{c}/blobs/{n}", NAMES, NAMES)), st.one_of(JSON_VALUES, st.fixed_dictionaries(
        {}, optional={"url": st.one_of(NAMES, st.just("https://a.blob.core.windows.net/incoming/x%20y.json")),
                      "eTag": st.one_of(st.text(max_size=20), st.integers()),
                      "contentLength": st.one_of(st.integers(), st.text(max_size=5), st.booleans())})))
def test_any_event_names_a_blob_is_ignored_or_is_refused_by_name(event_type: str, subject: str | None,
                                                                  data: Any) -> None:
    try:
        created = parse_blob_created(event_type, subject, data)
    except InvalidInput as exc:
        assert event_type == BLOB_CREATED and exc.reason == "bad_event" and "names no blob" in str(exc)
        return
    if event_type != BLOB_CREATED:
        assert created is None
        return
    assert created is not None and created.blob.container and created.blob.name
    prefix = "/blobServices/default/containers/"
    if subject and subject.startswith(prefix) and "/blobs/" in subject[len(prefix):]:
        container, _, name = subject[len(prefix):].partition("/blobs/")
        if "/" not in container and container and name:
            assert (created.blob.container, created.blob.name) == (container, name)
    assert created.etag is None or isinstance(created.etag, str)
    assert created.content_length is None or type(created.content_length) is int


MESSAGE_FIELDS = {
    "v": st.one_of(st.just(1), JSON_VALUES), "kind": st.sampled_from(["split", "segment", "other"]),
    "blob": st.one_of(st.just("incoming/a.jsonl"), NAMES, JSON_VALUES), "etag": st.one_of(st.just('"0x1"'), JSON_VALUES),
    "size": st.one_of(st.integers(-5, 10**6), JSON_VALUES), "startedAt": st.one_of(st.just("2026-11-27T00:00:00Z"), JSON_VALUES),
    "format": st.sampled_from(["json", "jsonl", "xml"]), "segments": st.integers(-1, 50),
    "segment": st.integers(-1, 50), "start": st.integers(-1, 10**6), "end": st.integers(-1, 10**6),
    "firstIndex": st.integers(-1, 10**6), "records": st.one_of(st.integers(-1, 5000), st.booleans()),
    "firstLine": st.one_of(st.integers(1, 10**6), JSON_VALUES), "oversized": JSON_VALUES,
}


@given(st.one_of(st.binary(max_size=200), st.fixed_dictionaries({}, optional=MESSAGE_FIELDS).map(
    lambda d: json.dumps(d).encode())))
def test_any_work_message_is_work_that_fits_its_blob_or_refused_by_name(body: bytes) -> None:
    try:
        work = parse_work(body)
    except InvalidInput as exc:
        assert exc.reason == "bad_work_message" and str(exc).startswith("work message is malformed: ")
        return
    assert work.version.container and work.version.name and work.version.etag
    if isinstance(work, SegmentWork):
        segment = work.segment
        assert 0 <= segment.number < work.segments
        assert 0 <= segment.start <= segment.end <= work.version.size
        assert work.format in ("json", "jsonl")


@given(NAMES, NAMES, st.integers(0, 10**12), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6),
       st.booleans(), st.one_of(st.none(), st.integers(1, 10**7)))
def test_what_the_splitter_sends_the_worker_reads_back_unchanged(container: str, name: str, size: int, start: int,
                                                                length: int, segments: int, oversized: bool,
                                                                first_line: int | None) -> None:
    container, name = container.replace("/", "") or "c", name or "n"
    version = BlobVersion(container, name, '"0x8DC"', size + start + length)
    split = SplitWork(version, "2026-11-27T00:00:00.000Z")
    assert parse_work(encode_work(split)) == split
    segment = Segment(segments - 1, start, start + length, 7, 3, first_line=first_line, oversized=oversized)
    work = SegmentWork(version, split.started_at, "jsonl", segment, segments)
    assert parse_work(encode_work(work)) == work
