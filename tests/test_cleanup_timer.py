from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

import CleanupTimer
from CleanupTimer.cleanup import delete_expired_records, expired_items_query, expiry_cutoff, run_cleanup
from common.cosmos import PartitionKeyPath
from common.logs import bind_invocation
from common.settings import CleanupSettings
from tests.conftest import FakeContext
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


def test_query_selects_only_id_and_partition_key_with_a_parameter() -> None:
    query = expired_items_query(PartitionKeyPath(("/metadata/source",)))
    assert query == 'SELECT c["id"] AS id, c["metadata"]["source"] AS pk0 FROM c WHERE c["timestamp"] < @cutoff'
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

    from common import clients

    container = FakeContainer()
    await seed(container, expired=3, fresh=2)
    monkeypatch.setattr(clients, "cosmos_container", lambda: container)
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
        await run_cleanup(cfg=CFG, log=bind_invocation(FakeContext()), container=container)  # type: ignore[arg-type]
    assert "cleanup.failed" in caplog.text


async def test_a_run_where_every_delete_fails_fails_the_invocation() -> None:
    from CleanupTimer.cleanup import CleanupFailed

    container = FakeContainer()
    await seed(container, expired=12, fresh=0)
    container.failures["delete"] = [cosmos_error(403, "Request blocked by Auth") for _ in range(12)]
    with pytest.raises(CleanupFailed, match="12 deletes failed and none succeeded"):
        await clean(container)
