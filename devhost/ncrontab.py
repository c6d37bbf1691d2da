"""Six-field NCRONTAB schedules (seconds first), as the Functions timer trigger reads them.

``{second} {minute} {hour} {day} {month} {day-of-week}``; each field takes
``*``, numbers, ranges ``a-b``, lists ``a,b`` and steps ``*/n`` or ``a-b/n``.
Day-of-week is 0-6 with 0 = Sunday (7 is accepted as Sunday too). When both
day fields are restricted, a day matches when either does, as in cron::

    schedule = Schedule.parse("0 */5 * * * *")
    schedule.next_after(datetime.now(UTC))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_MONTHS = {name: i for i, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


class ScheduleError(ValueError):
    pass


def _parse_field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"bad step in {text!r}")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _value(first, names), _value(last, names)
        else:
            start = _value(part, names)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise ScheduleError(f"{text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, names: dict[str, int] | None) -> int:
    lowered = text.strip().lower()
    if names and lowered[:3] in names and not lowered.isdigit():
        return names[lowered[:3]]
    if not lowered.isdigit():
        raise ScheduleError(f"{text!r} is not a number")
    return int(lowered)


@dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        fields = expression.split()
        if len(fields) != 6:
            raise ScheduleError(
                f"schedule {expression!r} must have six fields (second minute hour day month day-of-week), "
                "for example '0 0 2 * * *'"
            )
        second, minute, hour, day, month, weekday = fields
        weekdays = _parse_field(weekday, 0, 7, _DAYS)
        if 7 in weekdays:
            weekdays = (weekdays - {7}) | {0}
        return cls(
            seconds=_parse_field(second, 0, 59), minutes=_parse_field(minute, 0, 59), hours=_parse_field(hour, 0, 23),
            days=_parse_field(day, 1, 31), months=_parse_field(month, 1, 12, _MONTHS), weekdays=frozenset(weekdays),
            any_day=day == "*", any_weekday=weekday == "*",
        )

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7  # Python: Monday = 0; cron: Sunday = 0
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return weekday in self.weekdays
        if self.any_weekday:
            return moment.day in self.days
        return moment.day in self.days or weekday in self.weekdays

    def next_after(self, moment: datetime) -> datetime:
        """The first time strictly after ``moment`` that the schedule matches."""
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = candidate + timedelta(days=366 * 5)
        while candidate < limit:
            if candidate.month not in self.months:
                year, month = (candidate.year + 1, 1) if candidate.month == 12 else (candidate.year, candidate.month + 1)
                candidate = candidate.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
                continue
            if not self._day_matches(candidate):
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            if candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0, second=0)
                continue
            if candidate.minute not in self.minutes:
                candidate = (candidate + timedelta(minutes=1)).replace(second=0)
                continue
            if candidate.second not in self.seconds:
                candidate += timedelta(seconds=1)
                continue
            return candidate
        raise ScheduleError("schedule never fires")
