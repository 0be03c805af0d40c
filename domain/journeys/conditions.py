"""Pure evaluation of branch conditions, event filters and split assignment (deterministic)."""

from __future__ import annotations

import hashlib
import operator
from typing import Any

from domain import dates

_MISSING = object()
# The event the segments area records when a customer enters a segment (property ``segment_id``).
SEGMENT_ENTERED = "Segment Entered"


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


def _within(needle: Any, haystack: Any) -> bool:
    """``needle in haystack`` for any JSON values: a substring of a string (a needle that is no string
    is in none), an element of a list, and never of anything else."""
    if isinstance(haystack, str):
        return isinstance(needle, str) and needle in haystack
    if isinstance(haystack, list):
        return needle in haystack  # element equality, which holds or not for any two JSON values
    return False


_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def _days(actual: Any, expected: Any) -> tuple[str | None, str | None] | None:
    """The days two strings are on (their leading real YYYY-MM-DD, as segments read dates; None for
    a side that is no date) when either is a date, else None: the comparison is not one of dates."""
    if not (isinstance(actual, str) and isinstance(expected, str)):
        return None
    days = (dates.leading_date(actual), dates.leading_date(expected))
    return days if days != (None, None) else None


def _compare(actual: Any, op: str, expected: Any, *, by_day: bool = True) -> bool:
    """Whether ``actual`` (a trait or event property, ``_MISSING`` when absent) passes ``op expected``.

    Total over JSON values: runs inside JourneyWorkflow, where an exception would fail the workflow
    task again at every retry and leave the enrollment stuck. A comparison between types that do not
    compare (a number and a string, a list and a number) does not hold.

    ``gt``/``gte``/``lt``/``lte`` between two strings of which either is a date compare the days they
    are on, as segments' ``after``/``before`` do (``2024-09-01T10:00:00+02:00`` is on 1 September, not
    after it); a date against a string that is no date (``2024-9-1``, ``05-17``, ``1990-05-99``) does
    not hold. ``by_day=False`` is the old comparison by character, for enrollments that began with it."""
    if op == "exists":
        return actual is not _MISSING and actual is not None
    if op == "not_exists":
        return actual is _MISSING or actual is None
    if actual is _MISSING:
        return op in ("ne", "not_in")
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op == "in":
        return _within(actual, expected)
    if op == "not_in":
        return not _within(actual, expected)
    if op == "contains":
        return _within(expected, actual)
    if op not in _ORDER:
        raise ValueError(f"unknown op {op!r}")
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
    return _compare(actual, op, condition.get("value"), by_day=by_day)


def event_matches(
    name: str,
    properties: dict[str, Any],
    *,
    want: str,
    where: dict[str, Any],
    match_entry: list[str] | None = None,
    entry_properties: dict[str, Any] | None = None,
) -> bool:
    if name != want:
        return False
    if any(properties.get(k) != v for k, v in (where or {}).items()):
        return False
    for key in match_entry or []:
        expected = (entry_properties or {}).get(key)
        if expected is None or properties.get(key) != expected:
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
