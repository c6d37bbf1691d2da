from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

import CleanupTimer
from common.cosmos import PartitionKeyPath
from common.errors import TransientFailure
from common.logs import bind_invocation
from common.settings import CleanupSettings
from retention.cleanup import CleanupFailed, delete_expired_records, expired_items_query, expiry_cutoff, run_cleanup
from tests.conftest import FakeContext, use_fake_clients
from tests.fakes import FakeContainer, cosmos_error

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
CFG = CleanupSettings(retention_days=30, max_deletes=None, dry_run=False, delete_concurrency=8, page_size=25,
                      time_budget_seconds=300.0)


def stamp(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def seed(container: FakeContainer, expired: int, fresh: int) -> None:
    """Expired and fresh items interleaved, across many sources."""
    for i in range(max(expired, fresh)):
        if i < expired:
            await container.upsert_item({"id": f"old-{i}", "timestamp": stamp(31 + i % 5),
                                         "metadata": {"source": f"s{i % 7}", "type": "t"}})
        if i < fresh:
            await container.upsert_item({"id": f"new-{i}", "timestamp": stamp(29 - i % 5),
                                         "metadata": {"source": f"s{i % 7}", "type": "t"}})


async def clean(container: FakeContainer, cfg: CleanupSettings = CFG, **kwargs):  # noqa: ANN003, ANN201
    return await delete_expired_records(container, cfg, bind_invocation(FakeContext()), now=NOW, **kwargs)


def test_cutoff_is_utc_iso_with_z() -> None:
    assert expiry_cutoff(NOW, 30) == "2026-10-28T02:00:00.000Z"


def test_query_selects_only_id_partition_key_and_timestamp_with_a_parameter() -> None:
    query = expired_items_query(PartitionKeyPath(("/metadata/source",)))
    assert query == ('SELECT c["id"] AS id, c["metadata"]["source"] AS pk0, c["timestamp"] AS ts '
                     'FROM c WHERE c["timestamp"] < @bound')
    assert "SELECT *" not in query and "2026" not in query


@pytest.mark.parametrize("paths", [("/id",), ("/metadata/source",)])
async def test_expired_items_are_deleted_and_fresh_ones_kept(paths: tuple[str, ...]) -> None:
    container = FakeContainer(paths)
    await seed(container, expired=130, fresh=60)
    report = await clean(container)
    assert (report.deleted, report.already_gone, report.failed) == (130, 0, 0)
    assert sorted(k[0] for k in container.items) == sorted(f"new-{i}" for i in range(60))
    assert report.scanned == 130 and report.pages >= 130 // CFG.page_size
    assert report.stopped == "done"
    assert report.request_charge > 0


async def test_second_run_finds_nothing() -> None:
    container = FakeContainer()
    await seed(container, expired=40, fresh=5)
    await clean(container)
    again = await clean(container)
    assert (again.scanned, again.deleted) == (0, 0)


async def test_dry_run_counts_but_deletes_nothing() -> None:
    container = FakeContainer()
    await seed(container, expired=60, fresh=10)
    report = await clean(container, replace(CFG, dry_run=True))
    assert (report.would_delete, report.deleted, report.passes) == (60, 0, 1)
    assert len(container.items) == 70 and container.calls["delete"] == 0


async def test_max_deletes_bounds_a_run_and_the_next_continues() -> None:
    container = FakeContainer()
    await seed(container, expired=100, fresh=0)
    first = await clean(container, replace(CFG, max_deletes=30))
    assert (first.deleted, first.stopped) == (30, "max_deletes")
    second = await clean(container, replace(CFG, max_deletes=1000))
    assert second.deleted == 70 and len(container.items) == 0


async def test_deletes_are_concurrent_and_bounded() -> None:
    container = FakeContainer()
    container.delay = 0.002
    await seed(container, expired=80, fresh=0)
    container.delay = 0.005
    await clean(container)
    assert container.max_in_flight == CFG.delete_concurrency


async def test_404_counts_as_already_gone() -> None:
    container = FakeContainer()
    await seed(container, expired=10, fresh=0)
    container.failures["delete"] = [cosmos_error(404), cosmos_error(404)]
    report = await clean(container)
    # The two "gone" answers leave their items in the fake; the confirming pass deletes them.
    assert (report.already_gone, report.deleted, report.failed) == (2, 10, 0)
    assert report.passes == 3


async def test_throttled_deletes_back_off_and_succeed() -> None:
    container = FakeContainer()
    await seed(container, expired=5, fresh=0)
    container.failures["delete"] = [cosmos_error(429, retry_after_ms=20) for _ in range(3)]
    report = await clean(container)
    assert (report.deleted, report.failed) == (5, 0)
    assert container.calls["delete"] == 8


async def test_time_budget_stops_taking_pages() -> None:
    container = FakeContainer()
    await seed(container, expired=100, fresh=0)
    # Each page of deletes "takes" 100 s: the budget of 150 s allows a second page, not a third.
    report = await clean(container, replace(CFG, time_budget_seconds=150.0),
                         clock=lambda: 100.0 * container.calls["delete"] / CFG.page_size)
    assert report.stopped == "time_budget"
    assert report.deleted == 2 * CFG.page_size
    assert len(container.items) == 100 - 2 * CFG.page_size


async def test_a_failing_query_with_no_progress_fails_the_invocation() -> None:
    container = FakeContainer()
    container.failures["query"] = [cosmos_error(403, "Request blocked by Auth")]
    with pytest.raises(Exception) as info:
        await clean(container)
    assert getattr(info.value, "status_code", None) == 403


async def test_partial_progress_never_fails_the_invocation() -> None:
    container = FakeContainer()
    await seed(container, expired=60, fresh=0)
    container.failures["query"] = [None, cosmos_error(503)]  # type: ignore[list-item]

    original = container._operation

    async def operation(name: str) -> None:
        if name == "query" and container.failures["query"] and container.failures["query"][0] is None:
            container.failures["query"].pop(0)
            container.calls["query"] += 1
            return
        await original(name)

    container._operation = operation  # type: ignore[method-assign]
    report = await clean(container)
    assert report.deleted == CFG.page_size and report.stopped == "error"


async def test_permanent_delete_errors_are_counted_not_raised() -> None:
    container = FakeContainer()
    await seed(container, expired=10, fresh=0)
    container.failures["delete"] = [cosmos_error(400, "bad request")]
    report = await clean(container)
    # Counted once; the next pass (the run made progress) retries the item and deletes it.
    assert (report.failed, report.deleted) == (1, 10)
    assert report.errors and "400" in report.errors[0]


async def test_main_logs_past_due_and_a_summary(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    from azure.functions.timer import TimerRequest

    container = FakeContainer()
    # main() reads the real clock: the items are dated from it, the fresh ones well after the
    # cutoff (within 14 h of it they would be read by the widened range, and kept).
    now = datetime.now(UTC)
    for i, days_ago in enumerate((31, 32, 33, 3, 4)):
        await container.upsert_item({"id": f"i{i}", "timestamp": (now - timedelta(days=days_ago)).isoformat()})
    use_fake_clients(monkeypatch, cosmos=container)
    with caplog.at_level(logging.INFO):
        await CleanupTimer.main(TimerRequest(past_due=True), FakeContext(function_name="CleanupTimer"))
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name.startswith("app.")]
    assert events[0]["event"] == "cleanup.past_due"
    summary = events[-1]
    assert summary["event"] == "cleanup.completed"
    assert (summary["deleted"], summary["scanned"], summary["failed"], summary["dryRun"]) == (3, 3, 0, False)
    assert summary["requestCharge"] > 0 and "durationMs" in summary and summary["moreRemain"] is False


async def test_run_cleanup_failure_is_logged_and_raised(caplog: pytest.LogCaptureFixture) -> None:
    container = FakeContainer()
    container.failures["query"] = [cosmos_error(401, "unauthorized")]
    from azure.cosmos.exceptions import CosmosHttpResponseError

    with caplog.at_level(logging.ERROR), pytest.raises(CosmosHttpResponseError):
        await run_cleanup(cfg=CFG, log=bind_invocation(FakeContext()), container=container)
    assert "cleanup.failed" in caplog.text


async def test_a_run_where_every_delete_fails_fails_the_invocation() -> None:
    container = FakeContainer()
    await seed(container, expired=12, fresh=0)
    container.failures["delete"] = [cosmos_error(403, "Request blocked by Auth") for _ in range(12)]
    with pytest.raises(CleanupFailed, match="12 deletes failed and none succeeded") as info:
        await clean(container)
    assert isinstance(info.value, TransientFailure)  # the error model: the next run retries


# ----------------------------------------------------------------- timestamps are read as instants
# NOW's cutoff is 2026-10-28T02:00:00.000Z; the query's range reaches 14 h past it.

async def put(container: FakeContainer, item_id: str, timestamp: object = None, *, missing: bool = False) -> None:
    item: dict[str, object] = {"id": item_id, "metadata": {"source": "s", "type": "t"}}
    if not missing:
        item["timestamp"] = timestamp
    await container.upsert_item(item)


def left(container: FakeContainer) -> set[str]:
    return {key[0] for key in container.items}


async def test_unreadable_timestamps_are_never_deleted_and_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    container = FakeContainer()
    no_offset = ["2020-01-01T00:00:00", "2020-01-01T00:00:00.123456", "2020-01-01 00:00:00", "2020-01-01T00:00"]
    unreadable = ["", " ", "\t", "1", "12", "1700000000", "1700000000000", "2020-01-01", "01/02/2020",
                  "2020/01/01 00:00:00", "2020-01-01 00:00:00Z", "2020-01-01t00:00:00z", "2020-02-30T00:00:00Z",
                  "1999-12-31T23:59:60Z", "2020-01-01T00:00:00+15:00", "2020-01-01T00:00:00+0100",
                  "2020-01-01T00:00:00 Z", "2020-01-01T00:00:00.Z", "2020-01-01T00:00:00Z\n"]
    for i, stamp_text in enumerate(no_offset + unreadable):
        await put(container, f"bad-{i}", stamp_text)
    # Never selected by the range (not strings, or sorting after it): never deleted, not counted.
    unseen = [1_600_000_000, 1.6e9, None, True, ["2020-01-01T00:00:00Z"], "Wed, 01 Jan 2020 00:00:00 GMT",
              "٢٠٢٠-01-01T00:00:00Z"]
    for i, value in enumerate(unseen):
        await put(container, f"unseen-{i}", value)
    await put(container, "unseen-missing", missing=True)
    await put(container, "expired", "2020-01-01T00:00:00.000Z")
    await put(container, "fresh", stamp(1))

    report = await clean(container)

    assert left(container) == ({f"bad-{i}" for i in range(len(no_offset) + len(unreadable))}
                               | {f"unseen-{i}" for i in range(len(unseen))} | {"unseen-missing", "fresh"})
    # Two passes read the skipped items (the first deleted something): each is counted once.
    assert report.passes == 2
    assert report.skipped == {"no_utc_offset": len(no_offset), "unreadable_timestamp": len(unreadable)}
    assert (report.deleted, report.failed, report.not_yet_due, report.stopped) == (1, 0, 0, "done")
    assert report.more_remain is False  # no later run will delete them: that is for a person to fix

    with caplog.at_level(logging.INFO):
        await run_cleanup(cfg=CFG, log=bind_invocation(FakeContext()), container=container)
    [summary] = [json.loads(r.getMessage()) for r in caplog.records if "cleanup.completed" in r.getMessage()]
    assert summary["skipped"] == {"no_utc_offset": len(no_offset), "unreadable_timestamp": len(unreadable)}
    assert summary["deleted"] == 0 and summary["moreRemain"] is False
    assert [r.levelname for r in caplog.records if "cleanup.completed" in r.getMessage()] == ["WARNING"]


async def test_offset_timestamps_are_compared_as_instants() -> None:
    container = FakeContainer()
    expired = {
        "plus14": "2026-10-28T15:59:00+14:00",            # 01:59Z; as text it sorts after the cutoff
        "plus1": "2026-10-28T02:30:00+01:00",             # 01:30Z
        "plus14-tie": "2026-10-28T15:59:59.9995+14:00",   # same second as the range's bound, before it
        "z-last-ms": "2026-10-28T01:59:59.999Z",
        "z-9-digits": "2026-10-28T01:59:59.999999999Z",
        "minus5": "2026-10-27T20:59:59-05:00",            # 01:59:59Z
        "no-fraction": "2026-10-28T01:59:59Z",
    }
    kept = {
        "minus5": "2026-10-27T22:00:00-05:00",            # 03:00Z; as text it sorts before the cutoff
        "at-cutoff": "2026-10-28T02:00:00.000Z",
        "at-cutoff-no-fraction": "2026-10-28T02:00:00Z",
        "plus14-at-cutoff": "2026-10-28T16:00:00+14:00",
        "minus-zero": "2026-10-28T02:00:00.000-00:00",
        "minus12": "2026-10-27T14:00:00.001-12:00",       # 02:00:00.001Z
        "plus5-30": "2026-10-28T07:30:00.0000001+05:30",  # 02:00:00.0000001Z
    }
    for name, text in expired.items():
        await put(container, f"expired-{name}", text)
    for name, text in kept.items():
        await put(container, f"kept-{name}", text)
    report = await clean(container)
    assert left(container) == {f"kept-{name}" for name in kept}
    assert (report.deleted, report.skipped, report.stopped) == (len(expired), {}, "done")
    assert report.not_yet_due == len(kept)  # all sort inside the widened range, and are kept

    dry = FakeContainer()
    for name, text in {**expired, **{f"k{n}": t for n, t in kept.items()}}.items():
        await put(dry, name, text)
    assert (await clean(dry, replace(CFG, dry_run=True))).would_delete == len(expired)


# ----------------------------------------------------------------- the time budget holds when Cosmos DB hangs

MARGIN = 1.0  # seconds past the budget a run may take to cancel what is in flight


def other_tasks() -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def seed_ancient(container: FakeContainer, count: int) -> None:
    for i in range(count):
        await put(container, f"old-{i}", "2001-01-01T00:00:00.000Z")


async def test_a_hung_delete_cannot_overrun_the_budget(caplog: pytest.LogCaptureFixture) -> None:
    # The defaults (200 a page, 16 in flight): before the fix every hung round of 16 deletes
    # took its own budget again, page after page.
    cfg = replace(CFG, page_size=200, delete_concurrency=16, time_budget_seconds=1.5)
    container = FakeContainer()
    await seed_ancient(container, 500)
    container.hang_after["delete"] = 40
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        report = await run_cleanup(cfg=cfg, log=bind_invocation(FakeContext()), container=container)
    elapsed = time.monotonic() - started
    assert cfg.time_budget_seconds is not None
    assert elapsed < cfg.time_budget_seconds + MARGIN, elapsed
    assert (report.stopped, report.deleted, report.failed) == ("time_budget", 40, 0)
    assert container.hanging == 0 and container.abandoned == 16 and not other_tasks()
    assert len(container.items) == 460  # the rest is the next run's
    [summary] = [json.loads(r.getMessage()) for r in caplog.records if "cleanup.completed" in r.getMessage()]
    assert (summary["stopped"], summary["moreRemain"]) == ("time_budget", True)


async def test_a_hung_query_page_cannot_overrun_the_budget() -> None:
    cfg = replace(CFG, page_size=25, time_budget_seconds=1.0)
    container = FakeContainer()
    await seed_ancient(container, 100)
    container.hang_after["query"] = 1  # the first page answers; the next fetch never does
    started = time.monotonic()
    report = await clean(container, cfg)
    elapsed = time.monotonic() - started
    assert cfg.time_budget_seconds is not None
    assert elapsed < cfg.time_budget_seconds + MARGIN, elapsed
    assert (report.stopped, report.more_remain, report.deleted) == ("time_budget", True, 25)
    assert container.hanging == 0 and container.abandoned == 1 and not other_tasks()


async def test_retrying_deletes_cannot_overrun_the_budget() -> None:
    cfg = replace(CFG, page_size=200, delete_concurrency=16, time_budget_seconds=1.0)
    container = FakeContainer()
    await seed_ancient(container, 300)
    container.failures["delete"] = [cosmos_error(503) for _ in range(5000)]  # backs off up to 10 s each
    started = time.monotonic()
    with pytest.raises(CleanupFailed) as info:
        await clean(container, cfg)
    elapsed = time.monotonic() - started
    assert cfg.time_budget_seconds is not None
    assert elapsed < cfg.time_budget_seconds + MARGIN, elapsed
    assert info.value.report.more_remain and not other_tasks() and len(container.items) == 300


@pytest.mark.parametrize("operation", ["read", "query", "delete"])
async def test_a_run_that_hangs_before_any_progress_fails_as_transient(operation: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    cfg = replace(CFG, time_budget_seconds=1.0)
    container = FakeContainer()
    await seed_ancient(container, 30)
    container.hang_after[operation] = 0
    started = time.monotonic()
    with caplog.at_level(logging.INFO), pytest.raises(CleanupFailed) as info:
        await run_cleanup(cfg=cfg, log=bind_invocation(FakeContext()), container=container)
    elapsed = time.monotonic() - started
    assert cfg.time_budget_seconds is not None
    assert elapsed < cfg.time_budget_seconds + MARGIN, elapsed
    assert isinstance(info.value, TransientFailure)
    assert container.hanging == 0 and container.abandoned >= 1 and not other_tasks()
    assert len(container.items) == 30
    [failed] = [json.loads(r.getMessage()) for r in caplog.records if "cleanup.failed" in r.getMessage()]
    assert (failed["stopped"], failed["moreRemain"], failed["deleted"]) == ("time_budget", True, 0)


async def test_a_run_whose_every_pass_deleted_something_says_more_remain(monkeypatch: pytest.MonkeyPatch) -> None:
    from retention import cleanup

    monkeypatch.setattr(cleanup, "MAX_PASSES", 1)  # no confirming pass left to prove the backlog empty
    container = FakeContainer()
    await seed(container, expired=10, fresh=2)
    report = await clean(container)
    assert report.deleted == 10 and report.stopped == "max_passes" and report.more_remain
