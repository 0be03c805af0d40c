"""SLA targets counted in business hours, in the policy's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

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
