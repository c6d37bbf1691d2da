"""The development host's own logic: NCRONTAB schedules, local settings, binding expressions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devhost.host import DevHostError, load_local_settings, resolve
from devhost.ncrontab import Schedule, ScheduleError

T0 = datetime(2026, 11, 27, 10, 15, 30, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(("expression", "expected"), [
    ("0 0 2 * * *", datetime(2026, 11, 28, 2, 0, 0, tzinfo=UTC)),
    ("*/10 * * * * *", datetime(2026, 11, 27, 10, 15, 40, tzinfo=UTC)),
    ("0 */5 * * * *", datetime(2026, 11, 27, 10, 20, 0, tzinfo=UTC)),
    ("30 15 10 * * *", datetime(2026, 11, 28, 10, 15, 30, tzinfo=UTC)),  # strictly after
    ("0 0 9 * * 1-5", datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)),      # next weekday: Monday
    ("0 0 0 1 1 *", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
    ("0 0 12 * * sun", datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)),
    ("0 0 0 29 2 *", datetime(2028, 2, 29, 0, 0, 0, tzinfo=UTC)),
])
def test_next_fire_time(expression: str, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(T0) == expected


@pytest.mark.parametrize("expression", ["0 0 2 * *", "61 * * * * *", "* * * * 13 *", "*/0 * * * * *", "a b c d e f"])
def test_bad_schedules_are_refused(expression: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.parse(expression)


def test_local_settings_fill_the_environment_without_overriding_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"DEVHOST_A": "from-file", "DEVHOST_B": "file"}}))
    monkeypatch.setenv("DEVHOST_B", "from-shell")
    monkeypatch.delenv("DEVHOST_A", raising=False)
    load_local_settings(path)
    import os

    assert (os.environ["DEVHOST_A"], os.environ["DEVHOST_B"]) == ("from-file", "from-shell")
    monkeypatch.delenv("DEVHOST_A")


def test_missing_or_broken_local_settings_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DevHostError, match="copy local.settings.example.json"):
        load_local_settings(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(DevHostError, match="not valid JSON"):
        load_local_settings(tmp_path / "bad.json")


def test_binding_expressions_are_resolved_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_INPUT_CONTAINER", "incoming")
    assert resolve("%ETL_INPUT_CONTAINER%/{name}") == "incoming/{name}"
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(DevHostError, match="NOT_SET_ANYWHERE"):
        resolve("%NOT_SET_ANYWHERE%")
