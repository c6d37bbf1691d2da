from __future__ import annotations

import hashlib
import json
import logging
import types
from typing import Any

import pytest

import BlobEtl
from common.errors import ConfigurationError, InvalidInput
from common.logs import bind_invocation
from common.settings import EtlSettings
from etl import BlobRef, process_blob, records, run_etl, summary_blob_name
from etl.records import BlobFormatError, InvalidRecord, check_blob, detect_format, iter_records, validate_record
from tests.conftest import FakeContext, use_fake_clients
from tests.fakes import FakeContainer, cosmos_error

CFG = EtlSettings(input_container="incoming", summary_container="summaries", write_concurrency=8,
                  batch_size=50, write_budget_seconds=5.0)


def record(i: int, **overrides: Any) -> dict[str, Any]:
    base = {"id": f"r-{i}", "data": f"hello {i}", "source": f"src-{i % 3}", "type": "reading", "extra": [1, 2]}
    base.update(overrides)
    return base


def as_json(items: list[Any]) -> bytes:
    return json.dumps(items).encode()


def as_jsonl(items: list[Any]) -> bytes:
    return "\n".join(json.dumps(i) for i in items).encode() + b"\n"


async def etl(data: bytes, name: str = "incoming/batch.json", container: FakeContainer | None = None,
              cfg: EtlSettings = CFG):
    container = container or FakeContainer()
    summary = await run_etl(data, source_blob=name, container=container, cfg=cfg, log=bind_invocation(FakeContext()))
    return summary, container


# ------------------------------------------------------------------ parsing

@pytest.mark.parametrize(("name", "data", "fmt"), [
    ("a.json", b"[]", "json"), ("a.JSONL", b"", "jsonl"), ("a.ndjson", b"", "jsonl"),
    ("noext", b"  [1]", "json"), ("noext", b"\n{\"a\":1}\n", "jsonl"),
])
def test_format_detection(name: str, data: bytes, fmt: str) -> None:
    assert detect_format(name, data) == fmt


def test_unknown_format_is_a_blob_error() -> None:
    with pytest.raises(BlobFormatError, match="expected a JSON array"):
        detect_format("data.csv", b"a,b,c")


@pytest.mark.parametrize(("data", "fragment"), [
    (b"", "blob is empty"),
    (b"   ", "blob is empty"),
    (b'{"id": "x"}', "top level must be a JSON array"),
    (b'[{"id": "a"}, {"id": ', "not valid JSON"),
    (b'[{"id": "a"} {"id": "b"}]', "not valid JSON: Expecting ',' delimiter at line 1 column 14"),
    (b'[{"id": "caf\xe9"}]', "not valid UTF-8"),
    (b"[1, 2] trailing", "not valid JSON"),
])
def test_unreadable_blobs_are_refused_with_position(data: bytes, fragment: str) -> None:
    with pytest.raises(BlobFormatError) as info:
        check_blob(data, "json")
    assert fragment in str(info.value)


def test_utf8_error_reports_its_byte_offset() -> None:
    data = b'[{"id": "' + b"a" * 2_000_000 + b'\xff"}]'
    with pytest.raises(BlobFormatError) as info:
        check_blob(data, "json")
    assert info.value.position == 2_000_009


def test_byte_order_mark_is_accepted() -> None:
    data = b"\xef\xbb\xbf" + as_json([record(1)])
    check_blob(data, "json")
    assert [r.value["id"] for r in iter_records(data, "json")] == ["r-1"]


def test_json_lines_bad_line_is_a_bad_record_not_a_bad_blob() -> None:
    data = b'{"id": "a"}\n\n{broken\n[1]\n'
    check_blob(data, "jsonl")
    got = list(iter_records(data, "jsonl"))
    assert [(r.index, r.line, r.error is None) for r in got] == [(0, 1, True), (1, 3, False), (2, 4, True)]


def test_deep_nesting_does_not_crash_the_parser() -> None:
    deep = b'[{"id": "d", "data": "x", "source": "s", "type": "t", "n": ' + b"[" * 5000 + b"]" * 5000 + b"}]"
    check_blob(deep, "json")
    [raw] = list(iter_records(deep, "json"))
    # Refused by the reader before the value is built, not by validating a built value.
    assert raw.value is None and raw.error is not None
    assert "nests deeper than 64" in raw.error


@pytest.mark.parametrize(("value", "reason"), [
    ([1, 2], "record is a JSON array, not an object"),
    ("text", "record is a JSON string"),
    (None, "record is a JSON null"),
    ({"data": "x", "source": "s", "type": "t"}, "missing 'id'"),
    ({"id": 5, "data": "x", "source": "s", "type": "t"}, "'id' must be a string, not number"),
    ({"id": "a", "data": "", "source": "s", "type": "t"}, "'data' must not be empty"),
    ({"id": "a", "data": "x", "source": ["s"], "type": "t"}, "'source' must be a string, not array"),
    ({"id": "a", "data": "x", "source": "s", "type": None}, "'type' must be a string, not null"),
    ({"id": "a/b", "data": "x", "source": "s", "type": "t"}, "character Cosmos DB does not allow"),
    ({"id": "x" * 256, "data": "x", "source": "s", "type": "t"}, "longer than 255"),
])
def test_invalid_records_say_why(value: Any, reason: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        validate_record(value)
    assert reason in str(info.value)


def test_item_shape() -> None:
    item = records.to_item(record(1, data="Straße"), "incoming/b.json", "2026-01-01T00:00:00.000Z")
    assert item == {"id": "r-1", "processedData": "STRASSE", "timestamp": "2026-01-01T00:00:00.000Z",
                    "metadata": {"source": "src-1", "type": "reading"}, "sourceBlob": "incoming/b.json"}


def test_huge_data_is_invalid_not_a_failed_write() -> None:
    with pytest.raises(InvalidRecord, match="too large"):
        records.to_item(record(1, data="x" * 3_000_000), "c/b", "t")


def test_summary_name_derives_from_the_source_name() -> None:
    assert summary_blob_name(BlobRef.parse("incoming/2026/11/batch.json")) == "2026/11/batch.json.summary.json"
    with pytest.raises(InvalidInput):
        BlobRef.parse("no-container")


# --------------------------------------------------------------------- runs

async def test_valid_and_invalid_records_are_counted_and_named() -> None:
    items: list[Any] = [record(i) for i in range(120)]
    items[5] = {"id": "bad-5", "data": 7, "source": "s", "type": "t"}
    items[77] = "not an object"
    summary, container = await etl(as_json(items))
    doc = summary.to_document()
    assert (doc["status"], doc["totalRecords"], doc["written"], doc["invalid"]) == ("partial", 120, 118, 2)
    assert doc["errors"] == [
        {"index": 5, "id": "bad-5", "reason": "'data' must be a string, not number"},
        {"index": 77, "id": None, "reason": "record is a JSON string, not an object"},
    ]
    assert doc["types"] == ["reading"] and doc["sources"] == ["src-0", "src-1", "src-2"]
    assert doc["sourceBlob"] == "incoming/batch.json"
    assert len(container.items) == 118
    stored = container.items[("r-3", json.dumps("r-3"))]
    assert stored["processedData"] == "HELLO 3" and stored["timestamp"].endswith("Z")
    assert stored["sourceBlob"] == "incoming/batch.json"


async def test_rerun_rewrites_the_same_items() -> None:
    data = as_json([record(i) for i in range(30)])
    _, container = await etl(data)
    summary, container = await etl(data, container=container)
    assert summary.written == 30 and len(container.items) == 30


async def test_duplicate_ids_in_one_blob_last_one_wins() -> None:
    data = as_json([record(1, data="first"), record(2), record(1, data="second"), record(1, data="third")])
    summary, container = await etl(data)
    # Issue 14: "written" counts what landed (2 items); the overwritten records are counted and named.
    assert summary.written == 2 and summary.superseded == 2 and summary.invalid == 0
    assert summary.to_document()["supersededRecords"][0] == {"index": 0, "id": "r-1", "supersededBy": 2}
    assert container.items[("r-1", json.dumps("r-1"))]["processedData"] == "THIRD"


async def test_partition_key_is_read_from_the_container() -> None:
    container = FakeContainer(("/metadata/source",))
    summary, container = await etl(as_json([record(i) for i in range(10)]), container=container)
    assert summary.written == 10
    assert ("r-4", json.dumps("src-1")) in container.items
    assert container.calls["read"] == 1
    await etl(as_json([record(1)]), container=container)
    assert container.calls["read"] == 1  # read once per process


async def test_unsupported_partition_key_path_fails_clearly() -> None:
    with pytest.raises(ConfigurationError, match="COSMOS_CONTAINER' names a container whose partition key \\['/tenant'\\]"):
        await etl(as_json([record(1)]), container=FakeContainer(("/tenant",)))


async def test_writes_are_concurrent_and_bounded() -> None:
    container = FakeContainer()
    container.delay = 0.005
    await etl(as_json([record(i) for i in range(200)]), container=container)
    assert container.max_in_flight == CFG.write_concurrency


async def test_throttling_is_retried_and_charge_is_summed() -> None:
    container = FakeContainer()
    container.failures["upsert"] = [cosmos_error(429, retry_after_ms=10), cosmos_error(429, retry_after_ms=10)]
    summary, _ = await etl(as_json([record(i) for i in range(5)]), container=container)
    assert summary.written == 5 and container.calls["upsert"] == 7
    assert summary.request_charge == 5 * container.charge


async def test_rejected_item_is_a_record_error() -> None:
    container = FakeContainer()
    container.failures["upsert"] = [cosmos_error(413, "Request size is too large")]
    summary, _ = await etl(as_json([record(0)]), container=container)
    assert (summary.status, summary.invalid, summary.errors[0]["reason"]) == (
        "failed", 1, "rejected by Cosmos DB (413)")


async def test_persistent_transient_failure_raises_for_a_platform_retry() -> None:
    container = FakeContainer()
    container.failures["upsert"] = [cosmos_error(503) for _ in range(50)]
    with pytest.raises(Exception) as info:
        await etl(as_json([record(0)]), container=container, cfg=EtlSettings(
            "incoming", "summaries", write_concurrency=1, batch_size=10, write_budget_seconds=1.5))
    assert getattr(info.value, "status_code", None) == 503


async def test_malformed_blob_writes_nothing_and_fails_the_summary() -> None:
    data = as_json([record(i) for i in range(100)])[:-40]
    summary, container = await etl(data)
    assert summary.status == "failed" and "not valid JSON" in (summary.error or "")
    assert container.items == {} and container.calls["upsert"] == 0


async def test_json_lines_blob() -> None:
    data = as_jsonl([record(i) for i in range(7)]) + b"{oops\n"
    summary, container = await etl(data, name="incoming/feed.jsonl")
    assert (summary.written, summary.invalid) == (7, 1)
    assert summary.errors[0]["line"] == 8 and summary.errors[0]["index"] == 7
    assert len(container.items) == 7


async def test_error_list_is_capped_at_100() -> None:
    summary, _ = await etl(as_json([{"id": f"x{i}"} for i in range(250)]))
    doc = summary.to_document()
    assert doc["invalid"] == 250 and len(doc["errors"]) == 100 and doc["errorsTruncated"] is True
    assert doc["status"] == "failed"


async def test_empty_array_succeeds_with_nothing_to_do() -> None:
    summary, _ = await etl(b"[]")
    assert (summary.status, summary.total_records) == ("succeeded", 0)


class FakeBlobClient:
    """The calls BlobEtl's inline path makes on a blob (Azurite backs the fan-out's tests)."""

    def __init__(self, store: dict[str, bytes], path: str, metadata: dict[str, dict[str, str]]) -> None:
        self.store, self.path, self.metadata = store, path, metadata

    async def upload_blob(self, data: bytes, overwrite: bool = False, metadata: dict[str, str] | None = None,
                          **kwargs: Any) -> None:
        from azure.core.exceptions import ResourceExistsError

        if self.path in self.store and not overwrite:
            raise ResourceExistsError("The specified blob already exists.")
        self.store[self.path] = data
        self.metadata[self.path] = dict(metadata or {})

    def _etag(self) -> str:
        return f'"0x{hashlib.sha256(self.store[self.path]).hexdigest()[:16].upper()}"'

    async def get_blob_properties(self) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        if self.path not in self.store:
            raise ResourceNotFoundError("The specified blob does not exist.")
        return types.SimpleNamespace(etag=self._etag(), size=len(self.store[self.path]),
                                     metadata=self.metadata.get(self.path, {}))

    async def download_blob(self, etag: str | None = None, **kwargs: Any) -> Any:
        from azure.core.exceptions import ResourceModifiedError

        if etag is not None and etag != self._etag():
            raise ResourceModifiedError("The condition specified using HTTP conditional header(s) is not met.")
        data = self.store[self.path]

        class Stream:
            async def readall(self) -> bytes:
                return data

        return Stream()


class FakeBlobService:
    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}
        self.metadata: dict[str, dict[str, str]] = {}

    def get_blob_client(self, container: str, blob: str) -> FakeBlobClient:
        return FakeBlobClient(self.store, f"{container}/{blob}", self.metadata)


def blob_created(blobs: FakeBlobService, path: str, data: bytes) -> Any:
    """Put ``data`` at ``path`` and return the BlobCreated event the storage account would send."""
    import azure.functions as func

    from devhost.runtime_host import blob_created_event

    blobs.store[path] = data
    container, _, name = path.partition("/")
    event = blob_created_event(container, name, etag=blobs.get_blob_client(container, name)._etag(),
                               content_length=len(data))
    return func.EventGridEvent(id=event["id"], data=event["data"], topic=event["topic"], subject=event["subject"],
                               event_type=event["eventType"], event_time=None, data_version="")


async def test_main_writes_one_summary_per_blob_and_logs(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    container, blobs = FakeContainer(), FakeBlobService()
    use_fake_clients(monkeypatch, cosmos=container, blobs=blobs)
    event = blob_created(blobs, "incoming/day1.json", as_json([record(i) for i in range(3)]))

    with caplog.at_level(logging.INFO):
        await BlobEtl.main(event, FakeContext(function_name="BlobEtl"))
        await BlobEtl.main(event, FakeContext(function_name="BlobEtl"))
    assert sorted(blobs.store) == ["incoming/day1.json", "summaries/day1.json.summary.json"]
    doc = json.loads(blobs.store["summaries/day1.json.summary.json"])
    assert doc["status"] == "succeeded" and doc["written"] == 3 and doc["mode"] == "inline"
    assert doc["sourceETag"] == blobs.get_blob_client("incoming", "day1.json")._etag()
    log = json.loads(caplog.records[-1].getMessage())
    assert log["event"] == "etl.completed" and log["written"] == 3 and log["requestCharge"] == 15.0


async def test_an_event_for_an_overwritten_version_or_a_deleted_blob_writes_nothing(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    container, blobs = FakeContainer(), FakeBlobService()
    use_fake_clients(monkeypatch, cosmos=container, blobs=blobs)
    old = blob_created(blobs, "incoming/a.json", as_json([record(1)]))
    blob_created(blobs, "incoming/a.json", as_json([record(2)]))  # overwritten before the event arrived
    gone = blob_created(blobs, "incoming/b.json", as_json([record(3)]))
    del blobs.store["incoming/b.json"]
    other = blob_created(blobs, "elsewhere/c.json", as_json([record(4)]))
    with caplog.at_level(logging.INFO):
        for event in (old, gone, other):
            await BlobEtl.main(event, FakeContext(function_name="BlobEtl"))
    assert container.items == {}
    assert not any(path.startswith("summaries/") for path in blobs.store)
    events = [json.loads(r.getMessage())["event"] for r in caplog.records]
    assert events == ["etl.event_stale", "etl.blob_gone", "etl.event_ignored"]


async def test_an_event_that_is_not_blob_created_is_ignored(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    import azure.functions as func

    use_fake_clients(monkeypatch, cosmos=FakeContainer(), blobs=FakeBlobService())
    event = func.EventGridEvent(id="1", data={}, topic="t", subject="/blobServices/default/containers/incoming/blobs/x",
                                event_type="Microsoft.Storage.BlobDeleted", event_time=None, data_version="")
    with caplog.at_level(logging.INFO):
        await BlobEtl.main(event, FakeContext(function_name="BlobEtl"))
    assert json.loads(caplog.records[-1].getMessage())["event"] == "etl.event_ignored"


async def test_process_blob_with_explicit_clients() -> None:
    container, blobs = FakeContainer(), FakeBlobService()
    summary = await process_blob(b"not json at all", source_blob="incoming/x.json", cfg=CFG,
                                 log=bind_invocation(FakeContext()), container=container, blob_service=blobs)
    assert summary.status == "failed"
    assert json.loads(blobs.store["summaries/x.json.summary.json"])["status"] == "failed"


async def test_numbers_beyond_float_range_do_not_refuse_the_blob() -> None:
    data = (b'[{"id": "a", "data": "d", "source": "s", "type": "t", "serial": 18446744073709551615, "big": 1e400},'
            b' {"id": 5e400, "data": "d", "source": "s", "type": "t"}]')
    summary, container = await etl(data)
    assert (summary.written, summary.invalid) == (1, 1)
    assert summary.errors[0]["reason"] == "'id' must be a string, not number"


async def test_json_lines_with_an_endless_integer_is_one_bad_record() -> None:
    data = as_jsonl([record(1)]) + b'{"id": "x", "n": ' + b"9" * 5000 + b"}\n"
    summary, _ = await etl(data, name="incoming/f.jsonl")
    assert (summary.written, summary.invalid) == (1, 1)


async def test_unpaired_surrogates_are_invalid_records_and_the_summary_still_encodes() -> None:
    data = b'{"id": "ok", "data": "d", "source": "s", "type": "t"}\n{"id": "x\\ud800", "data": "d", "source": "s", "type": "t"}\n'
    container, blobs = FakeContainer(), FakeBlobService()
    summary = await process_blob(data, source_blob="incoming/s.jsonl", cfg=CFG, log=bind_invocation(FakeContext()),
                                 container=container, blob_service=blobs)
    assert (summary.written, summary.invalid) == (1, 1)
    assert "surrogate" in summary.errors[0]["reason"]
    json.loads(blobs.store["summaries/s.jsonl.summary.json"])


async def test_a_failed_write_cancels_the_writes_still_in_flight() -> None:
    container = FakeContainer()
    container.delay = 0.05
    container.failures["upsert"] = [cosmos_error(403, "Request blocked by Auth")]
    from azure.cosmos.exceptions import CosmosHttpResponseError

    with pytest.raises(CosmosHttpResponseError):
        await etl(as_json([record(i) for i in range(40)]), container=container)
    stored = len(container.items)
    import asyncio

    await asyncio.sleep(0.2)
    assert len(container.items) == stored  # nothing kept writing after the invocation failed
    assert stored < 40


async def test_duplicate_ids_last_one_wins_even_when_writes_finish_out_of_order() -> None:
    container = FakeContainer()
    container.out_of_order = True  # earlier calls take longer than later ones
    data = as_json([record(1, data="first"), record(2), record(1, data="second"), record(1, data="third")])
    summary, container = await etl(data, container=container)
    # What landed: two items. The two earlier r-1 records were overwritten, and are named.
    assert (summary.total_records, summary.written, summary.superseded, summary.invalid) == (4, 2, 2, 0)
    assert summary.superseded_records == [{"index": 0, "id": "r-1", "supersededBy": 2},
                                          {"index": 2, "id": "r-1", "supersededBy": 3}]
    assert container.items[("r-1", json.dumps("r-1"))]["processedData"] == "THIRD"


def test_error_entries_echo_at_most_256_characters_of_an_id() -> None:
    from etl import EtlSummary

    summary = EtlSummary(source_blob="c/b", started_at="t")
    summary.add_error(0, "x" * 10_000, "'id' is longer than 255 characters")
    assert len(summary.errors[0]["id"]) == 256


async def test_unpaired_surrogate_in_a_json_array_is_refused_not_altered() -> None:
    data = (b'[{"id": "x\\ud800y", "data": "d", "source": "s", "type": "t"},'
            b' {"id": "smile", "data": "\\ud83d\\ude00", "source": "s", "type": "t"}]')
    summary, container = await etl(data)
    assert (summary.written, summary.invalid) == (1, 1)
    assert "surrogate" in summary.errors[0]["reason"]
    assert container.items[("smile", json.dumps("smile"))]["processedData"] == "\U0001F600"


# ---- issue 14: adversarial blobs (defect classes 1-4) ----

@pytest.mark.parametrize("number", [b"9" * 5000, b"-" + b"1" * 4301])
async def test_an_integer_past_the_digit_limit_in_a_json_array_refuses_only_its_record(number: bytes) -> None:
    data = (b'[' + json.dumps(record(1)).encode() + b', {"id": "big", "data": "d", "source": "s", "type": "t", "n": '
            + number + b'}, ' + json.dumps(record(3)).encode() + b']')
    summary, container = await etl(data)
    assert (summary.status, summary.written, summary.invalid) == ("partial", 2, 1)
    assert summary.errors[0]["index"] == 1 and "longer than 4300" in summary.errors[0]["reason"]
    assert {key[0] for key in container.items} == {"r-1", "r-3"}


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
async def test_non_standard_constants_refuse_only_their_record(constant: bytes) -> None:
    data = b'[{"id": "x", "data": "d", "source": "s", "type": "t", "v": ' + constant + b"}, " + json.dumps(record(2)).encode() + b"]"
    summary, _ = await etl(data)
    assert (summary.written, summary.invalid) == (1, 1)
    assert "not a JSON number" in summary.errors[0]["reason"]


def test_a_deeply_nested_record_is_refused_before_it_is_built() -> None:
    import tracemalloc

    # ~240 KB: 40,000 levels of nesting in one record, then a valid record.
    deep = (b'[{"id": "d", "data": "x", "source": "s", "type": "t", "n": ' + b'{"a":' * 40_000 + b"1" + b"}" * 40_000
            + b"}, " + json.dumps(record(2)).encode() + b"]")
    tracemalloc.start()
    try:
        check_blob(deep, "json")
        got = list(iter_records(deep, "json"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got[0].error == "record nests deeper than 64 levels" and got[1].value["id"] == "r-2"
    # Building that record would take 40,000 dicts (over 7 MB); refusing it keeps none. What is
    # left is the UTF-8 check's decoded chunk (256 KB of blob at a time).
    assert peak < 1024 * 1024, f"peak {peak} bytes for a {len(deep)}-byte blob"


def test_locating_a_syntax_error_keeps_no_second_copy_of_the_blob() -> None:
    import tracemalloc

    body = b",".join(json.dumps(record(i)).encode() for i in range(40_000))  # ~3 MB on one line
    data = b"[" + body + b', {"id": "bad" "data": 1}]'
    tracemalloc.start()
    try:
        with pytest.raises(BlobFormatError) as info:
            check_blob(data, "json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    position = len(b"[" + body + b', {"id": "bad" ')
    assert info.value.position == position
    assert f"Expecting ',' delimiter at line 1 column {position + 1}" in str(info.value)
    # Chunks of 256 KB are decoded at a time (the UTF-8 check, the column count); a second copy
    # of the text, as a parse of the whole blob needs, would be the blob's size again.
    assert peak < len(data) // 4, f"peak {peak} bytes for a {len(data)}-byte blob"


async def test_superseded_records_are_named_across_batches_and_counts_add_up() -> None:
    # Batch size is CFG.batch_size; the duplicate sits several batches after the original.
    items = [record(i) for i in range(CFG.batch_size * 3)] + [record(5, data="late")]
    summary, container = await etl(as_json(items))
    assert summary.total_records == summary.written + summary.invalid + summary.superseded
    assert (summary.written, summary.superseded) == (CFG.batch_size * 3, 1)
    assert summary.superseded_records == [{"index": 5, "id": "r-5", "supersededBy": CFG.batch_size * 3}]
    assert container.items[("r-5", json.dumps("r-5"))]["processedData"] == "LATE"


async def test_a_rerun_of_the_same_blob_reports_the_same_counts() -> None:
    data = as_json([record(1), record(1, data="again"), record(2)])
    first, container = await etl(data)
    second, _ = await etl(data, container=container)
    assert (first.written, first.superseded) == (second.written, second.superseded) == (2, 1)


@pytest.mark.parametrize("bad", [
    b'{"id": "n", "v": NaN "x": 1}',                      # refused number, and a missing comma
    b'{"id": "n", "v": ' + b"9" * 5000 + b', "x" 1}',     # digit limit, and a missing colon
    b'{"id": "d", "n": ' + b"[" * 100 + b"1,]" + b"]" * 99 + b"}",  # past the depth limit, and a trailing comma
])
async def test_a_record_refused_for_a_limit_is_still_syntax_checked(bad: bytes) -> None:
    # Found by the property tests: the refusal used to skip the syntax check, so a malformed
    # array was read as one bad record and the valid records around it were written.
    data = b"[" + json.dumps(record(1)).encode() + b", " + bad + b", " + json.dumps(record(2)).encode() + b"]"
    summary, container = await etl(data)
    assert summary.status == "failed" and "not valid JSON" in (summary.error or "")
    assert container.items == {}


@pytest.mark.parametrize(("data", "position"), [
    (b'\xef\xbb\xbf["a\xff"]', 6),                                 # counted from the blob's first byte, BOM included
    (b'["' + b"a" * 262_141 + b'\xc3A"]', 262_143),                 # a character begun at the end of a 256 KB chunk
])
def test_a_utf8_error_names_the_byte_of_the_fault(data: bytes, position: int) -> None:
    with pytest.raises(BlobFormatError) as info:
        check_blob(data, "json")
    assert info.value.position == position


async def test_an_item_cosmos_refuses_for_a_unique_key_is_an_invalid_record_not_a_failed_blob() -> None:
    container = FakeContainer()
    container.failures["upsert"] = [cosmos_error(409, "Unique index constraint violation.")]
    summary, _ = await etl(as_json([record(1), record(2)]), container=container)
    assert (summary.written, summary.invalid) == (1, 1)
    assert "rejected by Cosmos DB (409)" in summary.errors[0]["reason"]


def test_a_lowered_interpreter_digit_limit_refuses_the_record_instead_of_raising() -> None:
    import sys

    from common.strict_json import JsonInputError, loads

    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(1000)
    try:
        with pytest.raises(JsonInputError, match="longer than 1000"):
            loads(b'{"a": ' + b"1" * 2000 + b"}")
    finally:
        sys.set_int_max_str_digits(previous)


def test_a_json_lines_line_of_only_a_form_feed_is_a_named_bad_record() -> None:
    got = list(iter_records(b'{"id": "1"}\n\x0c\n{"id": "2"}\n', "jsonl"))
    assert [(r.line, r.error is None) for r in got] == [(1, True), (2, False), (3, True)]


def test_an_unterminated_string_is_not_json_even_when_brackets_follow_it() -> None:
    from common.strict_json import JsonInputError, loads

    with pytest.raises(JsonInputError) as info:
        loads(b'"' + b"[" * 70)
    assert info.value.reason == "not_json"


@pytest.mark.parametrize(("tolerance", "status"), [(100.0, "partial"), (20.0, "partial"), (19.9, "failed"),
                                                   (0.0, "failed")])
async def test_a_share_of_invalid_records_above_the_tolerance_fails_the_blob_but_writes_the_valid_ones(
        tolerance: float, status: str) -> None:
    from dataclasses import replace

    records: list[Any] = [record(i) for i in range(10)]
    records[3] = {"id": "no-data", "source": "s", "type": "t"}
    records[7] = ["not", "an", "object"]
    summary, container = await etl(as_json(records), cfg=replace(CFG, max_invalid_percent=tolerance))
    assert (summary.status, summary.written, summary.invalid) == (status, 8, 2)
    assert len(container.items) == 8  # the valid records land whatever the verdict
    document = summary.to_document()
    if status == "failed":
        assert document["error"] == ("2 of 10 records (20.00%) are invalid, above the "
                                     f"{tolerance:g}% ETL_MAX_INVALID_PERCENT tolerates; the valid ones were written")
    else:
        assert "error" not in document


def test_the_tolerance_is_a_percentage() -> None:
    from common import settings

    assert settings.etl_settings({"ETL_MAX_INVALID_PERCENT": "5"}).max_invalid_percent == 5.0
    assert settings.etl_settings({}).max_invalid_percent == 100.0
    for bad in ("101", "-1", "five"):
        with pytest.raises(settings.ConfigurationError, match="ETL_MAX_INVALID_PERCENT"):
            settings.etl_settings({"ETL_MAX_INVALID_PERCENT": bad})


async def test_a_blob_created_event_that_names_no_blob_completes_with_its_reason(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import azure.functions as func

    use_fake_clients(monkeypatch, cosmos=FakeContainer(), blobs=FakeBlobService())
    event = func.EventGridEvent(id="1", data={"api": "PutBlob"}, topic="t", subject="/not/a/blob/subject",
                                event_type="Microsoft.Storage.BlobCreated", event_time=None, data_version="")
    with caplog.at_level(logging.INFO):
        await BlobEtl.main(event, FakeContext(function_name="BlobEtl"))  # no retry can fix it: no raise
    logged = json.loads(caplog.records[-1].getMessage())
    assert (logged["event"], logged["reason"]) == ("etl.bad_event", "bad_event")


def test_a_fan_outs_completion_reports_the_whole_runs_rate_not_its_last_segments(
        caplog: pytest.LogCaptureFixture) -> None:
    """Issue 27: etl.completed said recordsPerSecond 1851179.5, the last segment's duration."""
    from etl.summary import EtlSummary, report_completed

    summary = EtlSummary(source_blob="incoming/big.jsonl", started_at="2026-12-04T10:00:00.000Z",
                         finished_at="2026-12-04T10:00:10.000Z", written=1000, total_records=1000, mode="fan-out")
    with caplog.at_level(logging.INFO):
        report_completed(bind_invocation(FakeContext()), summary, "summaries/big.jsonl.summary.json", elapsed=0.0005)
    logged = json.loads(caplog.records[-1].getMessage())
    assert (logged["recordsPerSecond"], logged["durationMs"], logged["finisherDurationMs"]) == (100.0, 10000.0, 0.5)
    inline = EtlSummary(source_blob="incoming/s.json", started_at="2026-12-04T10:00:00.000Z",
                        finished_at="2026-12-04T10:00:10.000Z", written=1000, total_records=1000)
    with caplog.at_level(logging.INFO):
        report_completed(bind_invocation(FakeContext()), inline, "summaries/s.json.summary.json", elapsed=2.0)
    assert json.loads(caplog.records[-1].getMessage())["recordsPerSecond"] == 500.0  # inline: its invocation's time
