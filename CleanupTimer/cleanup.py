"""Retention cleanup: delete items whose ``timestamp`` is older than the retention window.

Safe: a parameterized query selects only what a delete needs (the id and the
partition key value); a delete that answers 404 counts as already gone, so
overlapping runs and Cosmos DB's own TTL cannot corrupt anything. Bounded:
page by page with bounded concurrency, never holding the backlog in memory,
and it stops taking pages before its time budget (derived from host.json's
``functionTimeout``) or ``CLEANUP_MAX_DELETES`` runs out; the next run
continues. Cheap: projections instead of ``SELECT *``, one query pass plus
an empty confirming one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from common import telemetry
from common.cosmos import PartitionKeyPath, RequestCharge, partition_key_of
from common.logs import InvocationLog, describe_error
from common.retry import RetryPolicy, retry_async
from common.settings import CleanupSettings

if TYPE_CHECKING:
    from azure.cosmos.aio import ContainerProxy

StopReason = Literal["done", "time_budget", "max_deletes", "error"]
#: A new pass runs only while the last one deleted something (bounded all the same).
MAX_PASSES = 5
MAX_ERRORS_LOGGED = 5


@dataclass
class CleanupReport:
    cutoff: str
    dry_run: bool
    scanned: int = 0
    deleted: int = 0
    already_gone: int = 0
    failed: int = 0
    would_delete: int = 0
    pages: int = 0
    passes: int = 0
    request_charge: float = 0.0
    stopped: StopReason = "done"
    errors: list[str] = field(default_factory=list)

    @property
    def progress(self) -> int:
        return self.deleted + self.already_gone


def expiry_cutoff(now: datetime, retention_days: int) -> str:
    """ISO-8601 UTC with Z, comparable as a string with the items' timestamps."""
    cutoff = now.astimezone(UTC) - timedelta(days=retention_days)
    return cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def expired_items_query(key: PartitionKeyPath) -> str:
    """Only the id and the partition key value(s); the cutoff is a parameter, never formatted in."""
    projections = ['c["id"] AS id'] + [f"{expression} AS pk{i}" for i, expression in enumerate(key.select_expressions())]
    return f'SELECT {", ".join(projections)} FROM c WHERE c["timestamp"] < @cutoff'


def partition_value(row: Mapping[str, Any], key: PartitionKeyPath) -> Any:
    from azure.cosmos.partition_key import NonePartitionKeyValue

    values = [row[f"pk{i}"] if f"pk{i}" in row else NonePartitionKeyValue for i in range(len(key.paths))]
    return values if key.hierarchical else values[0]


class CleanupFailed(RuntimeError):
    """The run could do nothing it was due to do."""


class _Cleanup:
    def __init__(self, container: ContainerProxy, cfg: CleanupSettings, log: InvocationLog, report: CleanupReport,
                 deadline: float, clock: Callable[[], float]) -> None:
        self.container = container
        self.cfg = cfg
        self.log = log
        self.report = report
        self.deadline = deadline
        self.clock = clock
        self.semaphore = asyncio.Semaphore(cfg.delete_concurrency)
        self.charge = RequestCharge()

    def deletes_left(self) -> int | None:
        if self.cfg.max_deletes is None:
            return None
        return max(0, self.cfg.max_deletes - self.report.progress - self.report.would_delete)

    async def delete(self, row: Mapping[str, Any], key: PartitionKeyPath) -> None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        budget = self.deadline - self.clock()
        policy = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=10.0, total_budget=max(1.0, budget))
        async with self.semaphore:
            try:
                await retry_async(
                    lambda: self.container.delete_item(row["id"], partition_key=partition_value(row, key),
                                                       response_hook=self.charge),
                    policy,
                )
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
        cutoff: list[dict[str, object]] = [{"name": "@cutoff", "value": self.report.cutoff}]
        pages = self.container.query_items(query, parameters=cutoff, max_item_count=self.cfg.page_size,
                                           response_hook=self.charge).by_page()

        async def next_rows() -> list[Any] | None:
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                return None
            return [row async for row in page]

        upcoming: asyncio.Future[list[Any] | None] = asyncio.ensure_future(next_rows())
        try:
            while (rows := await upcoming) is not None:
                upcoming = asyncio.ensure_future(next_rows())
                await self._handle_page(rows, key)
                if self.deletes_left() == 0:
                    self.report.stopped = "max_deletes"
                    return False
                if self.clock() >= self.deadline:
                    self.report.stopped = "time_budget"
                    return False
            return True
        finally:
            if not upcoming.done():
                upcoming.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await upcoming

    async def _handle_page(self, rows: list[Any], key: PartitionKeyPath) -> None:
        self.report.pages += 1
        self.report.scanned += len(rows)
        left = self.deletes_left()
        if left is not None:
            rows = rows[:left]
        deleted, gone, failed = self.report.deleted, self.report.already_gone, self.report.failed
        with telemetry.span("cleanup.page", attributes={"app.cleanup.page.number": self.report.pages,
                                                        "app.cleanup.page.items": len(rows)}) as page_span:
            if self.cfg.dry_run:
                self.report.would_delete += len(rows)
            else:
                await asyncio.gather(*(self.delete(row, key) for row in rows))
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
) -> CleanupReport:
    """Delete (or, in dry-run mode, count) every item older than the retention window."""
    report = CleanupReport(cutoff=expiry_cutoff(now or datetime.now(UTC), cfg.retention_days), dry_run=cfg.dry_run)
    key = await partition_key_of(container)
    query = expired_items_query(key)
    job = _Cleanup(container, cfg, log, report, clock() + cfg.time_budget_seconds, clock)
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
    report.request_charge = job.charge.total
    if report.failed and report.progress == 0:
        # Items were due and not one could be deleted (a missing role, Cosmos refusing writes):
        # fail the invocation so the failure is seen, as when the query itself fails.
        raise CleanupFailed(f"{report.failed} deletes failed and none succeeded; first error: {report.errors[0]}")
    return report


async def run_cleanup(*, cfg: CleanupSettings, log: InvocationLog, container: ContainerProxy | None = None) -> CleanupReport:
    """The timer's work: clean up, then log one summary line."""
    from common import clients

    started = time.perf_counter()
    container = container if container is not None else clients.cosmos_container()
    try:
        report = await delete_expired_records(container, cfg, log)
    except Exception as exc:
        log.error("cleanup.failed", error=describe_error(exc), durationMs=round((time.perf_counter() - started) * 1000, 3))
        raise
    elapsed = time.perf_counter() - started
    for outcome, amount in (("deleted", report.deleted), ("already_gone", report.already_gone),
                            ("failed", report.failed), ("would_delete", report.would_delete)):
        telemetry.count("app.cleanup.items", amount, outcome=outcome)
    telemetry.record_duration("app.cleanup.duration", elapsed, stopped=report.stopped)
    level = log.info if report.failed == 0 and report.stopped in ("done", "max_deletes") else log.warning
    level(
        "cleanup.completed",
        retentionDays=cfg.retention_days, cutoff=report.cutoff, dryRun=report.dry_run,
        scanned=report.scanned, deleted=report.deleted, alreadyGone=report.already_gone, failed=report.failed,
        wouldDelete=report.would_delete, pages=report.pages, passes=report.passes, stopped=report.stopped,
        moreRemain=report.stopped in ("time_budget", "max_deletes", "error") or report.failed > 0,
        requestCharge=round(report.request_charge, 2), durationMs=round(elapsed * 1000, 3),
        deletesPerSecond=round(report.deleted / elapsed, 1) if elapsed > 0 else None,
        errors=report.errors,
    )
    return report
