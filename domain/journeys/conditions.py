"""Pure evaluation of branch conditions, event filters and split assignment (deterministic)."""

from __future__ import annotations

import hashlib
import operator
from typing import Any

from domain import dates

_MISSING = object()
# The event the segments area records when a customer enters a segment (property ``segment_id``).
SEGMENT_ENTERED = "Segment Entered"


def same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is no ``1`` and ``false`` no ``0`` (Python's ``True == 1``), also inside
    lists and objects; numbers equal numbers whatever their form (``1 == 1.0``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def _equal(a: Any, b: Any, strict: bool) -> bool:
    # strict=False: Python's equality, for enrollments that began with it (see JourneyWorkflow).
    return same(a, b) if strict else a == b


def entered_segment(name: str | None, properties: dict[str, Any], segment_id: str) -> bool:
    return name == SEGMENT_ENTERED and properties.get("segment_id") == segment_id


def _lookup(data: dict[str, Any], path: str) -> Any:
    """``"address.city"`` walks nested objects; a missing key is ``_MISSING``."""
    current: Any = data
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _within(needle: Any, haystack: Any, strict: bool = True) -> bool:
    """``needle in haystack`` for any JSON values: a substring of a string (a needle that is no string
    is in none), an element of a list, and never of anything else."""
    if isinstance(haystack, str):
        return isinstance(needle, str) and needle in haystack
    if isinstance(haystack, list):
        return any(_equal(needle, item, strict) for item in haystack)
    return False


_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def _days(actual: Any, expected: Any) -> tuple[str | None, str | None] | None:
    """The days two strings are on (their leading real YYYY-MM-DD, as segments read dates; None for
    a side that is no date) when either is a date, else None: the comparison is not one of dates."""
    if not (isinstance(actual, str) and isinstance(expected, str)):
        return None
    days = (dates.leading_date(actual), dates.leading_date(expected))
    return days if days != (None, None) else None


def _compare(actual: Any, op: str, expected: Any, *, by_day: bool = True, strict: bool = True) -> bool:
    """Whether ``actual`` (a trait or event property, ``_MISSING`` when absent) passes ``op expected``.

    Total over JSON values: runs inside JourneyWorkflow, where an exception would fail the workflow
    task again at every retry and leave the enrollment stuck. A comparison between types that do not
    compare (a number and a string, a list and a number) does not hold.

    ``gt``/``gte``/``lt``/``lte`` between two strings of which either is a date compare the days they
    are on, as segments' ``after``/``before`` do (``2024-09-01T10:00:00+02:00`` is on 1 September, not
    after it); a date against a string that is no date (``2024-9-1``, ``05-17``, ``1990-05-99``) does
    not hold. ``by_day=False`` is the old comparison by character, for enrollments that began with it.
    ``strict=False`` is the old equality, under which ``true`` equalled ``1`` (see ``same``)."""
    if op == "exists":
        return actual is not _MISSING and actual is not None
    if op == "not_exists":
        return actual is _MISSING or actual is None
    if actual is _MISSING:
        return op in ("ne", "not_in")
    if op == "eq":
        return _equal(actual, expected, strict)
    if op == "ne":
        return not _equal(actual, expected, strict)
    if op == "in":
        return _within(actual, expected, strict)
    if op == "not_in":
        return not _within(actual, expected, strict)
    if op == "contains":
        return _within(expected, actual, strict)
    if op not in _ORDER:
        raise ValueError(f"unknown op {op!r}")
    if strict and isinstance(actual, bool) != isinstance(expected, bool):
        return False  # true > 0 held: a boolean and a number do not compare
    if by_day and (days := _days(actual, expected)) is not None:
        return None not in days and _ORDER[op](*days)
    try:
        return _ORDER[op](actual, expected)
    except TypeError:  # comparing a number with a string: the condition does not hold
        return False


def holds(
    condition: dict[str, Any],
    *,
    traits: dict[str, Any],
    event: dict[str, Any],
    segments: set[str],
    by_day: bool = True,
    strict: bool = True,
) -> bool:
    op = condition.get("op", "eq")
    if condition.get("segment") is not None:
        member = condition["segment"] in segments
        wanted = condition.get("value", True)
        return (member == wanted) if op == "eq" else (member != wanted)
    if condition.get("trait") is not None:
        actual = _lookup(traits, condition["trait"])
    else:
        actual = _lookup(event, condition["event_property"])
    return _compare(actual, op, condition.get("value"), by_day=by_day, strict=strict)


def event_matches(
    name: str,
    properties: dict[str, Any],
    *,
    want: str,
    where: dict[str, Any],
    match_entry: list[str] | None = None,
    entry_properties: dict[str, Any] | None = None,
    strict: bool = True,
) -> bool:
    """``strict``: as in ``_compare`` (``where: {"gift": true}`` matched ``"gift": 1``)."""
    if name != want:
        return False
    if not all(_equal(properties.get(k), v, strict) for k, v in (where or {}).items()):
        return False
    for key in match_entry or []:
        expected = (entry_properties or {}).get(key)
        if expected is None or not _equal(properties.get(key), expected, strict):
            return False
    return True


def split_bucket(journey_id: str, node_id: str, customer_id: int) -> float:
    """A number in [0, 100) fixed for this customer at this split node."""
    digest = hashlib.sha256(f"{journey_id}/{node_id}/{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def choose_path(paths: list[dict[str, Any]], holdout_percent: float, bucket: float) -> int | None:
    """Index of the chosen path, or None for the holdout group. The holdout takes the lowest buckets;
    the rest is divided among the paths by weight."""
    if bucket < holdout_percent:
        return None
    position = (bucket - holdout_percent) / (100 - holdout_percent)  # [0, 1)
    total = sum(p["weight"] for p in paths)
    running = 0.0
    for index, path in enumerate(paths):
        running += path["weight"] / total
        if position < running:
            return index
    return len(paths) - 1
