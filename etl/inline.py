"""A small blob in one invocation: read it, write its records, publish its summary."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from common.logs import InvocationLog, describe_error
from common.retry import summary_upload_policy
from common.settings import EtlSettings
from common.throttle import ThrottleSignal
from common.timing import elapsed_ms, utc_timestamp

from .blobs import BlobRef
from .records import BlobFormatError, check_blob, detect_format, iter_records
from .summary import EtlSummary, report_completed, summary_status, write_summary
from .writer import EtlRun, item_partition_key, write_records

if TYPE_CHECKING:
    from azure.cosmos.aio import ContainerProxy
    from azure.storage.blob.aio import BlobServiceClient

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


async def process_blob(
    data: bytes,
    *,
    source_blob: str,
    cfg: EtlSettings,
    log: InvocationLog,
    container: ContainerProxy,
    blob_service: BlobServiceClient,
    throttle: ThrottleSignal | None = None,
    source_etag: str | None = None,
) -> EtlSummary:
    """The whole pattern for one blob: ETL into Cosmos DB, then the summary blob, then one log line.

    ``source_etag`` is the version ``data`` was read at: the summary says so, and is not
    written if the blob has changed since (the new version's run writes its own).

    ``throttle`` is ``container``'s count of 429s (writes in flight follow it).

    Errors (:mod:`common.errors`): a blob or record that can never be read is not raised but
    named in the summary (``failed`` or ``partial``), and the invocation completes. Raises
    :class:`~common.errors.ConfigurationError` for a container whose partition key BlobEtl
    cannot fill, and lets a write that stays failing past its retry budget (an SDK error)
    propagate, so the platform retries the blob; a retry rewrites the same items.
    """
    started = time.perf_counter()
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
