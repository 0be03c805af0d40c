"""Reporting periods: half-open [from, to) instants in UTC, and their division into trend buckets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from domain.db import EARLIEST, LATEST
from domain.errors import InvalidInput

_LOST_PLUS = re.compile(r"T\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}:\d{2}$")

DEFAULT_DAYS = 30
MAX_BUCKETS = 60
INTERVALS = ("day", "week", "month")


@dataclass(frozen=True)
class Period:
    start: datetime  # included
    end: datetime  # excluded

    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86_400


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput({"field": field, "problem": problem}, code="invalid_period")


def parse_instant(raw: str, field: str) -> datetime:
    """An ISO 8601 date (midnight UTC) or date-time; a date-time without offset is UTC."""
    text = raw.strip()
    if _LOST_PLUS.search(text):  # an unencoded '+' in a query string arrives as a space
        text = text[:-6] + "+" + text[-5:]
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(field, f"{raw!r} is not an ISO 8601 date or date-time") from None
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset: not a UTC datetime at all
        moment = None
    # Times a request may name (domain.db): arithmetic on the period (default bounds, buckets, windows
    # before it) stays far inside what Python's datetime and both databases hold.
    if moment is None or not EARLIEST <= moment <= LATEST:
        span = f"{EARLIEST.date().isoformat()} and {LATEST.date().isoformat()} (UTC)"
        raise _invalid(field, f"{raw!r} is not between {span}")
    return moment


def period(start: str | None, end: str | None, *, now: datetime, default_days: int = DEFAULT_DAYS) -> Period:
    """The period a request asks for: ``to`` defaults to now, ``from`` to ``default_days`` before ``to``."""
    stop = parse_instant(end, "to") if end else now
    begin = parse_instant(start, "from") if start else stop - timedelta(days=default_days)
    if begin >= stop:
        raise _invalid("from", f"from ({begin.isoformat()}) must be before to ({stop.isoformat()})")
    return Period(begin, stop)


def optional_period(start: str | None, end: str | None, *, now: datetime) -> Period | None:
    """None when neither bound is given (all time); a missing bound is open on that side: the first or
    the last time a request may name (so any bound that may be named has a period on its other side)."""
    if not start and not end:
        return None
    begin = parse_instant(start, "from") if start else EARLIEST
    stop = parse_instant(end, "to") if end else LATEST
    if begin >= stop:
        raise _invalid("from", f"from ({begin.isoformat()}) must be before to ({stop.isoformat()})")
    return Period(begin, stop)


def _step(moment: datetime, interval: str) -> datetime:
    if interval == "day":
        return moment + timedelta(days=1)
    if interval == "week":
        return moment + timedelta(weeks=1)
    month = moment.month % 12 + 1
    return moment.replace(year=moment.year + (moment.month == 12), month=month, day=1)


def _floor(moment: datetime, interval: str) -> datetime:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if interval == "month":
        return day.replace(day=1)
    return day


def buckets(whole: Period, interval: str) -> list[Period]:
    """Calendar buckets (UTC days, ISO weeks, months) covering ``whole``, the first and last cut to it."""
    if interval not in INTERVALS:
        raise _invalid("interval", f"{interval!r} is not one of {', '.join(INTERVALS)}")
    out: list[Period] = []
    cursor = whole.start
    while cursor < whole.end:
        nxt = min(_step(_floor(cursor, interval), interval), whole.end)
        out.append(Period(cursor, nxt))
        cursor = nxt
        if len(out) > MAX_BUCKETS:
            raise _invalid(
                "interval",
                f"more than {MAX_BUCKETS} {interval}s in the period; "
                "choose a longer interval or a shorter period",
            )
    return out
