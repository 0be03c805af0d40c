"""SLA deadlines that count only business hours (e.g. Monday-Friday 09:00-17:00 in Europe/Paris)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class BusinessHours:
    timezone: str
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time


def add_minutes(start: datetime, minutes: int, hours: BusinessHours | None) -> datetime:
    """``start`` plus ``minutes`` of working time (plain minutes without business hours), in UTC."""
    if hours is None:
        return start + timedelta(minutes=minutes)
    tz = ZoneInfo(hours.timezone)
    remaining = timedelta(minutes=minutes)
    local = start.astimezone(tz)
    day = local.date()
    # Each working day gives at most one block; eight years bounds even one open day a week.
    for _ in range(366 * 8):
        if day.weekday() in hours.days:
            opens = datetime.combine(day, hours.start, tz)
            closes = datetime.combine(day, hours.end, tz)
            begin = max(opens, local)
            if begin < closes:
                if remaining <= closes - begin:
                    return (begin + remaining).astimezone(UTC)
                remaining -= closes - begin
        day += timedelta(days=1)
    raise ValueError("business hours leave no working time")
