"""Properties of CleanupTimer's retention cleanup, over generated item timestamps.

Items carry RFC 3339 instants with random offsets and precisions around the cutoff, and every
kind of timestamp that is not one: no offset, another format, a bare or epoch number as a
string, empty and blank strings, junk text, numbers, null, other JSON types, no field at all.
The oracle below knows what each generated timestamp is (it built it), and what the widened
range selects (the service compares strings by code point, only with strings).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from common import cosmos
from common.logs import bind_invocation
from common.settings import CleanupSettings
from retention.cleanup import CleanupFailed, CleanupReport, delete_expired_records, read_instant
from tests.conftest import FakeContext
from tests.fakes import FakeContainer, cosmos_error

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
CUTOFF = datetime(2026, 10, 28, 2, 0, tzinfo=UTC)  # NOW less 30 days
#: The query's range: strings below the cutoff plus the widest UTC offset (+14:00).
BOUND = "2026-10-28T16:00:00.000Z"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CUTOFF_US = (CUTOFF - EPOCH) // timedelta(microseconds=1)
DAY_US = 86_400_000_000
#: What counts as an instant (the module's docstring): used here only to keep junk text from being one.
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", re.ASCII)
MISSING = object()


@dataclass(frozen=True)
class Stamp:
    value: object  # MISSING: the item has no timestamp field
    #: The instant in microseconds since 1970 (fraction digits past microseconds dropped), or None.
    instant_us: int | None = None

    @property
    def expired(self) -> bool:
        return self.instant_us is not None and self.instant_us < CUTOFF_US

    @property
    def selected(self) -> bool:
        return isinstance(self.value, str) and self.value < BOUND


def local_text(local: datetime, precision: int, extra_digits: str, separator: str = "T") -> str:
    text = local.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    if precision:
        text += "." + (f"{local.microsecond:06d}" + extra_digits)[:precision]
    return text


deltas = st.one_of(st.sampled_from([-1, 0, 1, -1000, 1000, -DAY_US, DAY_US]),
                   st.integers(-2 * DAY_US, 2 * DAY_US), st.integers(-40 * 365 * DAY_US, 40 * 365 * DAY_US))
offsets = st.one_of(st.sampled_from([0, 14 * 60, -14 * 60, 330, 345, -570]), st.integers(-14 * 60, 14 * 60))


@st.composite
def instants(draw: st.DrawFn) -> Stamp:
    precision = draw(st.integers(0, 9))
    instant_us = CUTOFF_US + draw(deltas)
    if precision < 6:
        instant_us -= instant_us % 10 ** (6 - precision)
    offset = draw(offsets)
    local = EPOCH + timedelta(microseconds=instant_us, minutes=offset)
    extra = draw(st.text("0123456789", min_size=3, max_size=3))
    if offset == 0:
        suffix = draw(st.sampled_from(["Z", "+00:00", "-00:00"]))
    else:
        suffix = f"{'+' if offset > 0 else '-'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    return Stamp(local_text(local, precision, extra) + suffix, instant_us)


@st.composite
def near_misses(draw: st.DrawFn) -> Stamp:
    """Almost an instant: no offset, lower case, a space, an impossible date or offset, no seconds,
    a leap second (RFC 3339 allows :60; datetime cannot hold it, so it is not read)."""
    good = draw(instants())
    text = str(good.value)
    head, tail = text[:19], text[19:]
    broken = draw(st.sampled_from([
        text[:19], text[:19] + tail.split("Z")[0].split("+")[0].split("-")[0], text[:16],  # no offset
        text[:10] + " " + text[11:], text[:10] + "t" + text[11:], head + "z", text[:16] + "Z",
        head + "+14:01", head + "-15:00", head + "+23:59", head + "+0100", head + " Z", head + ".Z",
        "2026-02-30" + text[10:], text[:11] + "24:00:00Z", text[:17] + "60Z", text + "\n", " " + text,
    ]))
    return Stamp(broken)


other_formats = st.sampled_from(["%d/%m/%Y", "%m/%d/%Y %H:%M", "%Y/%m/%d %H:%M:%S", "%a, %d %b %Y %H:%M:%S GMT",
                                 "%Y-%m-%d", "%Y%m%dT%H%M%SZ", "%d.%m.%Y", "%Y-%j"])
around_cutoff = st.datetimes(min_value=datetime(2026, 9, 1), max_value=datetime(2026, 12, 31))
epoch_seconds = st.integers(-2 * DAY_US, 2 * DAY_US).map(lambda d: (CUTOFF_US + d) // 1_000_000)

not_instants = st.one_of(
    near_misses(),
    st.builds(lambda moment, fmt: Stamp(moment.strftime(fmt)), around_cutoff, other_formats),
    epoch_seconds.map(lambda s: Stamp(str(s))), epoch_seconds.map(lambda s: Stamp(str(s * 1000))),
    st.integers(0, 999).map(lambda n: Stamp(str(n))), st.floats(0, 1e10).map(lambda f: Stamp(str(f))),
    st.text(" \t\r\n\u00a0\u2003", max_size=4).map(Stamp),  # empty and blank
    st.text(max_size=25).filter(lambda s: not RFC3339.fullmatch(s)).map(Stamp),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.lists(st.integers(), max_size=2), epoch_seconds).map(Stamp),
    st.just(Stamp(MISSING)),
)
stamps = st.lists(st.one_of(instants(), instants(), not_instants), max_size=25)
layouts = st.fixed_dictionaries({"paths": st.sampled_from([("/id",), ("/metadata/source",)]),
                                 "page_size": st.integers(1, 8), "concurrency": st.integers(1, 4),
                                 "dry_run": st.booleans()})


def settings_for(layout: dict, budget: float = 300.0) -> CleanupSettings:
    return CleanupSettings(retention_days=30, max_deletes=None, dry_run=layout["dry_run"],
                           delete_concurrency=layout["concurrency"], page_size=layout["page_size"],
                           time_budget_seconds=budget)


async def filled(layout: dict, items: list[Stamp]) -> FakeContainer:
    cosmos.reset()  # the partition key is cached per container name: each example has its own
    container = FakeContainer(layout["paths"])
    for i, stamp in enumerate(items):
        item: dict[str, object] = {"id": f"item-{i}", "metadata": {"source": f"s{i % 3}", "type": "t"}}
        if stamp.value is not MISSING:
            item["timestamp"] = stamp.value
        await container.upsert_item(item)
    return container


def ids(container: FakeContainer) -> set[str]:
    return {key[0] for key in container.items}


@given(stamps)
def test_only_rfc3339_with_an_offset_reads_as_an_instant(items: list[Stamp]) -> None:
    for stamp in items:
        instant = read_instant(stamp.value if stamp.value is not MISSING else None)
        if stamp.instant_us is None:
            assert not isinstance(instant, datetime), stamp
        else:
            assert instant == EPOCH + timedelta(microseconds=stamp.instant_us), stamp


@given(stamps, layouts)
def test_cleanup_deletes_exactly_the_expired_instants_and_accounts_for_every_item(items: list[Stamp],
                                                                                layout: dict) -> None:
    async def run() -> tuple[CleanupReport, set[str]]:
        container = await filled(layout, items)
        report = await delete_expired_records(container, settings_for(layout), bind_invocation(FakeContext()), now=NOW)
        return report, ids(container)

    report, left = asyncio.run(run())
    present = {f"item-{i}" for i in range(len(items))}
    expired = {f"item-{i}" for i, stamp in enumerate(items) if stamp.expired}
    deleted = present - left
    # Nothing is deleted that is not an instant older than the cutoff; with enough budget, all of it is.
    assert deleted == (set() if layout["dry_run"] else expired)
    assert (report.would_delete if layout["dry_run"] else report.deleted) == len(expired)
    assert (report.failed, report.already_gone, report.stopped, report.more_remain) == (0, 0, "done", False)
    # Every item is accounted for: deleted (or would be), kept as not yet due, skipped as not an
    # instant, or never selected by the range (not a string, or sorting after it): each once.
    selected = [stamp for stamp in items if stamp.selected]
    assert report.not_yet_due == sum(1 for s in selected if s.instant_us is not None and not s.expired)
    assert sum(report.skipped.values()) == sum(1 for s in selected if s.instant_us is None)
    assert set(report.skipped) <= {"no_utc_offset", "unreadable_timestamp"}
    unseen = len(items) - len(selected)
    assert len(expired) + report.not_yet_due + sum(report.skipped.values()) + unseen == len(items)


faults = st.lists(st.sampled_from([404, 429, 503, 400, 403]), max_size=6)


@given(stamps, layouts, faults, st.sampled_from([None, "delete", "query"]), st.integers(0, 6))
def test_faults_and_hangs_never_delete_what_is_not_expired_nor_outlive_the_budget(
        items: list[Stamp], layout: dict, statuses: list[int], hang: str | None, hang_after: int) -> None:
    budget = 0.1

    async def run() -> tuple[CleanupReport | CleanupFailed, set[str], float, FakeContainer]:
        container = await filled(layout, items)
        container.failures["delete"] = [cosmos_error(s, retry_after_ms=5 if s == 429 else None) for s in statuses]
        if hang is not None:
            container.hang_after[hang] = hang_after
        started = time.monotonic()
        outcome: CleanupReport | CleanupFailed
        try:
            outcome = await delete_expired_records(container, settings_for(layout, budget),
                                                   bind_invocation(FakeContext()), now=NOW)
        except CleanupFailed as exc:
            outcome = exc
        elapsed = time.monotonic() - started
        assert not {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}, "a task outlived the run"
        return outcome, ids(container), elapsed, container

    outcome, left, elapsed, container = asyncio.run(run())
    expired = {f"item-{i}" for i, stamp in enumerate(items) if stamp.expired}
    present = {f"item-{i}" for i in range(len(items))}
    assert present - left <= expired
    assert elapsed < budget + 1.0
    assert container.hanging == 0
    if isinstance(outcome, CleanupFailed):
        assert outcome.report.progress == 0 and outcome.report.more_remain
    elif outcome.stopped == "time_budget":
        assert outcome.more_remain
