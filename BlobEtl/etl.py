"""Blob -> Cosmos DB ETL: stream records, upsert them concurrently, write a summary blob.

Idempotent by construction: items are upserted by their record id, and the
summary's name derives from the source blob's name, so a re-run (blob
triggers can fire more than once) rewrites the same items and summary.

Records that share an item key (id and partition key) within one blob: the
last one in blob order is the one that stays (as upserts in order would
leave it), ``written`` counts the items that landed, and every earlier one is
counted as ``superseded`` and named, with the index of the record that
replaced it. So ``totalRecords == written + invalid + superseded``.

Memory stays near one copy of the blob: records are parsed incrementally and
handled ``batch_size`` at a time; the transformed list is never built.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal

from common import telemetry
from common.cosmos import PartitionKeyPath, RequestCharge, partition_key_of
from common.logs import InvocationLog, describe_error
from common.errors import ConfigurationError, InvalidInput
from common.retry import RetryPolicy, cosmos_write_policy, retry_async, summary_upload_policy
from common.throttle import AdaptiveConcurrency, ThrottleSignal
from common.settings import EtlSettings
from common.timing import elapsed_ms, utc_timestamp

from .records import (
    BlobFormatError,
    InvalidRecord,
    RawRecord,
    check_blob,
    detect_format,
    iter_records,
    to_item,
    validate_record,
)

if TYPE_CHECKING:
    from azure.cosmos.aio import ContainerProxy
    from azure.storage.blob.aio import BlobServiceClient

MAX_ERRORS_REPORTED = 100
MAX_DISTINCT_VALUES = 1000
#: Longest id echoed in a summary's errors (an invalid id can be megabytes long).
MAX_ECHOED_ID = 256
#: Cosmos answers these for one item that can never be written as it is.
#: 400 (malformed for Cosmos), 409 (a unique key constraint), 413 (too large).
RECORD_REJECTED_STATUS = frozenset({400, 409, 413})

Status = Literal["succeeded", "partial", "failed"]


@dataclass
class EtlSummary:
    source_blob: str
    started_at: str
    status: Status = "succeeded"
    total_records: int = 0
    written: int = 0
    invalid: int = 0
    superseded: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    superseded_records: list[dict[str, Any]] = field(default_factory=list)
    types: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    values_truncated: bool = False
    error: str | None = None
    finished_at: str | None = None
    request_charge: float = 0.0
    #: The fewest writes in flight the run fell back to under throttling (the log, not the document).
    writes_in_flight_lowest: int | None = None
    #: The blob version (ETag) the summary is of, when known.
    source_etag: str | None = None
    #: ``inline`` (one invocation) or ``fan-out`` (segments on the work queue).
    mode: str = "inline"
    #: Fan-out only: segment counts and the segments that failed or were abandoned (capped).
    segments: dict[str, int] | None = None
    failed_segments: list[dict[str, Any]] = field(default_factory=list)

    def add_error(self, index: int, record_id: Any, reason: str, line: int | None = None) -> None:
        self.invalid += 1
        if len(self.errors) < MAX_ERRORS_REPORTED:
            shown_id = record_id[:MAX_ECHOED_ID] if isinstance(record_id, str) else None
            entry: dict[str, Any] = {"index": index, "id": shown_id, "reason": reason}
            if line is not None:
                entry["line"] = line
            self.errors.append(entry)

    def add_superseded(self, index: int, record_id: str, by_index: int) -> None:
        """Record ``index`` landed, then record ``by_index`` of the same blob replaced it."""
        self.superseded += 1
        if len(self.superseded_records) < MAX_ERRORS_REPORTED:
            self.superseded_records.append({"index": index, "id": record_id[:MAX_ECHOED_ID], "supersededBy": by_index})

    def note_values(self, record_type: str, source: str) -> None:
        for values, value in ((self.types, record_type), (self.sources, source)):
            if value not in values:
                if len(values) >= MAX_DISTINCT_VALUES:
                    self.values_truncated = True
                else:
                    values.add(value)

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "status": self.status,
            "sourceBlob": self.source_blob,
            "totalRecords": self.total_records,
            "written": self.written,
            "invalid": self.invalid,
            "superseded": self.superseded,
            "errors": self.errors,
            "supersededRecords": self.superseded_records,
            "types": sorted(self.types),
            "sources": sorted(self.sources),
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }
        if self.source_etag is not None:
            document["sourceETag"] = self.source_etag
        document["mode"] = self.mode
        if self.segments is not None:
            document["segments"] = self.segments
            document["failedSegments"] = self.failed_segments
        if self.values_truncated:
            document["valuesTruncated"] = True
        if self.error is not None:
            document["error"] = self.error
        if self.invalid > MAX_ERRORS_REPORTED:
            document["errorsTruncated"] = True
        if self.superseded > MAX_ERRORS_REPORTED:
            document["supersededTruncated"] = True
        return document


@dataclass(frozen=True)
class BlobRef:
    container: str
    name: str

    @classmethod
    def parse(cls, path: str) -> BlobRef:
        """``"<container>/<name>"`` as the blob trigger reports it."""
        container, _, name = path.strip("/").partition("/")
        if not container or not name:
            raise InvalidInput(f"blob path {path!r} is not '<container>/<name>'", reason="bad_blob_path")
        return cls(container, name)

    def __str__(self) -> str:
        return f"{self.container}/{self.name}"


def summary_blob_name(source: BlobRef) -> str:
    """Derived from the source name only, so a re-run overwrites the same summary."""
    return f"{source.name}.summary.json"


async def _all_or_cancel(operations: list[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; when one fails, cancel the rest before raising, so no write of a failed
    invocation goes on behind the host's retry of the same blob."""
    tasks = [asyncio.ensure_future(operation) for operation in operations]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _batched(records: Iterator[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    while batch := list(islice(records, size)):
        yield batch


#: A record ready to write: the raw record, its item, and the item's key (id and partition key value).
Ready = tuple[RawRecord, dict[str, Any], int]


def item_key(item_id: str, partition_value: Any) -> int:
    """A 128-bit digest of the item's identity in the container (id and partition key value).

    Kept per blob to tell a superseded record from a new one: 16 bytes of digest instead of the
    id itself (up to 255 characters), with a collision chance near 2**-128 per pair.
    """
    text = json.dumps([item_id, partition_value], default=str, ensure_ascii=False)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest())


def _waves(items: list[Ready]) -> list[list[Ready]]:
    """Split a batch so that no wave holds one item key twice; waves run in order, so the
    record that comes last in the blob is the one that stays."""
    waves: list[list[Ready]] = []
    seen: dict[int, int] = {}
    for entry in items:
        key = entry[2]
        wave = seen.get(key, -1) + 1
        seen[key] = wave
        if wave == len(waves):
            waves.append([])
        waves[wave].append(entry)
    return waves


class EtlRun:
    """One blob's run: owns the counters; the clients and settings come from the caller."""

    def __init__(self, source: BlobRef, container: ContainerProxy, cfg: EtlSettings, log: InvocationLog,
                 now: Callable[[], datetime], throttle: ThrottleSignal | None = None) -> None:
        self.source = source
        self.container = container
        self.log = log
        self.summary = EtlSummary(source_blob=str(source), started_at=utc_timestamp(now()))
        self.policy = cosmos_write_policy(cfg.write_budget_seconds)
        #: Writes in flight: at most ETL_WRITE_CONCURRENCY, fewer while Cosmos DB throttles.
        self.in_flight = AdaptiveConcurrency(cfg.write_concurrency, throttle)
        self.charge = RequestCharge()
        #: Item key -> index of the record whose write landed last under that key, in this blob.
        self._landed: dict[int, int] = {}

    async def _upsert(self, record: RawRecord, item: dict[str, Any], key: int) -> None:
        from azure.cosmos.exceptions import CosmosHttpResponseError

        async def attempt() -> None:
            async with self.in_flight:  # held for the attempt, not for a retry's wait
                await self.container.upsert_item(item, response_hook=self.charge)

        try:
            await retry_async(
                attempt,
                self.policy,
                on_retry=lambda n, delay, exc: self.log.warning(
                    "etl.write_retry", attempt=n, delayS=round(delay, 3), error=describe_error(exc)),
            )
        except CosmosHttpResponseError as exc:
            if exc.status_code in RECORD_REJECTED_STATUS:
                self.summary.add_error(record.index, item["id"], f"rejected by Cosmos DB ({exc.status_code})",
                                       record.line)
                return
            raise
        earlier = self._landed.get(key)
        self._landed[key] = record.index
        if earlier is None:
            self.summary.written += 1
        else:  # waves keep blob order per key, so the earlier record's write finished first
            self.summary.add_superseded(earlier, item["id"], record.index)

    async def write_batch(self, batch: list[RawRecord], key: PartitionKeyPath, timestamp: str) -> None:
        ready: list[Ready] = []
        for record in batch:
            self.summary.total_records += 1
            if record.error is not None:
                self.summary.add_error(record.index, None, record.error, record.line)
                continue
            value = record.value
            candidate_id = value.get("id") if isinstance(value, dict) else None
            try:
                item = to_item(validate_record(value), str(self.source), timestamp)
                partition_value = key.value_of(item)
            except InvalidRecord as exc:
                self.summary.add_error(record.index, candidate_id, str(exc), record.line)
                continue
            self.summary.note_values(item["metadata"]["type"], item["metadata"]["source"])
            ready.append((record, item, item_key(item["id"], partition_value)))
        for wave in _waves(ready):
            await _all_or_cancel([self._upsert(record, item, key) for record, item, key in wave])


async def run_etl(
    data: bytes,
    *,
    source_blob: str,
    container: ContainerProxy,
    cfg: EtlSettings,
    log: InvocationLog,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    throttle: ThrottleSignal | None = None,
) -> EtlSummary:
    """Parse, validate, transform and upsert every record of ``data``; return the summary.

    ``throttle`` is the Cosmos client's count of 429s: writes in flight follow it
    (:class:`common.throttle.AdaptiveConcurrency`).

    A blob that cannot be read yields a ``failed`` summary and writes nothing. A
    write that keeps failing transiently raises (the platform retries the blob).
    """
    source = BlobRef.parse(source_blob)
    run = EtlRun(source, container, cfg, log, now, throttle)
    summary = run.summary
    try:
        fmt = detect_format(source.name, data)
        # One streaming pass proves the whole blob readable before anything is written;
        # it is CPU-bound, so it runs off the event loop.
        await asyncio.to_thread(check_blob, data, fmt)
    except BlobFormatError as exc:
        summary.status = "failed"
        summary.error = str(exc)
        summary.finished_at = utc_timestamp(now())
        return summary

    key = await item_partition_key(container)
    await write_records(run, iter_records(data, fmt), key, summary.started_at, cfg.batch_size)
    summary.request_charge = run.charge.total
    summary.writes_in_flight_lowest = run.in_flight.lowest
    summary.status, summary.error = summary_status(summary, cfg.max_invalid_percent)
    summary.finished_at = utc_timestamp(now())
    return summary


async def item_partition_key(container: ContainerProxy) -> PartitionKeyPath:
    """The container's partition key; :class:`ConfigurationError` naming ``COSMOS_CONTAINER`` when
    BlobEtl's items cannot fill it."""
    key = await partition_key_of(container)
    if not _key_resolves(key):
        raise ConfigurationError(
            "COSMOS_CONTAINER",
            f"names a container whose partition key {list(key.paths)} is not a path of BlobEtl items "
            "(use /id, /metadata/source, /metadata/type or /sourceBlob)",
        )
    return key


async def write_records(run: EtlRun, records: Iterator[RawRecord], key: PartitionKeyPath, timestamp: str,
                        batch_size: int, *, before_batch: Callable[[], Awaitable[bool]] | None = None) -> bool:
    """Validate, transform and upsert ``records`` ``batch_size`` at a time into ``run``'s counters.

    ``before_batch`` is awaited before every batch but the first; when it answers False the run
    stops there (a fanned-out segment whose blob changed) and this returns False.
    """
    batches = _batched(records, batch_size)
    summary = run.summary
    number = -1
    # Splitting and parsing are CPU work: each batch is read off the event loop, so one record
    # full of brackets cannot stall every other invocation of the worker.
    while (batch := await asyncio.to_thread(next, batches, None)) is not None:
        number += 1
        if number and before_batch is not None and not await before_batch():
            return False
        written, invalid = summary.written, summary.invalid
        with telemetry.span("etl.batch", attributes={"app.etl.batch.number": number}) as batch_span:
            await run.write_batch(batch, key, timestamp)
            batch_span.set_attributes({"app.etl.batch.records": len(batch),
                                       "app.etl.batch.written": summary.written - written,
                                       "app.etl.batch.invalid": summary.invalid - invalid})
        await asyncio.sleep(0)  # let other invocations run between batches
    return True


def summary_status(summary: EtlSummary, max_invalid_percent: float) -> tuple[Status, str | None]:
    """``succeeded`` with no invalid record; ``failed`` with no valid one, or with a share of invalid
    records above ``max_invalid_percent`` (``ETL_MAX_INVALID_PERCENT``), saying why; else ``partial``."""
    if summary.invalid == 0:
        return "succeeded", summary.error
    if summary.written == 0:
        return "failed", summary.error
    share = 100.0 * summary.invalid / summary.total_records
    if share > max_invalid_percent:
        return "failed", (f"{summary.invalid} of {summary.total_records} records ({share:.2f}%) are invalid, above "
                          f"the {max_invalid_percent:g}% ETL_MAX_INVALID_PERCENT tolerates; the valid ones were written")
    return "partial", summary.error


_ITEM_SHAPE = {"id": "", "processedData": "", "timestamp": "", "sourceBlob": "", "metadata": {"source": "", "type": ""}}


def _key_resolves(key: PartitionKeyPath) -> bool:
    try:
        key.value_of(_ITEM_SHAPE)
    except KeyError:
        return False
    return True


async def is_current(blob_service: BlobServiceClient, source: BlobRef, etag: str) -> bool:
    """Whether ``source`` is still the version ``etag`` (False once it changed or was deleted)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        properties = await blob_service.get_blob_client(source.container, source.name).get_blob_properties()
    except ResourceNotFoundError:
        return False
    return same_etag(properties.etag, etag)


def same_etag(left: str | None, right: str | None) -> bool:
    """ETags compared without their quotes (Event Grid sends ``0x8D...``, the SDK ``"0x8D..."``)."""
    return left is not None and right is not None and left.strip('"') == right.strip('"')


async def write_summary(blob_service: BlobServiceClient, summary_container: str, source: BlobRef,
                        summary: EtlSummary, policy: RetryPolicy) -> str | None:
    """Write the summary blob; return its path.

    A summary of a known blob version is written only while the source blob is still that
    version (None otherwise), and only over the summary blob as it was when that was checked
    (a conditional write): a run of an older version that finishes late never replaces the
    newer version's summary. The summary blob's metadata ``sourceetag`` names the version.
    """
    # ASCII-escaped: an invalid record's id may hold escapes (a lone surrogate) UTF-8 cannot encode.
    body = json.dumps(summary.to_document(), indent=2).encode("utf-8")
    written = await publish_summary(blob_service, summary_container, source, body, summary.source_etag, policy)
    return f"{summary_container}/{summary_blob_name(source)}" if written else None


async def publish_summary(blob_service: BlobServiceClient, summary_container: str, source: BlobRef, body: bytes,
                          source_etag: str | None, policy: RetryPolicy, *, unless_published: bool = False) -> bool:
    """Write ``<name>.summary.json``; False when the source blob is no longer ``source_etag``.

    With a version, the write is conditional on the summary blob being what it was when the
    version was checked (absent, or the same ETag); if another run wrote in between, look again.
    A summary of this version already there is kept (True) after such a conflict, or from the
    start with ``unless_published``.
    """
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
    from azure.storage.blob import ContentSettings

    client = blob_service.get_blob_client(summary_container, summary_blob_name(source))
    settings = ContentSettings(content_type="application/json")
    if source_etag is None:
        await retry_async(lambda: client.upload_blob(body, overwrite=True, content_settings=settings), policy)
        return True
    metadata = {"sourceetag": source_etag.strip('"')}
    conflicted = False
    for _ in range(5):
        try:
            properties = await retry_async(client.get_blob_properties, policy)
        except ResourceNotFoundError:
            existing: str | None = None
        else:
            existing = properties.etag
            if (conflicted or unless_published) and same_etag((properties.metadata or {}).get("sourceetag"),
                                                              source_etag):
                return True  # another finisher of the same version wrote it
        if not await retry_async(lambda: is_current(blob_service, source, source_etag), policy):
            return False
        condition: dict[str, Any] = (
            {"overwrite": False} if existing is None
            else {"overwrite": True, "etag": existing, "match_condition": MatchConditions.IfNotModified})
        try:
            await retry_async(lambda condition=condition: client.upload_blob(  # type: ignore[misc]
                body, metadata=metadata, content_settings=settings, **condition), policy)
            return True
        except (ResourceExistsError, ResourceModifiedError):
            conflicted = True  # another run wrote the summary since we looked: check the version again
    raise RuntimeError(f"the summary of {source} kept changing while it was written")


async def process_blob(
    data: bytes,
    *,
    source_blob: str,
    cfg: EtlSettings,
    log: InvocationLog,
    container: ContainerProxy | None = None,
    blob_service: BlobServiceClient | None = None,
    throttle: ThrottleSignal | None = None,
    source_etag: str | None = None,
) -> EtlSummary:
    """The whole pattern for one blob: ETL into Cosmos DB, then the summary blob, then one log line.

    ``source_etag`` is the version ``data`` was read at: the summary says so, and is not
    written if the blob has changed since (the new version's run writes its own).

    Clients default to ``common.clients``' shared ones (and ``throttle`` to the shared
    container's 429 count).

    Errors (:mod:`common.errors`): a blob or record that can never be read is not raised but
    named in the summary (``failed`` or ``partial``), and the invocation completes. Raises
    :class:`~common.errors.ConfigurationError` for a container whose partition key BlobEtl
    cannot fill, and lets a write that stays failing past its retry budget (an SDK error)
    propagate, so the platform retries the blob; a retry rewrites the same items.
    """
    from common import clients

    started = time.perf_counter()
    if container is None:
        container = clients.cosmos_container()
        throttle = throttle or clients.cosmos_throttle_signal()
    blob_service = blob_service if blob_service is not None else clients.blob_service_client("EtlStorage")
    try:
        summary = await run_etl(data, source_blob=source_blob, container=container, cfg=cfg, log=log,
                                throttle=throttle)
        summary.source_etag = source_etag
    except Exception as exc:
        log.error("etl.failed", outcome="retry", bytes=len(data), error=describe_error(exc),
                  durationMs=elapsed_ms(started))
        raise
    summary_path = await write_summary(blob_service, cfg.summary_container, BlobRef.parse(source_blob), summary,
                                       summary_upload_policy(cfg.write_budget_seconds))
    report_completed(log, summary, summary_path, time.perf_counter() - started, bytes=len(data))
    return summary


def report_completed(log: InvocationLog, summary: EtlSummary, summary_path: str | None, elapsed: float,
                     **fields: Any) -> None:
    """The metrics and the one log line of a finished blob (inline, or a fan-out's last segment)."""
    telemetry.count("app.etl.records", summary.written, outcome="written")
    telemetry.count("app.etl.records", summary.invalid, outcome="invalid")
    telemetry.record_duration("app.etl.duration", elapsed, status=summary.status)
    level = log.info if summary.status == "succeeded" else log.warning
    level("etl.completed", status=summary.status, mode=summary.mode, totalRecords=summary.total_records,
          written=summary.written, invalid=summary.invalid, superseded=summary.superseded, error=summary.error,
          summaryBlob=summary_path, summarySkipped=None if summary_path else "the blob has changed since",
          requestCharge=round(summary.request_charge, 2), writesInFlightLowest=summary.writes_in_flight_lowest,
          durationMs=round(elapsed * 1000, 3),
          recordsPerSecond=round(summary.written / elapsed, 1) if elapsed > 0 else None, **fields)
