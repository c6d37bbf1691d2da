"""The fan-out of a large blob: split it into segments, write each segment, fan in without a coordinator.

Exactly-once effects: items are upserts by record id; a split is claimed once per message
(``claim.json``); each segment overwrites its own result; the version's ``summary.json`` is a
conditional create, so exactly one finisher publishes the summary. docs/pipeline.md has the design.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from common.logs import InvocationLog, describe_error
from common.retry import retry_async
from common.settings import EtlSettings
from common.throttle import ThrottleSignal
from common.timing import utc_timestamp

from .blobs import BlobChanged, BlobVersion
from .messages import SegmentWork, SplitWork, Work, encode_work, parse_work
from .records import BlobFormat, BlobFormatError, detect_format, iter_array_segment, iter_records
from .runs import RunStore, run_store
from .splitting import MAX_RECORD_BYTES, JsonArraySplitter, JsonLinesSplitter, Segment
from .summary import (
    MAX_DISTINCT_VALUES,
    MAX_ERRORS_REPORTED,
    EtlSummary,
    publish_summary,
    report_completed,
    summary_status,
    write_summary,
)
from .writer import EtlRun, item_partition_key, write_records

if TYPE_CHECKING:
    from azure.cosmos.aio import ContainerProxy
    from azure.storage.blob.aio import BlobServiceClient
    from azure.storage.queue.aio import QueueClient

#: Bytes read from storage at a time while splitting (one ranged GET each).
SPLIT_READ_BYTES = 4 * 1024 * 1024
#: Messages sent to the work queue at once.
ENQUEUE_CONCURRENCY = 16
#: Result blobs read at once during the fan-in.
FAN_IN_READ_CONCURRENCY = 16


async def start_fan_out(version: BlobVersion, *, queue: QueueClient, log: InvocationLog,
                        now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """Hand a large blob to the work queue as one split message (BlobEtl's part for large blobs).

    Splitting reads the whole blob, which can take longer than the 30 seconds Event Grid waits
    for its webhook; on the queue it runs under the function timeout with the host renewing
    the message's visibility, and a crash retries it from the queue.
    """
    work = SplitWork(version, utc_timestamp(now()))
    await queue.send_message(encode_work(work))
    log.info("etl.fan_out_started", blob=str(version.ref), etag=version.etag, bytes=version.size,
             workQueue=queue.queue_name)


async def split_blob(work: SplitWork, *, message_id: str, store: RunStore, queue: QueueClient, cfg: EtlSettings,
                     log: InvocationLog, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """Split the blob into segments and send one message per segment.

    A blob that cannot be read gets a ``failed`` summary and no segments. A blob that changed
    before it was split is left alone: the new version has its own event and run.
    """
    if not await store.claim_split(message_id):
        log.info("etl.split_duplicate", blob=str(work.version.ref), detail="another split message owns this run")
        return
    manifest = await store.read_manifest()
    if manifest is None:
        started = time.perf_counter()
        try:
            fmt, segments = await scan_blob(store, cfg)
        except BlobChanged:
            log.info("etl.split_skipped", blob=str(work.version.ref), detail="the blob changed before it was split")
            return
        except BlobFormatError as exc:
            summary = EtlSummary(source_blob=str(work.version.ref), started_at=work.started_at, status="failed",
                                 error=str(exc), source_etag=work.version.etag, mode="fan-out",
                                 segments={"total": 0, "succeeded": 0, "failed": 0},
                                 finished_at=utc_timestamp(now()))
            await finish(summary, store, cfg, log, started=started)
            return
        manifest = {**work.version.to_dict(), "format": fmt, "startedAt": work.started_at,
                    "segments": [segment.to_dict() for segment in segments]}
        await store.write_manifest(manifest)
        log.info("etl.split", blob=str(work.version.ref), format=fmt, segments=len(segments),
                 bytes=work.version.size, durationMs=round((time.perf_counter() - started) * 1000, 1))
    segments = [_segment_of(entry) for entry in manifest["segments"]]
    if not segments:  # an empty array, or only blank lines: nothing to fan out
        await fan_in(SegmentWork(work.version, work.started_at, manifest["format"], Segment(0, 0, 0, 0, 0), 0),
                     store=store, cfg=cfg, log=log, now=now)
        return
    messages = [encode_work(SegmentWork(work.version, work.started_at, manifest["format"], segment, len(segments)))
                for segment in segments]
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def send(body: bytes) -> None:
        async with gate:
            await retry_async(lambda: queue.send_message(body), store.policy)

    await asyncio.gather(*(send(body) for body in messages))
    log.info("etl.segments_queued", blob=str(work.version.ref), segments=len(segments), workQueue=queue.queue_name)


def _segment_of(entry: dict[str, Any]) -> Segment:
    return Segment(entry["segment"], entry["start"], entry["end"], entry["firstIndex"], entry["records"],
                   first_line=entry.get("firstLine"), oversized=bool(entry.get("oversized")))


async def scan_blob(store: RunStore, cfg: EtlSettings) -> tuple[BlobFormat, list[Segment]]:
    """Read the blob in ranges of :data:`SPLIT_READ_BYTES` and cut it into segments; memory stays at
    one range plus one record whatever the blob's size."""
    size = store.version.size
    splitter: JsonLinesSplitter | JsonArraySplitter | None = None
    fmt: BlobFormat | None = None
    segments: list[Segment] = []
    for offset in range(0, size, SPLIT_READ_BYTES):
        chunk = await store.read_range(offset, min(size, offset + SPLIT_READ_BYTES))
        if splitter is None:
            fmt = detect_format(store.version.name, chunk)
            kind = JsonLinesSplitter if fmt == "jsonl" else JsonArraySplitter
            splitter = kind(cfg.segment_records, cfg.segment_bytes)
        segments += await asyncio.to_thread(splitter.feed, chunk)
    if splitter is None or fmt is None:
        fmt = detect_format(store.version.name, b"")  # raises for an empty blob of no known extension
        splitter = JsonLinesSplitter(1, 1) if fmt == "jsonl" else JsonArraySplitter(1, 1)
    segments += splitter.finish()
    return fmt, segments


# ---------------------------------------------------------------------- a segment

async def process_segment(work: SegmentWork, *, store: RunStore, container: ContainerProxy, cfg: EtlSettings,
                          log: InvocationLog, throttle: ThrottleSignal | None = None,
                          now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """Write one segment's records, record the segment's result, and fan in if it was the last."""
    segment = work.segment
    done = await store.read_result(segment.number)
    if done is not None and done.get("status") in ("succeeded", "abandoned"):
        log.info("etl.segment_already_done", segment=segment.number, status=done.get("status"))
    else:
        result = await _write_segment(work, store, container, cfg, log, throttle, now)
        await store.write_result(segment.number, result)
        log.info("etl.segment_done", segment=segment.number, segments=work.segments, status=result["status"],
                 records=result["summary"]["totalRecords"], written=result["summary"]["written"],
                 invalid=result["summary"]["invalid"], requestCharge=result["requestCharge"])
    await fan_in(work, store=store, cfg=cfg, log=log, now=now)


async def _write_segment(work: SegmentWork, store: RunStore, container: ContainerProxy, cfg: EtlSettings,
                         log: InvocationLog, throttle: ThrottleSignal | None,
                         now: Callable[[], datetime]) -> dict[str, Any]:
    segment = work.segment
    run = EtlRun(work.version.ref, container, cfg, log, now, throttle)
    summary = run.summary
    if segment.oversized:
        summary.total_records = 1
        summary.add_error(segment.first_index, None, f"line is longer than {MAX_RECORD_BYTES} bytes, the most "
                          "one record may take", segment.first_line)
        return _result(segment, "succeeded", summary, run)
    try:
        data = await store.read_range(segment.start, segment.end)
    except BlobChanged:
        return _result(segment, "abandoned", summary, run, reason="the blob changed before this segment was read")
    if work.format == "jsonl":
        records = iter_records(data, "jsonl", first_index=segment.first_index, first_line=segment.first_line or 1)
    else:
        records = iter_array_segment(data, segment.first_index)
    key = await item_partition_key(container)
    finished = await write_records(run, records, key, work.started_at, cfg.batch_size, before_batch=store.is_current)
    if not finished:
        return _result(segment, "abandoned", summary, run,
                       reason="the blob changed while this segment was written; it stopped there")
    return _result(segment, "succeeded", summary, run)


def _result(segment: Segment, status: str, summary: EtlSummary, run: EtlRun | None,
            reason: str | None = None, **extra: Any) -> dict[str, Any]:
    document = summary.to_document()
    result: dict[str, Any] = {"segment": segment.number, "status": status, "range": segment.to_dict(),
                              "summary": {key: document[key] for key in (
                                  "totalRecords", "written", "invalid", "superseded", "errors", "supersededRecords",
                                  "types", "sources")},
                              "valuesTruncated": summary.values_truncated,
                              "requestCharge": round(run.charge.total, 2) if run is not None else 0.0,
                              "writesInFlightLowest": run.in_flight.lowest if run is not None else None, **extra}
    if reason is not None:
        result["reason"] = reason
    return result


async def record_failure(work: Work, *, store: RunStore, cfg: EtlSettings, log: InvocationLog, error: BaseException,
                         dequeue_count: int, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """On a message's last delivery: name the failure where the summary will show it, before the
    host moves the message to the poison queue."""
    reason = f"failed on all {dequeue_count} deliveries; the last: {describe_error(error)}"
    if isinstance(work, SplitWork):
        error_text = f"splitting {reason}"
        manifest = await store.read_manifest()
        queued = len(manifest["segments"]) if manifest is not None else 0
        if queued:  # the split got as far as sending segment messages: some may have run
            error_text += (f"; it had begun sending the {queued} segment messages, so records of the segments "
                           "already sent may have been written (see the log for etl.segment_done)")
        summary = EtlSummary(source_blob=str(work.version.ref), started_at=work.started_at, status="failed",
                             error=error_text, source_etag=work.version.etag, mode="fan-out",
                             segments={"total": queued, "succeeded": 0, "failed": queued},
                             finished_at=utc_timestamp(now()))
        await finish(summary, store, cfg, log, started=time.perf_counter())
        return
    segment = work.segment
    existing = await store.read_result(segment.number)
    if existing is not None and existing.get("status") in ("succeeded", "abandoned"):
        # The segment's records and result are written; what failed came after (the fan-in). Its
        # result stands, and the next finisher's fan-in (or none, if this was the last) counts it.
        log.error("etl.fan_in_failed", segment=segment.number, reason=reason)
        return
    summary = EtlSummary(source_blob=str(work.version.ref), started_at=work.started_at)
    await store.write_result(segment.number, _result(segment, "failed", summary, None, reason=reason,
                                                     dequeueCount=dequeue_count))
    log.error("etl.segment_failed", segment=segment.number, firstIndex=segment.first_index,
              records=segment.records, startByte=segment.start, endByte=segment.end, reason=reason)
    await fan_in(work, store=store, cfg=cfg, log=log, now=now)


# ------------------------------------------------------------------------ the fan-in

async def fan_in(work: SegmentWork, *, store: RunStore, cfg: EtlSettings, log: InvocationLog,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> bool:
    """If every segment has a result, write the blob's summary (once); True when the run is complete."""
    if work.segments and await store.count_results() < work.segments:
        return False
    existing = await store.read_summary()
    if existing is not None:  # another finisher won; make sure the readable summary was written
        await _ensure_published(existing, store, cfg)
        return True
    started = time.perf_counter()
    summary = await aggregate(work, store, cfg, now)
    await finish(summary, store, cfg, log, started=started)
    return True


async def aggregate(work: SegmentWork, store: RunStore, cfg: EtlSettings,
                    now: Callable[[], datetime]) -> EtlSummary:
    """The blob's summary from its segments' results, in segment (so record) order."""
    summary = EtlSummary(source_blob=str(work.version.ref), started_at=work.started_at,
                         source_etag=work.version.etag, mode="fan-out")
    counts = {"total": work.segments, "succeeded": 0, "failed": 0, "abandoned": 0}
    charge = 0.0
    gate = asyncio.Semaphore(FAN_IN_READ_CONCURRENCY)

    async def read(number: int) -> dict[str, Any] | None:
        async with gate:
            return await store.read_result(number)

    for first in range(0, work.segments, 256):
        numbers = range(first, min(work.segments, first + 256))
        for number, result in zip(numbers, await asyncio.gather(*(read(n) for n in numbers)), strict=True):
            if result is None:
                raise RuntimeError(f"segment {number}'s result disappeared during the fan-in")
            status = str(result.get("status"))
            counts[status] = counts.get(status, 0) + 1
            charge += float(result.get("requestCharge") or 0.0)
            lowest = result.get("writesInFlightLowest")
            if isinstance(lowest, int) and (summary.writes_in_flight_lowest is None
                                            or lowest < summary.writes_in_flight_lowest):
                summary.writes_in_flight_lowest = lowest
            if status != "succeeded":
                if len(summary.failed_segments) < MAX_ERRORS_REPORTED:
                    span = result["range"]
                    summary.failed_segments.append({
                        "segment": number, "status": status, "firstIndex": span["firstIndex"],
                        "records": span["records"], "startByte": span["start"], "endByte": span["end"],
                        "reason": result.get("reason")})
            _add_segment(summary, result)
    summary.request_charge = charge
    summary.segments = counts
    summary.status, summary.error = summary_status(summary, cfg.max_invalid_percent)
    bad = counts["failed"] + counts["abandoned"]
    if bad:
        summary.status = "failed"
        worst = summary.failed_segments[0] if summary.failed_segments else {}
        summary.error = (f"{bad} of {work.segments} segments did not complete (segment {worst.get('segment')}, "
                         f"records {worst.get('firstIndex')}-{worst.get('firstIndex', 0) + worst.get('records', 1) - 1}: "
                         f"{worst.get('reason')}); see failedSegments")
    summary.finished_at = utc_timestamp(now())
    return summary


def _add_segment(summary: EtlSummary, result: dict[str, Any]) -> None:
    part = result.get("summary") or {}
    summary.total_records += int(part.get("totalRecords", 0))
    summary.written += int(part.get("written", 0))
    summary.invalid += int(part.get("invalid", 0))
    summary.superseded += int(part.get("superseded", 0))
    room = MAX_ERRORS_REPORTED - len(summary.errors)
    summary.errors.extend(part.get("errors", [])[:max(0, room)])
    room = MAX_ERRORS_REPORTED - len(summary.superseded_records)
    summary.superseded_records.extend(part.get("supersededRecords", [])[:max(0, room)])
    for values, found in ((summary.types, part.get("types", [])), (summary.sources, part.get("sources", []))):
        for value in found:
            if value not in values:
                if len(values) >= MAX_DISTINCT_VALUES:
                    summary.values_truncated = True
                    break
                values.add(value)
    if result.get("valuesTruncated"):
        summary.values_truncated = True


async def finish(summary: EtlSummary, store: RunStore, cfg: EtlSettings, log: InvocationLog, *,
                 started: float) -> None:
    """Create the version's summary (once), publish the readable one, log completion (once)."""
    document = summary.to_document()
    if not await store.create_summary(document):
        existing = await store.read_summary()
        await _ensure_published(existing or document, store, cfg)
        return
    path = await write_summary(store.blob_service, cfg.summary_container, store.version.ref, summary, store.policy)
    report_completed(log, summary, path, time.perf_counter() - started, segments=summary.segments,
                     runSummary=f"{cfg.summary_container}/{store.prefix}summary.json")


async def _ensure_published(document: dict[str, Any], store: RunStore, cfg: EtlSettings) -> None:
    """Write the readable summary from the version's, unless it already shows this version (a
    finisher that created the version's summary and died before publishing it)."""
    await publish_summary(store.blob_service, cfg.summary_container, store.version.ref,
                          json.dumps(document, indent=2).encode("utf-8"), store.version.etag, store.policy,
                          unless_published=True)


# ------------------------------------------------------------------ message handling

async def handle_work(body: bytes, *, message_id: str, dequeue_count: int, max_dequeue_count: int,
                      cfg: EtlSettings, log: InvocationLog, blob_service: BlobServiceClient,
                      queue: Callable[[], QueueClient], container: Callable[[], ContainerProxy],
                      throttle: ThrottleSignal | None = None) -> Work:
    """One message of the work queue (BlobEtlWorker): a split or a segment.

    Raises to have the host deliver the message again; on the last delivery
    (``dequeue_count >= max_dequeue_count``, after which the host moves it to the poison
    queue) the failure is first recorded where the blob's summary shows it. A malformed
    message raises :class:`InvalidInput` every time, so it ends in the poison queue too.
    ``queue`` and ``container`` build the clients only for the messages that need them.
    """
    work = parse_work(body)
    store = run_store(work.version, cfg, blob_service)
    try:
        if isinstance(work, SplitWork):
            await split_blob(work, message_id=message_id, store=store, queue=queue(), cfg=cfg, log=log)
        else:
            await process_segment(work, store=store, container=container(), cfg=cfg, log=log,
                                  throttle=throttle)
    except Exception as exc:
        if dequeue_count >= max_dequeue_count:
            try:
                await record_failure(work, store=store, cfg=cfg, log=log, error=exc, dequeue_count=dequeue_count)
            except Exception as record_error:  # the original failure is the one to raise
                log.error("etl.failure_not_recorded", error=describe_error(record_error))
        raise
    return work
