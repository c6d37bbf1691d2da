"""A blob's summary: what was written, what was invalid and why, and its publication as ``<name>.summary.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from common import telemetry
from common.logs import InvocationLog
from common.retry import RetryPolicy, retry_async

from .blobs import BlobRef, is_current, same_etag

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobServiceClient

MAX_ERRORS_REPORTED = 100
MAX_DISTINCT_VALUES = 1000
#: Longest id echoed in a summary's errors (an invalid id can be megabytes long).
MAX_ECHOED_ID = 256

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



def summary_blob_name(source: BlobRef) -> str:
    """Derived from the source name only, so a re-run overwrites the same summary."""
    return f"{source.name}.summary.json"


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



def run_seconds(summary: EtlSummary) -> float | None:
    """The whole run's duration, from the summary's own times (a fan-out spans many invocations)."""
    from datetime import datetime

    if summary.finished_at is None:
        return None
    try:
        started = datetime.fromisoformat(summary.started_at)
        finished = datetime.fromisoformat(summary.finished_at)
    except ValueError:
        return None
    return max(0.0, (finished - started).total_seconds())


def report_completed(log: InvocationLog, summary: EtlSummary, summary_path: str | None, elapsed: float,
                     **fields: Any) -> None:
    """The metrics and the one log line of a finished blob (inline, or a fan-out's last segment).

    ``elapsed`` is this invocation's time; a fan-out's rate and duration are the whole run's,
    from its first message to its summary, not its last segment's."""
    if summary.mode == "fan-out":
        whole = run_seconds(summary)
        if whole is not None:
            fields.setdefault("finisherDurationMs", round(elapsed * 1000, 3))
            elapsed = whole
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
