"""SLA business hours the API fuzzer found answered with a 500: a zone or a number for a time (comparing
naive and aware times raised), and hours too narrow for the targets (accepted, then every case of that
priority failed to open)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from temporalio.testing import ActivityEnvironment

from activities.cases import CaseActivities
from activities.contracts import OpenCaseRequest
from domain.cases.business_hours import HORIZON_WEEKS, BusinessHours, add_minutes
from domain.cases.models import Case, SlaPolicy
from domain.cases.schemas import Priority
from domain.db import transaction
from tests.cases.helpers import make_agent, make_customer, make_team, open_case

FORM = {"content-type": "application/x-www-form-urlencoded"}
TARGETS = {"first_response_minutes": 30, "resolution_minutes": 480}


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("09:00Z", "17:00", "business_hours.start"),
        ("09:00+05:00", "17:00", "business_hours.start"),
        ("09:00", "17:00Z", "business_hours.end"),
        (0, "17:00", "business_hours.start"),
        ("09:00", 0.5, "business_hours.end"),
        ("09:00Z", "17:00Z", "business_hours.start"),  # comparable, but still not a local time
    ],
)
async def test_business_hours_take_local_times_without_a_zone(client, admin_headers, start, end, field):
    hours = {"timezone": "UTC", "days": [0], "start": start, "end": end}
    response = await client.put(
        "/api/cases/sla-policies/low", json={**TARGETS, "business_hours": hours}, headers=admin_headers
    )
    assert response.status_code == 422, response.text
    problems = {p["field"]: p["problem"] for p in response.json()["detail"]}
    assert field in problems, problems
    assert "without a zone" in problems[field]
    policies = (await client.get("/api/cases/sla-policies", headers=admin_headers)).json()
    assert next(p for p in policies if p["priority"] == "low")["default"] is True


async def test_business_hours_too_narrow_for_the_targets_are_refused(client, sessions, admin_headers):
    minute_a_week = {"timezone": "UTC", "days": [6], "start": "09:00", "end": "09:01"}
    spec = {"first_response_minutes": 129600, "resolution_minutes": 525600, "business_hours": minute_a_week}
    response = await client.put("/api/cases/sla-policies/low", json=spec, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]["field"] == "business_hours"
    assert "resolution_minutes" in response.json()["detail"]["problem"]

    # The most those hours can carry is accepted, and its deadlines are exact.
    spec = {**spec, "first_response_minutes": 30, "resolution_minutes": HORIZON_WEEKS}
    response = await client.put("/api/cases/sla-policies/low", json=spec, headers=admin_headers)
    assert response.status_code == 200, response.text
    await make_team(sessions, "care")
    monday = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    customer = await make_customer(sessions, "u1")
    case_id = await open_case(sessions, customer, "care", priority=Priority.low, now=monday)
    async with sessions() as session:
        case = await session.get(Case, case_id)
    # Each Sunday gives one minute: the deadlines are the 30th and the last Sundays' minute from then.
    first_sunday_closes = datetime(2026, 11, 29, 9, 1, tzinfo=UTC)
    assert case.first_response_due == first_sunday_closes + timedelta(weeks=29)
    assert case.resolution_due == first_sunday_closes + timedelta(weeks=HORIZON_WEEKS - 1)


async def test_a_too_narrow_policy_saved_before_still_opens_cases(client, sessions, admin_headers):
    """Saved when it was not refused (or with a zone on its times): cases still open, by hand and from a
    journey, with deadlines at the horizon rather than a 500."""
    response = await client.put("/api/cases/sla-policies/low", json=TARGETS, headers=admin_headers)
    assert response.status_code == 200
    stored = {"timezone": "UTC", "days": [6], "start": "09:00:00Z", "end": "09:01:00Z"}
    async with transaction(sessions) as session:
        await session.execute(
            update(SlaPolicy)
            .where(SlaPolicy.priority == "low")
            .values(first_response_minutes=129600, resolution_minutes=525600, business_hours=stored)
        )
    policies = await client.get("/api/cases/sla-policies", headers=admin_headers)
    assert policies.status_code == 200, policies.text
    low = next(p for p in policies.json() if p["priority"] == "low")
    assert low["business_hours"]["start"] == "09:00:00"

    await make_team(sessions, "care")
    agent = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, "u1")
    opened = await client.post(
        "/api/cases",
        json={"customer_id": customer, "reason": "r", "team": "care", "priority": "low"},
        headers=agent["headers"],
    )
    assert opened.status_code == 201, opened.text
    created = datetime.fromisoformat(opened.json()["created_at"])
    async with sessions() as session:
        case = await session.get(Case, opened.json()["id"])
    assert case.resolution_due == created + timedelta(weeks=HORIZON_WEEKS)
    assert case.first_response_due <= case.resolution_due

    req = OpenCaseRequest(
        idempotency_key="j/1", customer_id=customer, reason="r", team="care", priority="low"
    )
    case_id = await ActivityEnvironment().run(CaseActivities(sessions).open_case, req)
    async with sessions() as session:
        assert (await session.get(Case, case_id)).status == "open"


def _walk(start: datetime, minutes: int, hours: BusinessHours) -> datetime:
    """The day-by-day walk deadlines were computed with before whole weeks were skipped."""
    tz, remaining = ZoneInfo(hours.timezone), timedelta(minutes=minutes)
    local = start.astimezone(tz)
    day = local.date()
    while True:
        if day.weekday() in hours.days:
            opens, closes = datetime.combine(day, hours.start, tz), datetime.combine(day, hours.end, tz)
            begin = max(opens, local)
            if begin < closes:
                if remaining <= closes - begin:
                    return (begin + remaining).astimezone(UTC)
                remaining -= closes - begin
        day += timedelta(days=1)


def test_skipping_whole_weeks_gives_the_deadlines_walking_day_by_day_gave():
    rng = random.Random(20261123)
    zones = ["Europe/Paris", "UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
    for _ in range(400):
        opens, closes = sorted(rng.sample(range(24 * 60), 2))
        hours = BusinessHours(
            rng.choice(zones),
            frozenset(rng.sample(range(7), rng.randint(1, 7))),
            time(opens // 60, opens % 60),
            time(closes // 60, closes % 60),
        )
        start = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 60 * 24 * 365 * 10))
        week = int(hours.weekly().total_seconds() // 60)
        for minutes in (1, rng.randint(1, 600), week, week * rng.randint(2, 50), week * HORIZON_WEEKS):
            assert add_minutes(start, minutes, hours) == _walk(start, minutes, hours), (hours, start, minutes)
