"""The data-processing pipeline on Azurite and the Cosmos DB API server, BlobEtlWorker in worker
processes: every valid record lands exactly once, one summary per blob version adds up, and the
faults a queue-driven fan-out meets (a killed worker, duplicate deliveries, a poison segment, an
overwrite mid-run, finishers at the same moment) change none of that."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from devhost.emulators import Emulators
from devhost.pipeline import Blob, Pipeline, json_array_blob, jsonl_blob
from tests.integration.conftest import DATABASE, new_container

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest_asyncio.fixture
async def pipeline(app_env: Emulators, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Pipeline]:
    container = await new_container(app_env, "/id", monkeypatch)
    for name in ("EtlStorage", "CosmosConnection", "COSMOS_DATABASE", "COSMOS_CONTAINER", "ETL_WORK_QUEUE",
                 "ETL_INLINE_MAX_BYTES", "ETL_SEGMENT_RECORDS", "ETL_SEGMENT_BYTES", "ETL_INPUT_CONTAINER",
                 "ETL_SUMMARY_CONTAINER", "ETL_WRITE_BUDGET_SECONDS", "ETL_MAX_INVALID_PERCENT"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
        if not os.environ[name]:
            monkeypatch.delenv(name)
    run = Pipeline(app_env, DATABASE, container, tmp_path, settings={"ETL_SEGMENT_RECORDS": "5000"})
    run.apply()
    await run.create_queues()
    try:
        yield run
    finally:
        run.stop_workers()


def check_items(pipeline: Pipeline, blob: Blob) -> None:
    """The container (fresh for the test) holds one item per valid record and nothing else."""
    ids = pipeline.item_ids()
    assert len(ids) == len(set(ids))
    assert set(ids) == blob.valid_ids


def check_summary(summary: dict, blob: Blob, *, segments: int | None = None) -> None:
    invalid = len(blob.invalid_indexes)
    assert summary["mode"] == "fan-out"
    assert (summary["totalRecords"], summary["written"], summary["invalid"], summary["superseded"]) == (
        blob.total, len(blob.valid_ids), invalid, 0)
    assert summary["totalRecords"] == summary["written"] + summary["invalid"] + summary["superseded"]
    assert [e["index"] for e in summary["errors"]] == blob.invalid_indexes[:100]
    assert summary.get("errorsTruncated", False) == (invalid > 100)
    assert summary["status"] == ("partial" if invalid else "succeeded")
    assert summary["segments"]["failed"] == summary["segments"].get("abandoned", 0) == 0
    assert summary["segments"]["succeeded"] == summary["segments"]["total"]
    if segments is not None:  # at most ETL_SEGMENT_RECORDS lines each (a blank line is a line, not a record)
        assert segments <= summary["segments"]["total"] <= segments + 1


async def test_a_large_json_lines_blob_lands_exactly_once_across_three_worker_processes(pipeline: Pipeline) -> None:
    blob = jsonl_blob(200_000, "l")
    pipeline.start_workers(3)
    etag = await pipeline.upload("big.jsonl", blob.data)
    started = time.perf_counter()
    assert await pipeline.trigger("big.jsonl", etag) == "fan-out"
    summary = await pipeline.summary("big.jsonl", etag, timeout=600)
    elapsed = time.perf_counter() - started
    check_summary(summary, blob, segments=40)
    check_items(pipeline, blob)
    # Three processes shared the segments (each logs the segments it finished).
    done = pipeline.worker_events("etl.segment_done")
    assert len({event["invocationId"] for event in done}) >= 40
    completed = pipeline.worker_events("etl.completed")
    assert len(completed) == 1 and completed[0]["written"] == len(blob.valid_ids)
    print(f"200,000 JSON Lines records through 3 worker processes in {elapsed:.1f} s "
          f"({blob.total / elapsed:,.0f} records/s)")


async def test_a_json_array_blob_lands_once_and_an_identical_upload_rewrites_without_duplicates(
        pipeline: Pipeline) -> None:
    blob = json_array_blob(50_000, "a")
    pipeline.start_workers(3)
    first = await pipeline.upload("array.json", blob.data)
    await pipeline.trigger("array.json", first)
    check_summary(await pipeline.summary("array.json", first), blob, segments=10)
    check_items(pipeline, blob)

    second = await pipeline.upload("array.json", blob.data)  # the same bytes: a new version (ETag)
    assert second != first
    await pipeline.trigger("array.json", second)
    again = await pipeline.summary("array.json", second)
    check_summary(again, blob, segments=10)
    assert again["sourceETag"] == second
    check_items(pipeline, blob)


async def wait_for_items(pipeline: Pipeline, at_least: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(pipeline.item_ids()) < at_least:
        assert time.monotonic() < deadline, "no items landed in time:\n" + pipeline.worker_logs()[-3000:]
        await asyncio.sleep(0.1)


def use(pipeline: Pipeline, **settings: str) -> None:
    pipeline.settings.update(settings)
    pipeline.apply()


async def test_a_worker_killed_mid_segment_loses_nothing(pipeline: Pipeline) -> None:
    use(pipeline, ETL_SEGMENT_RECORDS="1000")
    blob = jsonl_blob(20_000, "k")
    [victim] = pipeline.start_workers(1, lease_seconds=3)
    etag = await pipeline.upload("killed.jsonl", blob.data)
    await pipeline.trigger("killed.jsonl", etag)
    await wait_for_items(pipeline, 1)
    os.killpg(victim.pid, signal.SIGKILL)  # mid-segment: it holds messages and has written part of one
    victim.wait()
    landed = len(pipeline.item_ids())
    assert 0 < landed < len(blob.valid_ids)
    pipeline.start_workers(2, lease_seconds=3)
    summary = await pipeline.summary("killed.jsonl", etag)
    check_summary(summary, blob, segments=20)
    check_items(pipeline, blob)
    # The messages the killed worker held came back once its lease lapsed.
    assert any(event.get("dequeueCount", 1) >= 2 for event in pipeline.worker_events("etl.segment_done"))
    assert len(pipeline.worker_events("etl.completed")) == 1


async def receive_all(pipeline: Pipeline) -> list[bytes]:
    """Every message of the work queue, taken off it."""
    from common import clients

    queue = clients.storage_queue(pipeline.queue)
    bodies: list[bytes] = []
    while messages := [m async for m in queue.receive_messages(max_messages=32, visibility_timeout=60)]:
        for message in messages:
            bodies.append(bytes(message.content))
            await queue.delete_message(message.id, message.pop_receipt)
    return bodies


async def test_every_segment_message_delivered_twice_changes_nothing(pipeline: Pipeline) -> None:
    from common import clients, settings
    from common.logs import bind_invocation
    from etl import handle_work
    from tests.conftest import FakeContext

    use(pipeline, ETL_SEGMENT_RECORDS="1000")
    blob = json_array_blob(10_000, "d")
    etag = await pipeline.upload("twice.json", blob.data)
    await pipeline.trigger("twice.json", etag)
    [split] = await receive_all(pipeline)
    cfg = settings.etl_settings()
    await handle_work(split, message_id="split-1", dequeue_count=1, max_dequeue_count=5, cfg=cfg,
                      log=bind_invocation(FakeContext(function_name="BlobEtlWorker")),
                      blob_service=clients.blob_service_client("EtlStorage"),
                      queue=lambda: clients.storage_queue(cfg.work_queue), container=clients.cosmos_container)
    segments = await receive_all(pipeline)
    assert len(segments) == 10
    queue = clients.storage_queue(pipeline.queue)
    for body in segments + segments:  # each segment message twice, the copies far apart
        await queue.send_message(body)
    pipeline.start_workers(3)
    summary = await pipeline.summary("twice.json", etag)
    check_summary(summary, blob, segments=10)
    check_items(pipeline, blob)
    # Twenty deliveries, all handled; the blob completed once.
    deadline = time.monotonic() + 60
    while len(pipeline.worker_events("etl.segment_done") + pipeline.worker_events("etl.segment_already_done")) < 20:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert len(pipeline.worker_events("etl.completed")) == 1


async def test_a_segment_that_fails_every_time_is_poisoned_and_named_in_the_summary(
        pipeline: Pipeline, app_env: Emulators) -> None:
    use(pipeline, ETL_SEGMENT_RECORDS="1000", ETL_WRITE_BUDGET_SECONDS="1")
    blob = jsonl_blob(5_000, "p")
    assert blob.data.count(b'{"id": "p2500", ') == 1
    blob.data = blob.data.replace(b'{"id": "p2500", ', b'{"id": "poison-2500", ')  # record 2500
    blob.valid_ids.discard("p2500")
    blob.valid_ids.add("poison-2500")
    app_env.cosmos_faults("poison-", 503)  # every write of that record: 503, on every delivery
    try:
        pipeline.start_workers(2)
        etag = await pipeline.upload("poison.jsonl", blob.data)
        await pipeline.trigger("poison.jsonl", etag)
        summary = await pipeline.summary("poison.jsonl", etag, timeout=180)
    finally:
        app_env.cosmos_faults(None)
    assert summary["status"] == "failed"
    total = summary["segments"]["total"]
    assert summary["segments"] == {"total": total, "succeeded": total - 1, "failed": 1, "abandoned": 0}
    [failed] = summary["failedSegments"]
    first, count = failed["firstIndex"], failed["records"]
    assert first <= 2500 < first + count  # the segment holding the record, by its record range
    assert "failed on all 5 deliveries" in failed["reason"] and "ServiceUnavailable" in failed["reason"]
    assert (f"1 of {total} segments did not complete (segment {failed['segment']}, "
            f"records {first}-{first + count - 1}") in summary["error"]
    poisoned = await pipeline.poison_messages()
    assert [(m["kind"], m["segment"]) for m in poisoned] == [("segment", failed["segment"])]
    # The other segments' records landed; the poisoned one's record never did.
    ids = set(pipeline.item_ids())
    outside = {i for i in blob.valid_ids
               if not first <= int(i.removeprefix("poison-").removeprefix("p")) < first + count}
    assert outside <= ids <= blob.valid_ids and "poison-2500" not in ids


async def test_a_blob_overwritten_mid_run_never_mixes_versions(pipeline: Pipeline) -> None:
    use(pipeline, ETL_SEGMENT_RECORDS="1000")
    old = jsonl_blob(20_000, "o", data="one")
    new = jsonl_blob(8_000, "o", data="two")
    pipeline.start_workers(1)
    first = await pipeline.upload("changing.jsonl", old.data)
    await pipeline.trigger("changing.jsonl", first)
    await wait_for_items(pipeline, 1)
    second = await pipeline.upload("changing.jsonl", new.data)  # while the old version's segments run
    assert await pipeline.trigger("changing.jsonl", first) == "stale"  # a late event of the old version
    await pipeline.trigger("changing.jsonl", second)
    summary = await pipeline.summary("changing.jsonl", second)
    check_summary(summary, new, segments=8)
    old_run = await pipeline.run_summary("changing.jsonl", first)
    assert old_run["status"] == "failed" and old_run["segments"]["abandoned"] >= 1
    assert "changed" in old_run["failedSegments"][0]["reason"]
    # The readable summary stays the new version's, and every record of the new version shows its data.
    assert (await pipeline.summary("changing.jsonl", second))["sourceETag"] == second
    sample = sorted(new.valid_ids)[::20]
    items = await pipeline.items(sample)
    # A missing item (None) is left out on the left, so the comparison fails for it too.
    assert {item_id: item["processedData"].split("-")[0] for item_id, item in items.items() if item is not None} == {
        item_id: "TWO" for item_id in sample}


async def test_finishers_at_the_same_moment_write_the_summary_once(pipeline: Pipeline,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Eight finishers of the last segments run the fan-in at once: one summary, written once, right."""
    from common import clients, settings
    from common.logs import bind_invocation
    from etl import BlobVersion, SegmentWork, fan_in, run_store
    from etl.splitting import Segment
    from tests.conftest import FakeContext

    cfg = settings.etl_settings()
    blobs = clients.blob_service_client("EtlStorage")
    etag = await pipeline.upload("racing.jsonl", b'{"id": "x"}\n')
    version = BlobVersion("incoming", "racing.jsonl", etag, 12)
    store = run_store(version, cfg, blobs)
    works = []
    for number in range(8):
        segment = Segment(number, 0, 0, number * 10, 10, first_line=number * 10 + 1)
        works.append(SegmentWork(version, "2026-11-27T00:00:00.000Z", "jsonl", segment, 8))
        await store.write_result(number, {
            "segment": number, "status": "succeeded", "range": segment.to_dict(), "requestCharge": 50.0,
            "summary": {"totalRecords": 10, "written": 9, "invalid": 1, "superseded": 0,
                        "errors": [{"index": number * 10 + 4, "id": None, "reason": "bad"}],
                        "supersededRecords": [], "types": [f"t{number % 2}"], "sources": ["s"]}})
    with caplog.at_level(logging.INFO):
        done = await asyncio.gather(*(fan_in(work, store=store, cfg=cfg,
                                             log=bind_invocation(FakeContext(function_name="BlobEtlWorker")))
                                      for work in works))
    assert done == [True] * 8
    completed = [r for r in caplog.records if '"event":"etl.completed"' in r.getMessage()]
    assert len(completed) == 1
    summary = await pipeline.summary("racing.jsonl", etag, timeout=5)
    assert (summary["totalRecords"], summary["written"], summary["invalid"]) == (80, 72, 8)
    assert [e["index"] for e in summary["errors"]] == [n * 10 + 4 for n in range(8)]
    assert summary["types"] == ["t0", "t1"] and summary["segments"]["succeeded"] == 8
    assert await store.read_summary() == summary


async def test_a_last_delivery_that_fails_after_the_segment_was_written_keeps_its_result(pipeline: Pipeline) -> None:
    """The fan-in failed on the last delivery, after the segment's result was written: the result
    stands (its records landed), rather than being replaced by a failed one."""
    from common import clients, settings
    from common.logs import bind_invocation
    from etl import BlobVersion, SegmentWork, record_failure, run_store
    from etl.splitting import Segment
    from tests.conftest import FakeContext

    cfg = settings.etl_settings()
    etag = await pipeline.upload("late.jsonl", b'{"id": "x"}\n')
    version = BlobVersion("incoming", "late.jsonl", etag, 12)
    store = run_store(version, cfg, clients.blob_service_client("EtlStorage"))
    segment = Segment(0, 0, 12, 0, 1, first_line=1)
    work = SegmentWork(version, "2026-11-27T00:00:00.000Z", "jsonl", segment, 2)
    written = {"segment": 0, "status": "succeeded", "range": segment.to_dict(), "requestCharge": 5.0,
               "summary": {"totalRecords": 1, "written": 1, "invalid": 0, "superseded": 0, "errors": [],
                           "supersededRecords": [], "types": [], "sources": []}}
    await store.write_result(0, written)
    await record_failure(work, store=store, cfg=cfg, log=bind_invocation(FakeContext()),
                         error=TimeoutError("listing the results timed out"), dequeue_count=5)
    assert await store.read_result(0) == written


async def test_a_split_that_fails_after_sending_segments_says_so_in_the_summary(pipeline: Pipeline) -> None:
    from common import clients, settings
    from common.logs import bind_invocation
    from etl import BlobVersion, SplitWork, record_failure, run_store
    from tests.conftest import FakeContext

    cfg = settings.etl_settings()
    etag = await pipeline.upload("halfway.jsonl", b'{"id": "x"}\n' * 4)
    version = BlobVersion("incoming", "halfway.jsonl", etag, 48)
    store = run_store(version, cfg, clients.blob_service_client("EtlStorage"))
    await store.write_manifest({**version.to_dict(), "format": "jsonl", "startedAt": "2026-11-27T00:00:00.000Z",
                                "segments": [{"segment": n, "start": n * 24, "end": n * 24 + 24, "firstIndex": n * 2,
                                              "records": 2, "firstLine": n * 2 + 1} for n in range(2)]})
    await record_failure(SplitWork(version, "2026-11-27T00:00:00.000Z"), store=store, cfg=cfg,
                         log=bind_invocation(FakeContext()), error=TimeoutError("sending timed out"), dequeue_count=5)
    summary = await pipeline.summary("halfway.jsonl", etag, timeout=5)
    assert summary["status"] == "failed" and summary["segments"]["total"] == 2
    assert summary["error"].startswith("splitting failed on all 5 deliveries")
    assert "had begun sending the 2 segment messages" in summary["error"]
