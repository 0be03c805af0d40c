"""SLA deadlines that count only business hours (e.g. Monday-Friday 09:00-17:00 in Europe/Paris)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.wall_clock import clock_passes

# The furthest a deadline counted in business hours may fall: eight years of whole weeks (366 * 8 days
# bounded the day-by-day walk before). A policy whose hours cannot carry its targets within it is refused:
# a minute on Sundays gives 418 minutes, so a target of 480 cannot be met.
HORIZON_WEEKS = 366 * 8 // 7


@dataclass(frozen=True)
class BusinessHours:
    timezone: str
    days: frozenset[int]  # 0 = Monday
    start: time  # local times, without a zone: the zone is `timezone`
    end: time

    def weekly(self) -> timedelta:
        """Working time in a week (wall-clock, as deadlines are counted)."""
        block = datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)
        return block * len(self.days)


class BeyondHorizon(ValueError):
    """The hours leave too little working time to reach the target within HORIZON_WEEKS."""


def add_minutes(start: datetime, minutes: int, hours: BusinessHours | None) -> datetime:
    """``start`` plus ``minutes`` of working time (plain minutes without business hours), in UTC.

    Raises BeyondHorizon when the hours give less than ``minutes`` in HORIZON_WEEKS weeks."""
    if hours is None:
        return start + timedelta(minutes=minutes)
    remaining, week = timedelta(minutes=minutes), hours.weekly()
    if week <= timedelta(0) or remaining > week * HORIZON_WEEKS:
        raise BeyondHorizon(
            f"{_span(week)} of working time a week reaches {minutes} minutes only after more than "
            f"{HORIZON_WEEKS} weeks (eight years)"
        )
    tz = ZoneInfo(hours.timezone)
    local = start.astimezone(tz)
    day = local.date()
    # The first day may be cut short by `start`; every later week gives `week` whole, so whole weeks are
    # skipped at once, leaving at most one week (and the first day) to walk.
    for index in range(16):
        if day.weekday() in hours.days:
            opens = datetime.combine(day, hours.start, tz)
            closes = datetime.combine(day, hours.end, tz)
            begin = max(opens, local)
            if begin < closes:
                if remaining <= closes - begin:
                    # Counted on the wall clock, so due when the clock first reads that after
                    # `start`: a reading of the repeated hour taken as its first pass fell before a
                    # case opened in the second, and one the clocks skip is due at the jump.
                    due = begin.replace(tzinfo=None) + remaining
                    return clock_passes(start, due.date(), due.time(), tz)
                remaining -= closes - begin
        day += timedelta(days=1)
        if index == 0 and remaining > week:
            whole = (remaining - timedelta(microseconds=1)) // week  # leaves (0, week] to walk
            remaining -= week * whole
            day += timedelta(weeks=whole)
    raise AssertionError("unreachable: a week of business hours gives `week`")


def _span(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:g} minute{'s' * (minutes != 1)}"
