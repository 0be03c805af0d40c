"""Branch conditions and date plans answer for any JSON a customer's traits or an event may hold.

Both run for live enrollments (conditions in the workflow code itself, the date plan in its context
activity), where an exception retries for ever. The answers the evaluator gave before it was made total
are recorded in workflow histories, so wherever the old code answered, the answer must stay the same.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from domain.journeys import conditions, timing
from domain.segments import evaluate
from domain.segments import rules as r

OPS = ["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "not_exists", "contains"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)


def _before(actual, op, expected):
    """The evaluator as recorded histories saw it (it raised TypeError for some pairs)."""
    if op == "exists":
        return actual is not conditions._MISSING and actual is not None
    if op == "not_exists":
        return actual is conditions._MISSING or actual is None
    if actual is conditions._MISSING:
        return op in ("ne", "not_in")
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op == "in":
        return actual in expected
    if op == "not_in":
        return actual not in expected
    if op == "contains":
        return isinstance(actual, list | str) and expected in actual
    try:
        if op == "gt":
            return actual > expected
        if op == "gte":
            return actual >= expected
        if op == "lt":
            return actual < expected
        return actual <= expected
    except TypeError:
        return False


def _condition(op, value):
    return {"trait": "t", "op": op, "value": value}


@given(actual=json_values, op=st.sampled_from(OPS), expected=json_values, present=st.booleans())
def test_every_condition_answers_and_keeps_every_answer_it_gave_before(actual, op, expected, present):
    if op in ("in", "not_in"):  # the definition only saves a list here
        expected = expected if isinstance(expected, list) else [expected]
    traits = {"t": actual} if present else {}

    # Enrollments that began before dates were compared by day keep the comparison by character.
    answer = conditions.holds(_condition(op, expected), traits=traits, event={}, segments=set(), by_day=False)
    assert isinstance(
        conditions.holds(_condition(op, expected), traits=traits, event={}, segments=set()), bool
    )

    assert isinstance(answer, bool)
    try:
        before = _before(traits.get("t", conditions._MISSING), op, expected)
    except TypeError:
        return  # used to fail the workflow task: any answer is new
    assert answer == before


def test_contains_is_a_substring_of_a_string_or_an_element_of_a_list_and_nothing_else():
    def holds(actual, value):
        return conditions.holds(_condition("contains", value), traits={"t": actual}, event={}, segments=set())

    assert holds("Ada Lovelace", "Love") and not holds("Ada", "x")
    assert not holds("Ada", 5) and not holds("5", 5) and not holds("Ada", None) and not holds("Ada", ["A"])
    assert holds([4, 5], 5) and holds(["vip"], "vip") and holds([["a"]], ["a"]) and not holds(["vip"], "v")
    assert not holds({"vip": True}, "vip") and not holds(55, 5) and not holds(None, 5)
    event_holds = conditions.holds(
        {"event_property": "plan", "op": "contains", "value": 1},
        traits={},
        event={"plan": "p1"},
        segments=set(),
    )
    assert event_holds is False


def test_ordering_between_types_that_do_not_compare_does_not_hold():
    for op in ("gt", "gte", "lt", "lte"):
        for actual in ("Ada", [1], {"a": 1}, None):
            assert (
                conditions.holds(_condition(op, 3), traits={"t": actual}, event={}, segments=set()) is False
            )


def test_a_date_plan_beyond_the_calendar_is_no_date():
    now = datetime(2026, 6, 1, tzinfo=UTC)
    tokyo, los_angeles = ZoneInfo("Asia/Tokyo"), ZoneInfo("America/Los_Angeles")
    for trait, offset, zone, at in (
        ("9999-12-31", 1, ZoneInfo("UTC"), "10:00"),
        ("0001-01-01", -1, ZoneInfo("UTC"), "10:00"),
        ("0001-01-01", 0, tokyo, "05:00"),
        ("9999-12-31", 0, los_angeles, "20:00"),
    ):
        moment = timing.plan(
            "date", now, zone, traits={"d": trait}, recent_sends=[], at=at, trait="d", offset_days=offset
        )
        assert moment == (None, None), (trait, offset, zone)
    # The last day the calendar holds still counts.
    assert timing.on_date(ZoneInfo("UTC"), date(9999, 12, 31), "23:59") == datetime(
        9999, 12, 31, 23, 59, tzinfo=UTC
    )


def _holds(actual, op, value) -> bool:
    return conditions.holds(_condition(op, value), traits={"t": actual}, event={}, segments=set())


def test_dates_compare_by_the_day_they_are_on_not_by_character():
    # By character "2024-9-1" sorted after "2024-10-01"; it is no date, so no comparison with one holds.
    assert not _holds("2024-9-1", "gt", "2024-10-01")
    assert not _holds("2024-10-01", "lt", "2024-9-1")
    # A timestamp is on its day: not after the day itself, whatever its time or offset.
    assert not _holds("2024-09-01T23:30:00-05:00", "gt", "2024-09-01")
    assert _holds("2024-09-01T23:30:00-05:00", "gte", "2024-09-01")
    assert _holds("2024-09-01T23:30:00-05:00", "lt", "2024-09-02")
    assert _holds("2024-10-01", "gt", "2024-09-01T10:00:00Z")
    # An impossible day, a date without its year, or any string that is no date: never ordered.
    for no_date in ("1990-05-99", "05-17", "soon", ""):
        assert not any(_holds(no_date, op, "2000-01-01") for op in ("gt", "gte", "lt", "lte")), no_date
    # Strings that are no dates at all still compare by character; numbers by value.
    assert _holds("b", "gt", "a") and _holds("05-17", "lt", "06-01") and _holds(3, "gte", 2.5)


def _day(d: date, suffix: str) -> str:
    return d.isoformat() + suffix


date_strings = st.one_of(
    st.builds(
        _day,
        st.dates(date(1999, 12, 25), date(2000, 1, 6)),
        st.sampled_from(["", "T00:30:00+14:00", "T23:30:00-11:00", "T12:00:00Z", " 08:00", "x"]),
    ),
    st.sampled_from(["1999-12-99", "2000-01-00", "1999-13-01", "2000-1-1", "01-01", "2000-02-30", "1999"]),
)


@given(actual=date_strings, value=st.dates(date(1999, 12, 28), date(2000, 1, 3)))
def test_a_branch_on_a_date_decides_as_segments_before_and_after_do(actual, value):
    now = datetime(2000, 1, 1, tzinfo=UTC)

    def segment(op: str) -> bool:
        test = r.parse({"trait": "t", "op": op, "value": value.isoformat()}).test
        return evaluate.test_value(test, {"t": actual}, None, now)

    expected = value.isoformat()
    assert _holds(actual, "lt", expected) == segment("before")
    assert _holds(actual, "gt", expected) == segment("after")
    dated = _holds(actual, "gte", expected) or _holds(actual, "lt", expected)
    assert _holds(actual, "gte", expected) == (dated and not segment("before"))
    assert _holds(actual, "lte", expected) == (dated and not segment("after"))
