"""Pulling work from the queue: atomic claims, SLA ordering, round-robin assignment with caps."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from domain.cases import service as cases
from domain.cases.models import Case
from domain.cases.schemas import Priority
from domain.db import transaction, utcnow
from tests.cases.helpers import make_agent, make_customer, make_team, open_case


async def test_twenty_agents_racing_for_ten_cases_each_case_goes_to_exactly_one(client, sessions):
    await make_team(sessions, "care")
    customer = await make_customer(sessions, "u1")
    case_ids = {await open_case(sessions, customer, "care", reason=f"case {i}") for i in range(10)}
    agents = [await make_agent(sessions, f"agent {i}", "care") for i in range(20)]

    responses = await asyncio.gather(
        *(client.post("/api/cases/next", headers=agent["headers"]) for agent in agents)
    )

    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    bodies = [r.json() for r in responses]
    winners = {
        agent["id"]: body["case"]["id"] for agent, body in zip(agents, bodies, strict=True) if body["case"]
    }
    empty = [body for body in bodies if body["case"] is None]
    assert sorted(winners.values()) == sorted(case_ids)  # every case claimed, none twice
    assert len(empty) == 10
    assert all(body["detail"] == "no unassigned open case in your teams" for body in empty)
    async with sessions() as session:
        stored = {c.id: c for c in await session.scalars(select(Case))}
    for agent_id, case_id in winners.items():
        assert stored[case_id].assignee_id == agent_id
        assert stored[case_id].status == "assigned"
        assert stored[case_id].first_responded_at is not None


async def test_next_takes_the_nearest_sla_deadline_first(client, sessions):
    await make_team(sessions, "care")
    agent = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, "u1")
    now = utcnow()
    low = await open_case(sessions, customer, "care", priority=Priority.low, now=now)
    urgent = await open_case(sessions, customer, "care", priority=Priority.urgent, now=now)
    # Normal but opened long ago: its first-response deadline is the nearest of all.
    overdue = await open_case(
        sessions, customer, "care", priority=Priority.normal, now=now - timedelta(hours=5)
    )

    queue = await client.get("/api/cases", headers=agent["headers"])
    assert [c["id"] for c in queue.json()] == [overdue, urgent, low]
    claimed = [
        (await client.post("/api/cases/next", headers=agent["headers"])).json()["case"]["id"]
        for _ in range(3)
    ]
    assert claimed == [overdue, urgent, low]


async def test_an_agent_at_their_cap_gets_a_409_and_claims_nothing(client, sessions):
    await make_team(sessions, "care")
    agent = await make_agent(sessions, "ann", "care", cap=1)
    customer = await make_customer(sessions, "u1")
    await open_case(sessions, customer, "care")
    second = await open_case(sessions, customer, "care")
    assert (await client.post("/api/cases/next", headers=agent["headers"])).json()["case"] is not None

    refused = await client.post("/api/cases/next", headers=agent["headers"])
    assert refused.status_code == 409
    assert refused.json()["error"] == "at_capacity"
    async with sessions() as session:
        assert (await session.get(Case, second)).assignee_id is None


async def test_an_agent_claiming_in_parallel_stays_within_their_cap(client, sessions):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care", cap=2)
    customer = await make_customer(sessions, "u1")
    ids = [await open_case(sessions, customer, "care", reason=f"case {i}") for i in range(10)]
    h = ann["headers"]

    pulls = [client.post("/api/cases/next", headers=h) for _ in range(4)]
    claims = [client.post(f"/api/cases/{i}/claim", headers=h) for i in ids[5:]]
    responses = await asyncio.gather(*pulls, *claims)

    won = [r for r in responses if r.status_code == 200 and (r.json().get("case") or r.json().get("id"))]
    assert len(won) == 2, [r.text for r in responses]
    assert all(r.status_code in (200, 409) for r in responses), [r.text for r in responses]
    assert {r.json()["error"] for r in responses if r.status_code == 409} == {"at_capacity"}
    async with sessions() as session:
        held = list(await session.scalars(select(Case.id).where(Case.assignee_id == ann["id"])))
    assert len(held) == 2


async def test_racing_changes_of_one_case_take_turns_and_the_second_is_refused(client, sessions):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, "u1")
    h = ann["headers"]
    for i in range(5):
        case_id = await open_case(sessions, customer, "care", reason=f"case {i}")
        assert (await client.post(f"/api/cases/{case_id}/claim", headers=h)).status_code == 200

        resolved, released = await asyncio.gather(
            client.post(f"/api/cases/{case_id}/resolve", headers=h, json={"outcome": "solved"}),
            client.post(f"/api/cases/{case_id}/release", headers=h),
        )

        assert sorted([resolved.status_code, released.status_code]) == [200, 409], (
            resolved.text,
            released.text,
        )
        async with sessions() as session:
            case = await session.get(Case, case_id)
        if resolved.status_code == 200:
            assert (case.status, case.outcome, case.assignee_id) == ("resolved", "solved", ann["id"])
        else:
            assert (case.status, case.outcome, case.resolved_at, case.assignee_id) == (
                "open",
                None,
                None,
                None,
            )
        assert case.revision == 3  # opened, claimed, then one change


async def test_claim_a_given_case_then_a_second_agent_is_refused(client, sessions):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    bob = await make_agent(sessions, "bob", "care")
    case_id = await open_case(sessions, await make_customer(sessions, "u1"), "care")

    assert (await client.post(f"/api/cases/{case_id}/claim", headers=ann["headers"])).status_code == 200
    taken = await client.post(f"/api/cases/{case_id}/claim", headers=bob["headers"])
    assert taken.status_code == 409
    assert f"held by agent {ann['id']}" in taken.json()["detail"]

    released = await client.post(f"/api/cases/{case_id}/release", headers=ann["headers"])
    assert released.json()["status"] == "open"
    assert (await client.post(f"/api/cases/{case_id}/claim", headers=bob["headers"])).json()[
        "assignee_id"
    ] == bob["id"]


async def test_round_robin_spreads_new_cases_over_available_agents_below_their_cap(client, sessions):
    await make_team(sessions, "vip", auto_assign=True)
    ann = await make_agent(sessions, "ann", "vip", cap=2)
    bob = await make_agent(sessions, "bob", "vip", cap=1)
    await make_agent(sessions, "away", "vip", available=False)
    customer = await make_customer(sessions, "u1")

    assignees = []
    for _ in range(4):
        case_id = await open_case(sessions, customer, "vip")
        async with sessions() as session:
            assignees.append((await session.get(Case, case_id)).assignee_id)

    # ann, bob, ann in turn; then both are at their cap and the case waits in the queue.
    assert assignees == [ann["id"], bob["id"], ann["id"], None]
    mine = await client.get("/api/cases?assignee=me", headers=ann["headers"])
    assert len(mine.json()) == 2
    waiting = await client.get("/api/cases?assignee=none", headers=bob["headers"])
    assert [c["status"] for c in waiting.json()] == ["open"]


async def test_a_breached_case_goes_to_a_supervisor_when_that_team_assigns_automatically(sessions):
    await make_team(sessions, "leads", auto_assign=True)
    await make_team(sessions, "care", supervisor="leads")
    lead = await make_agent(sessions, "lee", "leads")
    case_id = await open_case(sessions, await make_customer(sessions, "u1"), "care")
    async with transaction(sessions) as session:
        first = await cases.record_breach(session, case_id, "first_response")
        again = await cases.record_breach(session, case_id, "resolution")
    assert (first.escalated, first.team, first.status, first.priority) == (True, "leads", "assigned", "high")
    assert not again.escalated
    async with sessions() as session:
        case = await session.get(Case, case_id)
    assert (case.assignee_id, case.team_id, case.escalated_from_team_id) == (lead["id"], "leads", "care")


async def test_claiming_a_case_the_team_handed_you_is_its_first_response(client, sessions):
    await make_team(sessions, "vip", auto_assign=True)
    ann = await make_agent(sessions, "ann", "vip")
    case_id = await open_case(sessions, await make_customer(sessions, "u1"), "vip")
    before = (await client.get(f"/api/cases/{case_id}", headers=ann["headers"])).json()
    assert (before["assignee_id"], before["first_responded_at"]) == (ann["id"], None)

    claimed = await client.post(f"/api/cases/{case_id}/claim", headers=ann["headers"])
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["first_responded_at"] is not None
    assert claimed.json()["due_at"] == before["resolution_due"]


async def test_an_agent_at_their_cap_is_told_why_a_case_cannot_be_claimed(client, sessions):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care", cap=1)
    bob = await make_agent(sessions, "bob", "care")
    customer = await make_customer(sessions, "u1")
    finished, held, mine = [await open_case(sessions, customer, "care", reason=f"c{i}") for i in range(3)]
    for case_id in (finished, held):
        assert (await client.post(f"/api/cases/{case_id}/claim", headers=bob["headers"])).status_code == 200
    resolve = {"outcome": "solved"}
    assert (
        await client.post(f"/api/cases/{finished}/resolve", headers=bob["headers"], json=resolve)
    ).is_success
    assert (await client.post(f"/api/cases/{mine}/claim", headers=ann["headers"])).status_code == 200

    # Ann is at her cap of one; the case itself is why she cannot have these.
    for case_id, problem in (
        (finished, f"case {finished} is resolved"),
        (held, f"held by agent {bob['id']}"),
    ):
        refused = await client.post(f"/api/cases/{case_id}/claim", headers=ann["headers"])
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "not_claimable", refused.text
        assert problem in refused.json()["detail"], refused.text
