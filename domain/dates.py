"""Date values as customers' traits and event properties hold them, read one way everywhere.

A value is a date when it is a string that starts with a real calendar day written ``YYYY-MM-DD``
(``1990-05-17``, ``2024-09-01T10:00:00+02:00``), or when it is exactly a real month-day ``MM-DD``
(``05-17``, a birthday kept without the year; ``02-29`` is one). Anything else is no date: ``2024-9-1``,
`` 1990-05-17`` (leading space), ``1990-05-99``, ``2023-02-29``, ``0000-01-01``, ``13-01``.

The segments' SQL compiler (domain/segments/compiler.py) applies the same test in SQL; the segments'
per-customer evaluator and journeys read values through this module, so all of them agree.

Time-zone names are read here too, one way for every caller: a zone is a name in ``known_zones()``,
exactly as written (``Europe/Paris``; not ``europe/paris``, ``posix/Europe/Paris``, ``right/UTC`` or
``localtime``, other files of the tz database that ``ZoneInfo`` would also open).
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

DATE_PREFIX_LEN = 10  # values are compared on their leading YYYY-MM-DD
_DATE_LIKE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # at the start (match)
_MONTH_DAY = re.compile(r"[0-9]{2}-[0-9]{2}")  # the whole value (fullmatch: no trailing newline either)
LEAP_YEAR = 2000  # a year in which every month-day exists


def leading_date(value) -> str | None:
    """The leading ``YYYY-MM-DD`` of ``value`` when it is a real calendar day, else None."""
    if not isinstance(value, str) or not _DATE_LIKE.match(value):
        return None
    text = value[:DATE_PREFIX_LEN]
    try:
        date(int(text[:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return None
    return text


def month_day(value) -> str | None:
    """The ``MM-DD`` an anniversary of ``value`` recurs on: of a date (``leading_date``), or of a value
    that is exactly a real month-day, else None."""
    day = leading_date(value)
    if day is not None:
        return day[5:]
    if not isinstance(value, str) or not _MONTH_DAY.fullmatch(value):
        return None
    try:
        date(LEAP_YEAR, int(value[:2]), int(value[3:]))
    except ValueError:
        return None
    return value


def parse(value) -> tuple[date, bool] | None:
    """``(day, has_year)`` of a date value; a year-less ``MM-DD`` is on ``LEAP_YEAR``. None if no date."""
    day = leading_date(value)
    if day is not None:
        return date.fromisoformat(day), True
    recurs = month_day(value)
    if recurs is not None:
        return date(LEAP_YEAR, int(recurs[:2]), int(recurs[3:])), False
    return None


# Files of the tz database that name no zone: ``localtime`` is the server's own zone (a link some
# systems' databases hold, others not), so a name meaning different zones on different servers.
NOT_ZONES = frozenset({"localtime"})


@lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - NOT_ZONES


def is_zone(name) -> bool:
    """``name`` is an IANA zone name as the product knows them (what ingestion stores, what segments,
    journeys, broadcasts and templates accept from marketers)."""
    return isinstance(name, str) and name in known_zones()


@lru_cache(maxsize=1024)
def _opened(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone(*names) -> ZoneInfo:
    """The first of ``names`` that is a zone (``is_zone``), else UTC: a customer's zone, then a
    journey's or broadcast's default. None, '' and unknown names are passed over, never an error."""
    return _opened(next((name for name in names if is_zone(name)), "UTC"))
