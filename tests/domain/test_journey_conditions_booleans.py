"""Branch conditions and event filters read JSON: `true` is no `1`, `false` no `0`, also inside lists
and objects, as segments and analytics' goal SQL (JsonValue.equals) read them."""

from __future__ import annotations

import pytest

from domain.journeys import conditions
from domain.journeys.definition import matches_entry


@pytest.mark.parametrize(
    ("actual", "op", "value", "expected"),
    [
        (1, "eq", True, False),
        (0, "eq", False, False),
        (True, "eq", True, True),
        (1, "eq", 1.0, True),  # numbers are numbers whatever their form
        (1, "ne", True, True),
        (1, "in", [True], False),
        (True, "in", [1], False),
        (True, "not_in", [1, 0], True),
        ([1], "contains", True, False),
        ([True], "contains", True, True),
        ([1], "eq", [True], False),
        ({"a": 0}, "eq", {"a": False}, False),
        (True, "gt", 0, False),
        (1, "gte", True, False),
        (True, "gt", False, True),
    ],
)
def test_booleans_and_numbers_do_not_compare(actual, op, value, expected):
    condition = {"trait": "x", "op": op, "value": value}
    assert conditions.holds(condition, traits={"x": actual}, event={}, segments=set()) is expected


def test_event_filters_tell_booleans_from_numbers():
    assert not conditions.event_matches("Paid", {"gift": 1}, want="Paid", where={"gift": True})
    assert conditions.event_matches("Paid", {"gift": True}, want="Paid", where={"gift": True})
    entry = {"id": "start", "type": "entry", "event": "Paid", "where": {"gift": False}}
    assert not matches_entry(entry, "Paid", {"gift": 0})
    assert matches_entry(entry, "Paid", {"gift": False})


def test_the_old_equality_stays_for_enrollments_that_began_with_it():
    condition = {"trait": "x", "op": "eq", "value": True}
    assert conditions.holds(condition, traits={"x": 1}, event={}, segments=set(), strict=False)
