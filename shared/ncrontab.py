"""NCRONTAB schedules as the Functions timer trigger reads them: six fields, seconds first, UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import croniter


class NcrontabError(ValueError):
    """The expression is not a six-field NCRONTAB schedule."""


class NcrontabSchedule:
    """A parsed schedule: `{second} {minute} {hour} {day} {month} {day-of-week}`, evaluated in UTC."""

    def __init__(self, expression: str) -> None:
        fields = expression.split()
        if len(fields) != 6:
            raise NcrontabError(
                f"expected 6 fields (second minute hour day month day-of-week), got {len(fields)}"
            )
        if not croniter.is_valid(" ".join(fields), second_at_beginning=True):
            raise NcrontabError("a field is out of range or malformed")
        self.expression = " ".join(fields)

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (an aware datetime), in UTC."""
        start = moment.astimezone(UTC)
        return croniter(self.expression, start, second_at_beginning=True).get_next(datetime)

    def previous_before(self, moment: datetime) -> datetime:
        """The last occurrence strictly before `moment`, in UTC."""
        start = moment.astimezone(UTC)
        return croniter(self.expression, start, second_at_beginning=True).get_prev(datetime)

    def __repr__(self) -> str:
        return f"NcrontabSchedule({self.expression!r})"


def parse_ncrontab(expression: str) -> NcrontabSchedule:
    return NcrontabSchedule(expression)
