"""When a local clock shows a reading: once as a rule, twice in the hour repeated when the clocks go
back, never in the hour they skip going forward. Journeys (quiet hours) and case SLAs (business hours)
both ask it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def readings(day: date, clock: time, tz: ZoneInfo) -> list[datetime]:
    """Every instant at which the clock in ``tz`` reads ``day`` ``clock``, earliest first: one as a
    rule, two in the hour repeated when the clocks go back, none in the hour skipped going forward."""
    wanted = datetime.combine(day, clock)
    found: list[datetime] = []
    for fold in (0, 1):
        instant = datetime.combine(day, clock, tzinfo=tz).replace(fold=fold).astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == wanted and instant not in found:
            found.append(instant)
    return sorted(found)


def clock_passes(now: datetime, day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The first instant after ``now`` at which the clock in ``tz`` has reached ``day`` ``clock``: a
    boundary rather than an appointment, so in the repeated hour the reading still ahead (the second,
    once the first has gone by), and for a skipped time the jump itself, when the clock passes it."""
    found = readings(day, clock, tz)
    for instant in found:
        if instant > now:
            return instant
    if found:  # already passed (a caller that asks is mistaken): never answer a moment gone by
        return now
    wanted = datetime.combine(day, clock)
    # Skipped: the jump lies between the instant the new offset gives (before it) and the one the old
    # offset gives (after it); find it to the second, the resolution of the time zone database.
    before = datetime.combine(day, clock, tzinfo=tz).replace(fold=1).astimezone(UTC)
    after = datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        if middle.astimezone(tz).replace(tzinfo=None) >= wanted:
            after = middle
        else:
            before = middle
    return max(after.replace(microsecond=0), now)
