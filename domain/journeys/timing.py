"""Pure, deterministic time arithmetic for journeys: local times, anniversaries, quiet hours, caps.

Every function takes ``now`` (the workflow's clock, aware UTC) and returns an aware UTC instant, so the
workflow can sleep until it. Nothing here reads a clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain import dates
from domain.wall_clock import clock_passes

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The customer's zone, else the journey's default, else UTC (``dates.zone``)."""
    return dates.zone(name, default)


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _at(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """``day`` at ``clock`` in ``tz``, as an appointment: a time the clocks pass twice (going back) is
    its first occurrence, a time they skip (going forward) is later by the length of the jump (fold=0)."""
    local = datetime.combine(day, clock, tzinfo=tz)
    # Round-trip through UTC normalises non-existent local times (spring forward) to a real instant.
    return local.astimezone(UTC)


def next_local_time(now: datetime, tz: ZoneInfo, at: str, weekdays: list[str] | None = None) -> datetime:
    """The first instant at or after ``now`` that is ``at`` o'clock locally (on one of ``weekdays``)."""
    clock = _hhmm(at)
    today = now.astimezone(tz).date()
    for offset in range(0, 8):
        day = today + timedelta(days=offset)
        if weekdays and WEEKDAYS[day.weekday()] not in weekdays:
            continue
        candidate = _at(day, clock, tz)
        if candidate >= now:
            return candidate
    raise AssertionError("unreachable: a week always holds the next local time")


def parse_date(value) -> date | None:
    """A date trait as sent by source systems, read as segments read it (domain.dates): a value that
    starts with a real calendar day ``1990-05-17`` (a full ISO timestamp is its day), or exactly a real
    ``05-17`` (no year: on a leap year, so that ``02-29`` is one). Anything else is None."""
    parsed = dates.parse(value)
    return parsed[0] if parsed else None


def _on_year(day: date, year: int) -> date:
    try:
        return day.replace(year=year)
    except ValueError:  # 29 February outside a leap year: celebrate on the 28th
        return day.replace(year=year, day=28)


def next_anniversary(
    now: datetime, tz: ZoneInfo, trait_date: date, at: str, offset_days: int = 0
) -> datetime:
    """The next yearly recurrence of ``trait_date`` (+ offset) at ``at`` local, at or after ``now``."""
    clock = _hhmm(at)
    local_year = now.astimezone(tz).year
    for year in (local_year - 1, local_year, local_year + 1):
        candidate = _at(_on_year(trait_date, year) + timedelta(days=offset_days), clock, tz)
        if candidate >= now:
            return candidate
    raise AssertionError("unreachable: next year always holds the anniversary")


def on_date(tz: ZoneInfo, trait_date: date, at: str, offset_days: int = 0) -> datetime | None:
    """A one-off date trait (e.g. renewal date) + offset at ``at`` local; None, as for no date at all,
    when that moment lies beyond the calendar (before year 1 or after 9999, in local time or in UTC)."""
    try:
        return _at(trait_date + timedelta(days=offset_days), _hhmm(at), tz)
    except OverflowError:
        return None


def date_trait_moment(now: datetime, tz: ZoneInfo, value, at: str, offset_days: int = 0) -> datetime | None:
    """When a ``wait_until`` on a date trait holding ``value`` ends: the date + offset at ``at`` local.
    A date without its year (``05-17``) is its next occurrence at or after ``now``, as a birthday
    recurs (29 February on the 28th in common years); no date, or a moment too far ahead, is None."""
    parsed = dates.parse(value)
    if parsed is None:
        return None
    day, has_year = parsed
    if not has_year:
        return next_anniversary(now, tz, day, at, offset_days)
    return within_reach(now, on_date(tz, day, at, offset_days))


# The longest a journey waits, as for every duration in a definition: a date trait further ahead (a
# typo'd year, 9999-12-31 as "never") counts as no date, rather than a timer of centuries that
# Temporal would refuse, leaving the enrollment stuck.
FURTHEST = timedelta(days=3650)


def within_reach(now: datetime, moment: datetime | None) -> datetime | None:
    """``moment``, or None when it lies more than FURTHEST after ``now``."""
    return None if moment is None or moment - now > FURTHEST else moment


def quiet_hours_end(now: datetime, tz: ZoneInfo, start: str, end: str) -> datetime:
    """``now`` if it is outside quiet hours, else the first moment after ``now`` at which the local
    clock reaches ``end``: in the hour repeated when the clocks go back, the ``end`` still ahead; when
    the clocks skip ``end``, the jump past it."""
    local = now.astimezone(tz)
    begin, finish = _hhmm(start), _hhmm(end)
    clock = local.time().replace(tzinfo=None)
    wraps = begin > finish  # e.g. 21:00-08:00
    inside = (clock >= begin or clock < finish) if wraps else (begin <= clock < finish)
    if not inside:
        return now
    day = local.date()
    if wraps and clock >= begin:
        day += timedelta(days=1)
    return clock_passes(now, day, finish, tz)


def cap_release(now: datetime, recent_sends: list[datetime], limit: int, window_seconds: int) -> datetime:
    """``now`` if fewer than ``limit`` sends fall in the window ending now, else when enough age out."""
    window = timedelta(seconds=window_seconds)
    inside = sorted(t for t in recent_sends if now - window < t <= now)
    if len(inside) < limit:
        return now
    # The (len - limit + 1)-th oldest must leave the window before one more send fits.
    return inside[len(inside) - limit] + window


def next_send_moment(
    now: datetime,
    tz: ZoneInfo,
    *,
    quiet: tuple[str, str] | None,
    cap: tuple[int, int] | None,
    recent_sends: list[datetime],
) -> tuple[datetime, str | None]:
    """The first moment at or after ``now`` allowed by both quiet hours and the cap, and which rule
    held the send back (``"quiet_hours"``, ``"frequency_cap"`` or None)."""
    moment, reason = now, None
    for _ in range(50):  # each pass moves forward; both rules settle within a few passes
        after_cap = cap_release(moment, recent_sends, *cap) if cap else moment
        if after_cap > moment:
            moment, reason = after_cap, reason or "frequency_cap"
            continue
        after_quiet = quiet_hours_end(moment, tz, *quiet) if quiet else moment
        if after_quiet > moment:
            moment, reason = after_quiet, reason or "quiet_hours"
            continue
        return moment, reason
    return moment, reason


def plan(
    kind: str,
    now: datetime,
    tz: ZoneInfo,
    *,
    traits: dict,
    recent_sends: list[datetime],
    quiet: tuple[str, str] | None = None,
    cap: tuple[int, int] | None = None,
    at: str | None = None,
    weekdays: list[str] | None = None,
    trait: str | None = None,
    offset_days: int = 0,
) -> tuple[datetime | None, str | None]:
    """Answer a journey's question about time: ``(moment, held_by)``; see ``TimePlan``."""
    if kind == "send":
        return next_send_moment(now, tz, quiet=quiet, cap=cap, recent_sends=recent_sends)
    if kind == "local_time":
        return next_local_time(now, tz, at, weekdays or None), None
    if kind == "date":
        return (date_trait_moment(now, tz, traits.get(trait), at, offset_days) if trait else None), None
    day = parse_date(traits.get(trait)) if trait else None
    if day is None:
        return None, None
    if kind == "anniversary":
        return next_anniversary(now, tz, day, at, offset_days), None
    raise ValueError(f"unknown time plan {kind!r}")
