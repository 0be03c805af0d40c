"""Dates as a customer sees them: today in their own time zone, birthdays and anniversaries.

Both evaluators use these helpers so they agree on what "today" means for every customer.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from domain.dates import known_zones
from domain.dates import zone as _zone


def local_date(zone: str | None, now: datetime) -> date:
    """Today for a customer; an unknown or missing zone means UTC."""
    return now.astimezone(_zone(zone)).date()


@lru_cache(maxsize=32)
def dates_by_zone(now: datetime) -> tuple[date, tuple[tuple[date, tuple[str, ...]], ...]]:
    """UTC's date, and the other dates some zone is on right now with those zones (at most two).

    Cached by instant: reading every zone's clock takes tens of milliseconds, and a rule's every
    condition on today asks it at the same ``now`` (100 birthday conditions took 5 s to compile)."""
    utc_today = now.astimezone(UTC).date()
    others: dict[date, list[str]] = {}
    for zone in sorted(known_zones()):
        today = now.astimezone(ZoneInfo(zone)).date()
        if today != utc_today:
            others.setdefault(today, []).append(zone)
    return utc_today, tuple((day, tuple(zones)) for day, zones in others.items())


def anniversary_days(today: date) -> set[str]:
    """The MM-DD values whose anniversary is today; 29 February is celebrated on the 28th otherwise."""
    days = {today.strftime("%m-%d")}
    if today.month == 2 and today.day == 28 and not calendar.isleap(today.year):
        days.add("02-29")
    return days


def utc_today(now: datetime) -> date:
    return now.astimezone(UTC).date()


def day_span(today: date, days: int, *, forward: bool) -> tuple[str, str]:
    """Inclusive YYYY-MM-DD bounds of 'within the last/next N days' of ``today`` (the customer's)."""
    if forward:
        return today.isoformat(), (today + timedelta(days=days)).isoformat()
    return (today - timedelta(days=days)).isoformat(), today.isoformat()
