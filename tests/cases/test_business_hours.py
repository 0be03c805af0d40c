"""SLA targets counted in business hours, in the policy's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from domain.cases.business_hours import BusinessHours, add_minutes
from domain.cases.models import Case
from tests.cases.helpers import make_customer, make_team, open_case

PARIS = ZoneInfo("Europe/Paris")
OFFICE = BusinessHours("Europe/Paris", frozenset(range(5)), time(9), time(17))


def paris(*args) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def test_time_outside_business_hours_does_not_count():
    # Friday 16:00 + 2 working hours: one hour on Friday, one on Monday morning.
    assert add_minutes(paris(2026, 11, 20, 16, 0), 120, OFFICE) == paris(2026, 11, 23, 10, 0).astimezone(UTC)
    # Opened on Saturday night: the clock starts on Monday at 09:00.
    assert add_minutes(paris(2026, 11, 21, 23, 0), 30, OFFICE) == paris(2026, 11, 23, 9, 30).astimezone(UTC)
    # Three working days.
    assert add_minutes(paris(2026, 11, 23, 9, 0), 3 * 8 * 60, OFFICE) == paris(
        2026, 11, 25, 17, 0
    ).astimezone(UTC)
    # Across the change to summer time the office still opens at 09:00 local time.
    assert add_minutes(paris(2026, 3, 27, 16, 30), 60, OFFICE) == paris(2026, 3, 30, 9, 30).astimezone(UTC)
    assert add_minutes(paris(2026, 11, 20, 16, 0), 120, None) == paris(2026, 11, 20, 18, 0)


NIGHT_DESK = BusinessHours("Europe/Paris", frozenset(range(7)), time(0), time(8))


def test_a_case_opened_in_the_hour_repeated_when_the_clocks_go_back_is_due_after_it_opened():
    """25 October 2026, Paris: 03:00 CEST becomes 02:00 CET. A case opened at the second 02:30 with ten
    minutes to answer is due at the 02:40 that follows it, not at the first one, an hour before."""
    opened = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert opened.astimezone(PARIS).strftime("%H:%M %Z") == "02:30 CET"
    assert add_minutes(opened, 10, NIGHT_DESK) == datetime(2026, 10, 25, 1, 40, tzinfo=UTC)
    # Opened at the first 02:30, it is due at the first 02:40.
    assert add_minutes(opened - timedelta(hours=1), 10, NIGHT_DESK) == datetime(
        2026, 10, 25, 0, 40, tzinfo=UTC
    )


def test_a_deadline_the_clocks_skip_is_due_when_they_jump_past_it():
    """29 March 2026, Paris: 02:00 CET becomes 03:00 CEST. From 01:50, 20 minutes of the wall clock end
    at 02:10, which never shows: due at the jump, 03:00 CEST, before the deadline of 30 minutes after."""
    opened = datetime(2026, 3, 29, 0, 50, tzinfo=UTC)
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert add_minutes(opened, 20, NIGHT_DESK) == jump
    assert add_minutes(opened, 59, NIGHT_DESK) == jump
    assert add_minutes(opened, 71, NIGHT_DESK) == jump + timedelta(minutes=1)  # 03:01 CEST


# Instants when the clocks change: Paris and New York by an hour, Lord Howe Island by half an hour.
CHANGES = [
    ("Europe/Paris", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
    ("Europe/Paris", datetime(2026, 10, 25, 1, 0, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 11, 1, 6, 0, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2026, 4, 4, 15, 0, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
]
clock_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@settings(max_examples=400, deadline=None)
@given(
    change=st.sampled_from(CHANGES),
    offset=st.integers(-3 * 60, 3 * 60),
    opens=clock_times,
    closes=clock_times,
    days=st.frozensets(st.integers(0, 6), min_size=1),
    minutes=st.integers(1, 240),
    more=st.integers(1, 240),
)
def test_deadlines_around_a_clock_change_fall_after_the_opening_and_in_order_of_their_targets(
    change, offset, opens, closes, days, minutes, more
):
    zone, moment = change
    opens, closes = sorted((opens, closes))
    if opens == closes:
        return
    hours = BusinessHours(zone, days, opens, closes)
    opened = moment + timedelta(minutes=offset)
    due = add_minutes(opened, minutes, hours)
    assert due > opened
    assert add_minutes(opened, minutes + more, hours) >= due


async def test_a_policy_with_business_hours_sets_the_deadlines_of_new_cases(client, sessions, admin_headers):
    response = await client.put(
        "/api/cases/sla-policies/normal",
        json={
            "first_response_minutes": 60,
            "resolution_minutes": 600,
            "business_hours": {
                "timezone": "Europe/Paris",
                "days": [0, 1, 2, 3, 4],
                "start": "09:00",
                "end": "17:00",
            },
        },
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["business_hours"]["start"] == "09:00:00"
    await make_team(sessions, "care")
    case_id = await open_case(
        sessions, await make_customer(sessions, "u1"), "care", now=paris(2026, 11, 20, 16, 30).astimezone(UTC)
    )
    async with sessions() as session:
        case = (await session.scalars(select(Case).where(Case.id == case_id))).one()
    assert case.first_response_due == paris(2026, 11, 23, 9, 30).astimezone(UTC)
    assert case.resolution_due == paris(2026, 11, 24, 10, 30).astimezone(UTC)  # 30 min + 8 h + 1 h 30


async def test_bad_business_hours_are_refused_by_name(client, admin_headers):
    base = {"first_response_minutes": 60, "resolution_minutes": 600}
    for hours, field in [
        ({"timezone": "Mars/Olympus", "start": "09:00", "end": "17:00"}, "business_hours.timezone"),
        ({"timezone": "UTC", "days": [7], "start": "09:00", "end": "17:00"}, "business_hours.days"),
        ({"timezone": "UTC", "start": "17:00", "end": "09:00"}, "business_hours"),
    ]:
        response = await client.put(
            "/api/cases/sla-policies/low", json={**base, "business_hours": hours}, headers=admin_headers
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["field"] == field
    policies = (await client.get("/api/cases/sla-policies", headers=admin_headers)).json()
    assert next(p for p in policies if p["priority"] == "low")["default"] is True
