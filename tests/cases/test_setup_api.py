"""Admins set up teams, agents and SLA policies over HTTP; agents then work with their own key."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.cases.helpers import make_customer


async def test_admin_sets_up_a_team_and_an_agent_who_then_works_the_queue(client, sessions, admin_headers):
    assert (
        await client.post("/api/teams", json={"id": "leads", "name": "Leads"}, headers=admin_headers)
    ).status_code == 201
    team = await client.post(
        "/api/teams", json={"id": "care", "name": "Care", "supervisor_team": "leads"}, headers=admin_headers
    )
    assert team.status_code == 201
    agent = await client.post(
        "/api/agents", json={"name": "Ann", "teams": ["care"], "max_open_cases": 3}, headers=admin_headers
    )
    assert agent.status_code == 201
    key = agent.json()["api_key"]
    headers = {"Authorization": f"Bearer {key}"}

    me = (await client.get("/api/agents/me", headers=headers)).json()
    assert (me["name"], me["teams"], me["max_open_cases"], me["open_cases"]) == ("Ann", ["care"], 3, 0)
    assert (await client.patch("/api/agents/me", json={"available": False}, headers=headers)).json()[
        "available"
    ] is False
    listed = (await client.get("/api/teams", headers=admin_headers)).json()
    assert {t["id"]: t["agent_ids"] for t in listed} == {"care": [me["id"]], "leads": []}
    assert (await client.get("/api/agents", headers=headers)).status_code == 403  # admins only

    customer = await make_customer(sessions, "u1")
    opened = await client.post(
        "/api/cases", json={"customer_id": customer, "reason": "call back", "team": "care"}, headers=headers
    )
    assert opened.status_code == 201
    assert (await client.post("/api/cases/next", headers=headers)).json()["case"]["id"] == opened.json()["id"]


async def test_team_and_agent_input_is_checked(client, admin_headers):
    bad_id = await client.post("/api/teams", json={"id": "Care Team!", "name": "x"}, headers=admin_headers)
    assert bad_id.status_code == 422
    assert bad_id.json()["detail"][0]["field"] == "id"
    no_supervisor = await client.post(
        "/api/teams", json={"id": "care", "name": "x", "supervisor_team": "ghosts"}, headers=admin_headers
    )
    assert no_supervisor.status_code == 422
    assert no_supervisor.json()["detail"]["field"] == "supervisor_team"
    assert (
        await client.post("/api/teams", json={"id": "care", "name": "x"}, headers=admin_headers)
    ).status_code == 201
    assert (
        await client.post("/api/teams", json={"id": "care", "name": "x"}, headers=admin_headers)
    ).status_code == 409
    no_team = await client.post(
        "/api/agents", json={"name": "Bo", "teams": ["ghosts"]}, headers=admin_headers
    )
    assert no_team.status_code == 422
    assert no_team.json()["detail"] == {"field": "teams", "problem": "no team 'ghosts'"}
    assert (await client.get("/api/keys", headers=admin_headers)).json() == [
        k
        for k in (await client.get("/api/keys", headers=admin_headers)).json()
        if not k["name"].startswith("agent ")
    ]  # no key was left behind by the refused agent


async def test_sla_policies_set_the_deadlines_of_new_cases(client, sessions, admin_headers):
    await client.post("/api/teams", json={"id": "care", "name": "Care"}, headers=admin_headers)
    policies = {
        p["priority"]: p for p in (await client.get("/api/cases/sla-policies", headers=admin_headers)).json()
    }
    assert policies["urgent"]["default"] is True
    refused = await client.put(
        "/api/cases/sla-policies/high",
        json={"first_response_minutes": 60, "resolution_minutes": 30},
        headers=admin_headers,
    )
    assert refused.status_code == 422
    assert refused.json()["detail"]["field"] == "resolution_minutes"
    updated = await client.put(
        "/api/cases/sla-policies/high",
        json={"first_response_minutes": 5, "resolution_minutes": 90},
        headers=admin_headers,
    )
    assert updated.status_code == 200
    customer = await make_customer(sessions, "u1")
    case = (
        await client.post(
            "/api/cases",
            json={"customer_id": customer, "reason": "x", "team": "care", "priority": "high"},
            headers=admin_headers,
        )
    ).json()
    created = datetime.fromisoformat(case["created_at"])
    assert datetime.fromisoformat(case["first_response_due"]) - created == timedelta(minutes=5)
    assert datetime.fromisoformat(case["resolution_due"]) - created == timedelta(minutes=90)
