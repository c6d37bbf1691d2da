"""Six-field NCRONTAB schedules (seconds first), as the Functions timer trigger reads them.

``{second} {minute} {hour} {day} {month} {day-of-week}``; each field takes
``*``, numbers, ranges ``a-b``, lists ``a,b`` and steps ``*/n``, ``a/n`` or
``a-b/n``; months and days of the week also take names (``jan``, ``mon``).
Day-of-week is 0-6 with 0 = Sunday. The next fire time is computed by
``croniter`` (seconds field first). When both day fields are restricted, a day
must match both, as in NCrontab (the library Azure uses), not either one as in
Unix cron::

    schedule = Schedule.parse("0 */5 * * * *")
    schedule.next_after(datetime.now(UTC))

Expressions Azure would refuse (five or seven fields, croniter's extensions
such as ``L``, ``#``, ``?``, ``H`` or ``@daily``) raise :class:`ScheduleError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import CroniterBadDateError, CroniterError, croniter  # type: ignore[import-untyped]

__all__ = ["Schedule", "ScheduleError"]

_FORMAT = "six fields: second minute hour day month day-of-week, for example '0 0 2 * * *'"
_NUMBER = r"\d+"
_MONTH = r"\d+|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_WEEKDAY = r"\d+|sun|mon|tue|wed|thu|fri|sat"


def _field(value: str) -> re.Pattern[str]:
    term = rf"(?:\*|(?:{value})(?:-(?:{value}))?)(?:/\d+)?"
    return re.compile(rf"{term}(?:,{term})*", re.IGNORECASE)


# second, minute, hour, day, month, day-of-week: the syntax NCrontab accepts.
_FIELDS = tuple(_field(value) for value in (_NUMBER, _NUMBER, _NUMBER, _NUMBER, _MONTH, _WEEKDAY))
_NAMES = ("second", "minute", "hour", "day", "month", "day-of-week")


class ScheduleError(ValueError):
    """A timer schedule that is not a valid six-field NCRONTAB expression (or never fires)."""


@dataclass(frozen=True)
class Schedule:
    expression: str

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        fields = expression.split()
        if len(fields) != 6:
            raise ScheduleError(f"schedule {expression!r} must have {_FORMAT}; it has {len(fields)}")
        for name, text, pattern in zip(_NAMES, fields, _FIELDS, strict=True):
            if not pattern.fullmatch(text):
                raise ScheduleError(f"schedule {expression!r}: {name} field {text!r} is not valid NCRONTAB "
                                    "(use *, numbers, a-b, a,b and /step)")
        schedule = cls(" ".join(fields))
        schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # refuses bad values and one that never fires
        return schedule

    def next_after(self, moment: datetime) -> datetime:
        """The first time strictly after ``moment`` that the schedule matches (in ``moment``'s time zone)."""
        try:
            result: datetime = croniter(self.expression, moment, ret_type=datetime, day_or=False,
                                        second_at_beginning=True).get_next(datetime)
        except CroniterBadDateError:
            raise ScheduleError(f"schedule {self.expression!r} never fires") from None
        except (CroniterError, TypeError) as exc:
            reason = str(exc).splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ScheduleError(f"schedule {self.expression!r} is not valid NCRONTAB: {reason}") from None
        return result
