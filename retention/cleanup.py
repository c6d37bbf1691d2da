"""Retention cleanup: delete items whose ``timestamp`` is an instant older than the retention window.

Safe (a parameterized projection query; a 404 on delete is already gone), bounded (pages,
concurrency, a time budget from host.json's ``functionTimeout``, ``CLEANUP_MAX_DELETES``) and
strict about which timestamps are instants. docs/cleanup.md has the rules in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from common import telemetry
from common.cosmos import PartitionKeyPath, RequestCharge, partition_key_of
from common.errors import TransientFailure
from common.logs import InvocationLog, describe_error
from common.retry import cosmos_delete_policy, retry_async
from common.settings import CleanupSettings
from common.throttle import AdaptiveConcurrency, ThrottleSignal
from common.timing import elapsed_ms, utc_timestamp

if TYPE_CHECKING:
    from azure.cosmos.aio import ContainerProxy

StopReason = Literal["done", "time_budget", "max_deletes", "max_passes", "error"]
SkipReason = Literal["no_utc_offset", "unreadable_timestamp"]
#: A new pass runs only while the last one deleted something (bounded all the same).
MAX_PASSES = 5
MAX_ERRORS_LOGGED = 5
#: The widest UTC offset in use (Line Islands, +14:00); wider offsets are not read as instants.
MAX_UTC_OFFSET = timedelta(hours=14)

_INSTANT = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:Z|([+-])(\d\d):(\d\d))", re.ASCII)
_NO_OFFSET = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?", re.ASCII)


@dataclass
class CleanupReport:
    cutoff: str
    dry_run: bool
    #: Rows the query returned, all passes together (kept and skipped ones too): the read cost.
    scanned: int = 0
    deleted: int = 0
    already_gone: int = 0
    failed: int = 0
    would_delete: int = 0
    #: Selected by the widened range, readable, not yet past the cutoff: kept (largest pass count).
    not_yet_due: int = 0
    #: Selected, never deleted because the timestamp is not an instant: count by reason (largest pass count).
    skipped: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    passes: int = 0
    request_charge: float = 0.0
    stopped: StopReason = "done"
    errors: list[str] = field(default_factory=list)

    @property
    def progress(self) -> int:
        return self.deleted + self.already_gone

    @property
    def more_remain(self) -> bool:
        """Whether a later run has deletable work left (skipped items wait for a person, not a run)."""
        return self.stopped in ("time_budget", "max_deletes", "max_passes", "error") or self.failed > 0

    def summary(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff, "dryRun": self.dry_run, "scanned": self.scanned, "deleted": self.deleted,
                "alreadyGone": self.already_gone, "failed": self.failed, "wouldDelete": self.would_delete,
                "notYetDue": self.not_yet_due, "skipped": dict(self.skipped), "pages": self.pages,
                "passes": self.passes, "stopped": self.stopped, "moreRemain": self.more_remain,
                "requestCharge": round(self.request_charge, 2), "errors": self.errors}


def time_budget(configured: float | None, function_timeout: float | None) -> float:
    """Seconds the run may take: ``CLEANUP_TIME_BUDGET_SECONDS`` when set, else 80% of host.json's
    ``functionTimeout`` less 30 s (at least 10 s), leaving time to log and for the host to finish;
    600 s when the timeout is unbounded."""
    if configured is not None:
        return configured
    return max(10.0, function_timeout * 0.8 - 30.0) if function_timeout else 600.0


def expiry_cutoff(now: datetime, retention_days: int) -> str:
    """The cutoff instant, ISO 8601 UTC with milliseconds and Z."""
    return utc_timestamp(now.astimezone(UTC) - timedelta(days=retention_days))


def read_instant(value: object) -> datetime | SkipReason:
    """The instant a ``timestamp`` names (aware, UTC), or why it names none (see the module docstring)."""
    match = _INSTANT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return "no_utc_offset" if isinstance(value, str) and _NO_OFFSET.fullmatch(value) else "unreadable_timestamp"
    year, month, day, hour, minute, second, fraction, sign, offset_h, offset_m = match.groups()
    offset = timedelta(hours=int(offset_h or 0), minutes=int(offset_m or 0))
    if int(offset_m or 0) > 59 or offset > MAX_UTC_OFFSET:
        return "unreadable_timestamp"
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         int((fraction or "")[:6].ljust(6, "0")), tzinfo=UTC)
        return local - offset if sign == "+" else local + offset
    except (ValueError, OverflowError):  # 2026-02-30, 23:59:60, an instant before year 1
        return "unreadable_timestamp"


def range_bound(cutoff: str) -> str:
    """The query's upper bound: the cutoff plus the widest offset.

    A timestamp with a positive offset sorts by its local time, up to 14 h after its instant
    (``2026-10-28T15:00:00+14:00`` is 01:00Z and sorts after ``2026-10-28T02:00:00.000Z``).
    Comparing against the cutoff itself would miss it for ever; comparing against cutoff + 14 h
    selects every readable expired item (and some not yet due, which are kept: the decision
    is made per item, by instant). It suffices because an instant's text is fixed-width digits
    up to the seconds, then ``.`` and digits, or an offset whose ``+``/``-`` sorts before the
    bound's ``.``; a lower-case ``t``/``z`` or a space would sort apart, so those are not read.
    """
    return utc_timestamp(_cutoff_instant(cutoff) + MAX_UTC_OFFSET)


def _cutoff_instant(cutoff: str) -> datetime:
    instant = read_instant(cutoff)
    assert isinstance(instant, datetime), cutoff  # expiry_cutoff's own output
    return instant


def expired_items_query(key: PartitionKeyPath) -> str:
    """The id, the partition key value(s) and the timestamp; the bound is a parameter, never formatted in."""
    projections = (['c["id"] AS id'] + [f"{expression} AS pk{i}" for i, expression in enumerate(key.select_expressions())]
                   + ['c["timestamp"] AS ts'])
    return f'SELECT {", ".join(projections)} FROM c WHERE c["timestamp"] < @bound'


def partition_value(row: Mapping[str, Any], key: PartitionKeyPath) -> Any:
    from azure.cosmos.partition_key import NonePartitionKeyValue

    values = [row[f"pk{i}"] if f"pk{i}" in row else NonePartitionKeyValue for i in range(len(key.paths))]
    return values if key.hierarchical else values[0]


class CleanupFailed(TransientFailure):
    """The run could do nothing it was due to do; the next run retries. ``report`` says how far it got."""

    def __init__(self, message: str, report: CleanupReport) -> None:
        super().__init__(message)
        self.report = report


class _OutOfTime(Exception):
    """The run's deadline passed while something was in flight; it was cancelled."""


class _Cleanup:
    def __init__(self, container: ContainerProxy, cfg: CleanupSettings, log: InvocationLog, report: CleanupReport,
                 deadline: float, clock: Callable[[], float], throttle: ThrottleSignal | None = None) -> None:
        self.container = container
        self.cfg = cfg
        self.log = log
        self.report = report
        self.deadline = deadline
        self.clock = clock
        self.cutoff = _cutoff_instant(report.cutoff)
        #: Deletes in flight: at most CLEANUP_DELETE_CONCURRENCY, fewer while Cosmos DB throttles.
        self.in_flight = AdaptiveConcurrency(cfg.delete_concurrency, throttle, clock=clock)
        self.charge = RequestCharge()
        self.pass_not_yet_due = 0
        self.pass_skipped: Counter[str] = Counter()

    def deletes_left(self) -> int | None:
        if self.cfg.max_deletes is None:
            return None
        return max(0, self.cfg.max_deletes - self.report.progress - self.report.would_delete)

    @contextlib.asynccontextmanager
    async def within_budget(self) -> AsyncIterator[None]:
        """Cancel what runs inside at the deadline (read on ``clock``) and raise :class:`_OutOfTime`.

        Cancelling is what keeps the run inside its budget: a hung page fetch or delete (or a
        retry's backoff) otherwise holds the run until the SDK's own timeouts, page after page.
        """
        remaining = self.deadline - self.clock()
        if remaining <= 0:
            raise _OutOfTime
        scope = asyncio.timeout(remaining)
        try:
            async with scope:
                yield
        except TimeoutError:
            if scope.expired():
                raise _OutOfTime from None
            raise

    async def delete(self, row: Mapping[str, Any], key: PartitionKeyPath, budget: float) -> None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        policy = cosmos_delete_policy(budget)

        async def attempt() -> None:
            async with self.in_flight:  # held for the attempt, not for a retry's wait
                await self.container.delete_item(row["id"], partition_key=partition_value(row, key),
                                                 response_hook=self.charge)

        try:
            await retry_async(attempt, policy, clock=self.clock)
        except CosmosResourceNotFoundError:
            self.report.already_gone += 1
        except Exception as exc:  # noqa: BLE001 - counted and logged; the run goes on
            self.report.failed += 1
            if len(self.report.errors) < MAX_ERRORS_LOGGED:
                self.report.errors.append(describe_error(exc))
        else:
            self.report.deleted += 1

    async def one_pass(self, query: str, key: PartitionKeyPath) -> bool:
        """Run the query once, deleting page by page. False when the run must stop.

        The next page is fetched while the current one's deletes run, so the deletes never
        wait for a query round trip; at most two pages are held in memory.
        """
        bound: list[dict[str, object]] = [{"name": "@bound", "value": range_bound(self.report.cutoff)}]
        pages = self.container.query_items(query, parameters=bound, max_item_count=self.cfg.page_size,
                                           response_hook=self.charge).by_page()

        async def next_rows() -> list[Any] | None:
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                return None
            return [row async for row in page]

        self.pass_not_yet_due, self.pass_skipped = 0, Counter()
        upcoming: asyncio.Task[list[Any] | None] = asyncio.create_task(next_rows())
        try:
            while True:
                async with self.within_budget():
                    rows = await upcoming
                if rows is None:
                    return True
                upcoming = asyncio.create_task(next_rows())
                async with self.within_budget():
                    await self._handle_page(rows, key)
                if self.deletes_left() == 0:
                    self.report.stopped = "max_deletes"
                    return False
                if self.clock() >= self.deadline:
                    self.report.stopped = "time_budget"
                    return False
        except _OutOfTime:
            self.report.stopped = "time_budget"
            return False
        finally:
            # Nothing of this pass outlives it: the prefetch is cancelled and awaited, the pager closed.
            upcoming.cancel()
            await asyncio.wait({upcoming})
            if not upcoming.cancelled():
                upcoming.exception()  # retrieved: a prefetch that failed after the pass ended is moot
            aclose = getattr(pages, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            # Each pass sees the same kept and skipped items again: the largest pass is the count.
            self.report.not_yet_due = max(self.report.not_yet_due, self.pass_not_yet_due)
            for reason, count in self.pass_skipped.items():
                self.report.skipped[reason] = max(self.report.skipped.get(reason, 0), count)

    def _expired(self, row: Mapping[str, Any]) -> bool:
        instant = read_instant(row.get("ts"))
        if not isinstance(instant, datetime):
            self.pass_skipped[instant] += 1
            return False
        if instant >= self.cutoff:
            self.pass_not_yet_due += 1
            return False
        return True

    async def _handle_page(self, rows: list[Any], key: PartitionKeyPath) -> None:
        self.report.pages += 1
        self.report.scanned += len(rows)
        rows = [row for row in rows if self._expired(row)]
        left = self.deletes_left()
        if left is not None:
            rows = rows[:left]
        deleted, gone, failed = self.report.deleted, self.report.already_gone, self.report.failed
        # The page's timeout (within_budget) cancels these deletes at the deadline; the retry
        # budget only keeps a retry from planning a backoff past it.
        budget = max(self.deadline - self.clock(), 0.001)
        with telemetry.span("cleanup.page", attributes={"app.cleanup.page.number": self.report.pages,
                                                        "app.cleanup.page.items": len(rows)}) as page_span:
            if self.cfg.dry_run:
                self.report.would_delete += len(rows)
            else:
                # A task group: when the deadline cancels the page, every delete is cancelled and
                # awaited before the run goes on, so none outlives it.
                async with asyncio.TaskGroup() as deletes:
                    for row in rows:
                        deletes.create_task(self.delete(row, key, budget))
            page_span.set_attributes({"app.cleanup.page.deleted": self.report.deleted - deleted,
                                      "app.cleanup.page.already_gone": self.report.already_gone - gone,
                                      "app.cleanup.page.failed": self.report.failed - failed})


async def delete_expired_records(
    container: ContainerProxy,
    cfg: CleanupSettings,
    log: InvocationLog,
    *,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
    function_timeout: float | None = None,
    throttle: ThrottleSignal | None = None,
) -> CleanupReport:
    """Delete (or, in dry-run mode, count) every item whose timestamp is an instant before the cutoff.

    ``throttle`` is the Cosmos client's count of 429s: deletes in flight follow it
    (:class:`common.throttle.AdaptiveConcurrency`).

    Returns within its :func:`time_budget` of ``clock`` (plus the moment cancelling takes),
    with no task left running. Raises :class:`CleanupFailed` (a ``TransientFailure``) when the
    run could do nothing it was due to: every delete failed, or the budget ran out before any
    item was deleted (Cosmos DB hung). A query that fails before any progress raises the SDK's
    own error unchanged (``azure.cosmos.exceptions.CosmosHttpResponseError``,
    ``azure.core.exceptions.ServiceRequestError``...), as the error model wants. Never
    ``InvalidInput``: unreadable timestamps are summarized in ``report.skipped``.
    """
    report = CleanupReport(cutoff=expiry_cutoff(now or datetime.now(UTC), cfg.retention_days), dry_run=cfg.dry_run)
    budget = time_budget(cfg.time_budget_seconds, function_timeout)
    job = _Cleanup(container, cfg, log, report, clock() + budget, clock, throttle)
    try:
        async with job.within_budget():
            key = await partition_key_of(container)
    except _OutOfTime:
        report.stopped = "time_budget"
        raise CleanupFailed("Cosmos DB did not return the container's properties within the time budget "
                            f"({budget:g} s); the next run retries", report) from None
    query = expired_items_query(key)
    while report.passes < MAX_PASSES:
        progress_before = report.progress
        report.passes += 1
        try:
            go_on = await job.one_pass(query, key)
        except Exception as exc:
            if report.progress == 0 and report.would_delete == 0:
                raise  # nothing done: fail the invocation so it is seen and retried next run
            report.stopped = "error"
            report.errors.append(describe_error(exc))
            break
        # Another pass only if this one deleted something: it confirms nothing was skipped while
        # pages moved under the deletes, and retries what failed. Dry runs never delete, so one pass.
        if not go_on or cfg.dry_run or report.progress == progress_before:
            break
    else:
        # Every pass deleted something, the last one too: items were still arriving or moving
        # under the deletes. The next run goes on; say so.
        report.stopped = "max_passes"
    report.request_charge = job.charge.total
    if report.failed and report.progress == 0:
        # Items were due and not one could be deleted (a missing role, Cosmos refusing writes):
        # fail the invocation so the failure is seen, as when the query itself fails.
        raise CleanupFailed(f"{report.failed} deletes failed and none succeeded; first error: {report.errors[0]}",
                            report)
    if report.stopped == "time_budget" and report.progress == 0 and report.would_delete == 0:
        raise CleanupFailed(f"nothing was deleted within the time budget ({budget:g} s): "
                            "Cosmos DB hung or answered too slowly; the next run retries", report)
    return report


async def run_cleanup(*, cfg: CleanupSettings, log: InvocationLog, container: ContainerProxy,
                      throttle: ThrottleSignal | None = None, function_timeout: float | None = None) -> CleanupReport:
    """The timer's work: clean up, then log one summary line (``cleanup.completed`` or ``cleanup.failed``).

    Raises what :func:`delete_expired_records` raises: :class:`CleanupFailed` (a
    ``TransientFailure``: the timer run fails, the next run resumes) or, when the query fails
    before any progress, the Cosmos SDK's own error. ``throttle`` is ``container``'s count of
    429s (deletes in flight follow it).
    """
    started = time.perf_counter()
    try:
        report = await delete_expired_records(container, cfg, log, function_timeout=function_timeout,
                                              throttle=throttle)
    except Exception as exc:
        fields = exc.report.summary() if isinstance(exc, CleanupFailed) else {}
        log.error("cleanup.failed", **fields, error=describe_error(exc),
                  durationMs=elapsed_ms(started))
        raise
    elapsed = time.perf_counter() - started
    for outcome, amount in (("deleted", report.deleted), ("already_gone", report.already_gone),
                            ("failed", report.failed), ("would_delete", report.would_delete)):
        telemetry.count("app.cleanup.items", amount, outcome=outcome)
    for reason, amount in report.skipped.items():
        telemetry.count("app.cleanup.items", amount, outcome="skipped", reason=reason)
    telemetry.record_duration("app.cleanup.duration", elapsed, stopped=report.stopped)
    healthy = report.failed == 0 and not report.skipped and report.stopped in ("done", "max_deletes")
    (log.info if healthy else log.warning)(
        "cleanup.completed", retentionDays=cfg.retention_days, **report.summary(),
        durationMs=round(elapsed * 1000, 3),
        deletesPerSecond=round(report.deleted / elapsed, 1) if elapsed > 0 else None,
    )
    return report
