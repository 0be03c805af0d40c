"""A case released in an auto-assigning team is handed out again; business hours take the product's
zone names only."""

from __future__ import annotations

import pytest

from domain.cases.models import Case, SlaPolicy
from domain.db import transaction
from tests.cases.helpers import make_agent, make_customer, make_team, open_case


async def _case(sessions, case_id: int) -> Case:
    async with sessions() as session:
        return await session.get(Case, case_id)


async def test_a_case_released_in_an_auto_assigning_team_goes_to_the_next_free_agent(client, sessions):
    await make_team(sessions, "vip", auto_assign=True)
    ann = await make_agent(sessions, "ann", "vip")
    bob = await make_agent(sessions, "bob", "vip")
    case_id = await open_case(sessions, await make_customer(sessions, "rel-1"), "vip")
    assert (await _case(sessions, case_id)).assignee_id == ann["id"]

    released = await client.post(f"/api/cases/{case_id}/release", headers=ann["headers"])
    assert released.status_code == 200, released.text
    assert (released.json()["assignee_id"], released.json()["status"]) == (bob["id"], "assigned")
    stored = await _case(sessions, case_id)
    assert (stored.assignee_id, stored.status) == (bob["id"], "assigned")
    notes = (await client.get(f"/api/cases/{case_id}", headers=bob["headers"])).json()["notes"]
    assert [n["kind"] for n in notes][-2:] == ["released", "assigned"]


async def test_a_case_released_by_the_only_free_agent_waits_in_the_queue(client, sessions):
    await make_team(sessions, "vip", auto_assign=True)
    ann = await make_agent(sessions, "ann", "vip")
    await make_agent(sessions, "away", "vip", available=False)
    case_id = await open_case(sessions, await make_customer(sessions, "rel-2"), "vip")
    released = await client.post(f"/api/cases/{case_id}/release", headers=ann["headers"])
    assert (released.json()["assignee_id"], released.json()["status"]) == (None, "open")
    stored = await _case(sessions, case_id)
    assert (stored.assignee_id, stored.status) == (None, "open")


def _hours(zone: str) -> dict:
    return {
        "first_response_minutes": 30,
        "resolution_minutes": 240,
        "business_hours": {"timezone": zone, "days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"},
    }


@pytest.mark.parametrize(
    "zone", ["posix/Europe/Paris", "right/UTC", "europe/paris", "Mars/Olympus", "localtime"]
)
async def test_business_hours_take_only_the_products_zone_names(client, admin_headers, sessions, zone):
    response = await client.put("/api/cases/sla-policies/high", json=_hours(zone), headers=admin_headers)
    assert response.status_code == 422, response.text
    problems = {p["field"]: p["problem"] for p in response.json()["detail"]}
    assert any(field.endswith("timezone") for field in problems), problems
    async with sessions() as session:
        assert await session.get(SlaPolicy, "high") is None  # nothing stored


async def test_business_hours_in_an_iana_zone_are_taken(client, admin_headers):
    response = await client.put(
        "/api/cases/sla-policies/high", json=_hours("Europe/Paris"), headers=admin_headers
    )
    assert response.status_code == 200, response.text


async def test_a_policy_saved_with_another_zone_file_still_opens_cases(client, admin_headers, sessions):
    await make_team(sessions, "care")
    async with transaction(sessions) as session:
        session.add(
            SlaPolicy(
                priority="normal",
                first_response_minutes=30,
                resolution_minutes=240,
                business_hours=_hours("posix/Europe/Paris")["business_hours"],
            )
        )
    case_id = await open_case(sessions, await make_customer(sessions, "rel-3"), "care")
    assert (await _case(sessions, case_id)).first_response_due is not None
    listed = await client.get("/api/cases/sla-policies", headers=admin_headers)
    assert listed.status_code == 200, listed.text
