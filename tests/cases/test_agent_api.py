"""The agent API: who may see and change which case, bad input, data returned as given."""

from __future__ import annotations

from sqlalchemy import func, select

from domain.auth.schemas import Role
from domain.cases.models import Case, CaseNote
from domain.customers import service as customers
from domain.db import transaction
from domain.events.models import Event, EventOutbox
from tests.cases.helpers import make_agent, make_customer, make_team, open_case
from tests.conftest import make_key

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def _snapshot(sessions, case_id: int) -> tuple:
    async with sessions() as session:
        case = await session.get(Case, case_id)
        notes = await session.scalar(
            select(func.count()).select_from(CaseNote).where(CaseNote.case_id == case_id)
        )
        return (
            case.status,
            case.assignee_id,
            case.outcome,
            case.priority,
            case.team_id,
            case.revision,
            notes,
        )


async def test_an_agent_cannot_read_or_change_another_teams_case(client, sessions):
    await make_team(sessions, "billing")
    await make_team(sessions, "care")
    outsider = await make_agent(sessions, "olga", "billing")
    case_id = await open_case(sessions, await make_customer(sessions, "u1"), "care")
    before = await _snapshot(sessions, case_id)
    h = outsider["headers"]

    for method, path, body in [
        ("GET", f"/api/cases/{case_id}", None),
        ("POST", f"/api/cases/{case_id}/claim", None),
        ("POST", f"/api/cases/{case_id}/notes", {"body": "hi"}),
        ("POST", f"/api/cases/{case_id}/resolve", {"outcome": "solved"}),
        ("POST", f"/api/cases/{case_id}/release", None),
        ("GET", "/api/cases?team=care", None),
    ]:
        response = await client.request(method, path, json=body, headers=h)
        assert response.status_code == 404, (path, response.text)
    assert (await client.get("/api/cases", headers=h)).json() == []
    assert (await client.post("/api/cases/next", headers=h)).json()["case"] is None
    assert await _snapshot(sessions, case_id) == before


async def test_the_customer_360_shows_an_agent_only_their_teams_cases(client, sessions, marketer_headers):
    await make_team(sessions, "billing")
    await make_team(sessions, "care")
    olga = await make_agent(sessions, "olga", "billing")
    customer = await make_customer(sessions, "u1")
    care_case = await open_case(sessions, customer, "care", reason="a private care matter")
    billing_case = await open_case(sessions, customer, "billing", reason="an invoice")
    unlinked = {"Authorization": f"Bearer {await make_key(sessions, role=Role.agent)}"}

    def cases_seen(response) -> list[int]:
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["cases"]]

    def case_events(response) -> list[int]:
        return [
            e["properties"]["case_id"] for e in response.json()["recent_events"] if e["name"] == "Case Opened"
        ]

    view = await client.get(f"/api/customers/{customer}", headers=olga["headers"])
    assert cases_seen(view) == [billing_case]
    assert case_events(view) == [billing_case]  # nor the event of the other team's case
    assert "a private care matter" not in view.text
    assert cases_seen(await client.get(f"/api/customers/{customer}", headers=unlinked)) == []
    everyone = await client.get(f"/api/customers/{customer}", headers=marketer_headers)
    assert cases_seen(everyone) == [billing_case, care_case]
    assert sorted(case_events(everyone)) == [care_case, billing_case]


async def test_a_case_of_an_agents_team_shows_nothing_of_another_teams_cases(
    client, sessions, marketer_headers
):
    """The context a case keeps (the customer's recent events when it opened) holds the events of the
    customer's earlier cases: those of other teams stay hidden from an agent, as in the customer 360."""
    await make_team(sessions, "billing")
    await make_team(sessions, "fraud")
    olga = await make_agent(sessions, "olga", "billing")
    customer = await make_customer(sessions, "u1")
    await open_case(sessions, customer, "fraud", reason="suspected card fraud, do not tell the customer")
    own_earlier = await open_case(sessions, customer, "billing", reason="an invoice")
    billing_case = await open_case(sessions, customer, "billing", reason="a refund")

    detail = await client.get(f"/api/cases/{billing_case}", headers=olga["headers"])
    assert detail.status_code == 200, detail.text
    assert "card fraud" not in detail.text and "fraud" not in detail.text
    seen = [e["properties"]["case_id"] for e in detail.json()["context"]["recent_events"]]
    assert seen == [own_earlier]
    view = await client.get(f"/api/customers/{customer}", headers=olga["headers"])
    assert view.json()["facts"]["track_counts"] == {"Case Opened": 2}  # the fraud case is not counted

    # whoever sees every team sees it all
    everyone = await client.get(f"/api/customers/{customer}", headers=marketer_headers)
    assert everyone.json()["facts"]["track_counts"] == {"Case Opened": 3}
    admin = {"Authorization": f"Bearer {await make_key(sessions, role=Role.admin)}"}
    full = await client.get(f"/api/cases/{billing_case}", headers=admin)
    assert "card fraud" in full.text


async def test_marketer_cannot_claim_and_a_write_key_reads_nothing(
    client, sessions, marketer_headers, write_key
):
    await make_team(sessions, "care")
    case_id = await open_case(sessions, await make_customer(sessions, "u1"), "care")
    refused = await client.post("/api/cases/next", headers=marketer_headers)
    assert refused.status_code == 403
    assert (await client.post(f"/api/cases/{case_id}/claim", headers=marketer_headers)).status_code == 403
    for auth in ({"headers": {"Authorization": f"Bearer {write_key}"}}, {"auth": (write_key, "")}):
        assert (await client.get("/api/cases", **auth)).status_code == 403
        assert (await client.get(f"/api/cases/{case_id}", **auth)).status_code == 403
    async with sessions() as session:
        assert (await session.get(Case, case_id)).assignee_id is None


async def test_an_agent_role_key_without_an_agent_is_refused(client, sessions):
    await make_team(sessions, "care")
    headers = {"Authorization": f"Bearer {await make_key(sessions, role=Role.agent)}"}
    response = await client.post("/api/cases/next", headers=headers)
    assert response.status_code == 403
    assert "not linked to an agent" in response.json()["detail"]


async def test_bad_input_is_refused_with_the_problem_named_and_nothing_changes(client, sessions):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    bob = await make_agent(sessions, "bob", "care")
    customer = await make_customer(sessions, "u1")
    case_id = await open_case(sessions, customer, "care")
    assert (await client.post(f"/api/cases/{case_id}/claim", headers=ann["headers"])).status_code == 200
    before = await _snapshot(sessions, case_id)

    unknown = await client.post(
        f"/api/cases/{case_id}/resolve", json={"outcome": "magic"}, headers=ann["headers"]
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["field"] == "outcome"
    assert "solved" in unknown.json()["detail"][0]["problem"]

    not_yours = await client.post(
        f"/api/cases/{case_id}/resolve", json={"outcome": "solved"}, headers=bob["headers"]
    )
    assert not_yours.status_code == 409
    assert f"held by agent {ann['id']}" in not_yours.json()["detail"]
    assert (await client.post(f"/api/cases/{case_id}/pending", headers=bob["headers"])).status_code == 409
    assert (await client.post(f"/api/cases/{case_id}/release", headers=bob["headers"])).status_code == 409
    assert await _snapshot(sessions, case_id) == before

    async with sessions() as session:
        cases_before = await session.scalar(select(func.count()).select_from(Case))
    bad_priority = await client.post(
        "/api/cases",
        json={"customer_id": customer, "reason": "x", "team": "care", "priority": "critical"},
        headers=ann["headers"],
    )
    assert bad_priority.status_code == 422
    assert bad_priority.json()["detail"][0]["field"] == "priority"
    no_customer = await client.post(
        "/api/cases", json={"customer_id": 999999, "reason": "x", "team": "care"}, headers=ann["headers"]
    )
    assert no_customer.status_code == 422
    assert no_customer.json()["detail"] == {"field": "customer_id", "problem": "no customer 999999"}
    other_team = await client.post(
        "/api/cases", json={"customer_id": customer, "reason": "x", "team": "billing"}, headers=ann["headers"]
    )
    assert other_team.status_code == 422
    assert other_team.json()["detail"]["field"] == "team"
    bad_filter = await client.get("/api/cases?priority=critical", headers=ann["headers"])
    assert bad_filter.status_code == 422
    bad_policy = await client.put(
        "/api/cases/sla-policies/critical",
        json={"first_response_minutes": 5, "resolution_minutes": 60},
        headers=ann["headers"],
    )
    assert bad_policy.status_code in (403, 422)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Case)) == cases_before


async def test_a_case_is_worked_to_resolution_and_emits_events(client, sessions):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    customer = await make_customer(
        sessions, "u1", value_tier="major", lifetime_value=1234.5, first_name="Ada"
    )
    opened = await client.post(
        "/api/cases",
        json={"customer_id": customer, "reason": "complaint", "team": "care"},
        headers=ann["headers"],
    )
    assert opened.status_code == 201, opened.text
    case = opened.json()
    assert case["priority"] == "high"  # the major tier's default
    h = ann["headers"]
    assert (await client.post("/api/cases/next", headers=h)).json()["case"]["id"] == case["id"]
    assert (await client.post(f"/api/cases/{case['id']}/pending", headers=h)).json()["status"] == "pending"
    resolved = await client.post(
        f"/api/cases/{case['id']}/resolve", json={"outcome": "refunded", "comment": "sorry"}, headers=h
    )
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["due_at"] is None  # the clock stopped
    again = await client.post(f"/api/cases/{case['id']}/resolve", json={"outcome": "solved"}, headers=h)
    # Says what is wrong: the case is finished (it told the agent who resolved it to hold it first).
    assert again.status_code == 409 and again.json()["detail"] == f"case {case['id']} is resolved"
    closed = await client.post(f"/api/cases/{case['id']}/close", headers=h)
    assert closed.json()["status"] == "closed"

    async with sessions() as session:
        events = (await session.scalars(select(Event).order_by(Event.id))).all()
        queued = set(await session.scalars(select(EventOutbox.event_id)))
    assert [(e.type, e.name) for e in events] == [("track", "Case Opened"), ("track", "Case Resolved")]
    assert all(e.customer_id == customer and e.user_id == "u1" for e in events)
    assert {e.id for e in events} <= queued  # the journey router will see them
    resolved_event = events[1].properties
    assert resolved_event["outcome"] == "refunded"
    assert resolved_event["case_id"] == case["id"]
    assert f"/csat/{case['id']}?sig=" in resolved_event["csat_url"]


async def test_notes_and_customer_data_come_back_exactly_as_given_as_json(client, sessions):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, "u1", name=HOSTILE)
    case_id = await open_case(sessions, customer, "care", reason=HOSTILE)
    note = await client.post(f"/api/cases/{case_id}/notes", json={"body": HOSTILE}, headers=ann["headers"])
    assert note.status_code == 201
    shown = await client.get(f"/api/cases/{case_id}", headers=ann["headers"])
    assert shown.headers["content-type"] == "application/json"
    body = shown.json()
    assert body["reason"] == HOSTILE
    assert body["context"]["traits"]["name"] == HOSTILE
    assert [n["body"] for n in body["notes"] if n["kind"] == "note"] == [HOSTILE]


async def test_a_case_opened_by_hand_for_a_merged_away_visitor_goes_to_the_customer_they_became(
    client, sessions
):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    known = await make_customer(sessions, "known")
    visitor = await make_customer(sessions, "visitor")
    async with transaction(sessions) as session:
        await customers.merge(session, source_id=visitor, target_id=known)

    body = {"customer_id": visitor, "reason": "asked for help before logging in", "team": "care"}
    response = await client.post("/api/cases", json=body, headers=ann["headers"])

    assert response.status_code == 201, response.text
    assert response.json()["customer_id"] == known
    gone = await client.post("/api/cases", json={**body, "customer_id": 999_999}, headers=ann["headers"])
    assert gone.status_code == 422 and gone.json()["detail"]["field"] == "customer_id", gone.text


async def test_the_queue_filtered_by_a_merged_away_visitors_id_shows_the_customer_they_became(
    client, sessions
):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    known = await make_customer(sessions, "known")
    visitor = await make_customer(sessions, "visitor")
    before_login = await open_case(sessions, visitor, "care", reason="asked before logging in")
    after_login = await open_case(sessions, known, "care", reason="asked again")
    async with transaction(sessions) as session:
        await customers.merge(session, source_id=visitor, target_id=known)

    for customer_id in (visitor, known):
        response = await client.get(f"/api/cases?customer_id={customer_id}", headers=ann["headers"])
        assert response.status_code == 200, response.text
        assert sorted(c["id"] for c in response.json()) == sorted([before_login, after_login])
        assert {c["customer_id"] for c in response.json()} == {known}
    nobody = await client.get("/api/cases?customer_id=999999", headers=ann["headers"])
    assert nobody.status_code == 200 and nobody.json() == []


async def test_a_customers_own_events_named_like_case_events_are_shown_to_agents(client, sessions, write_key):
    """A helpdesk of the customer's own may send messageIds such as case/ZD-1 and a case_id of its own:
    the agent's customer 360 shows those events (it answered 500 on PostgreSQL, casting "ZD-1" to a
    number, and hid them on SQLite), while the engine's events of other teams' cases stay hidden."""
    await make_team(sessions, "billing")
    await make_team(sessions, "care")
    olga = await make_agent(sessions, "olga", "billing")
    customer = await make_customer(sessions, "u1")
    await open_case(sessions, customer, "care", reason="a private care matter")
    billing_case = await open_case(sessions, customer, "billing", reason="an invoice")
    own = [("case/ZD-1", "ZD-1"), ("case/ZD-2", 1.5), ("case/7/opened", 99_999_999_999_999), ("case/x", True)]
    for message_id, case_id in own:
        call = {
            "userId": "u1",
            "event": "Ticket Created",
            "messageId": message_id,
            "properties": {"case_id": case_id},
        }
        assert (await client.post("/v1/track", auth=(write_key, ""), json=call)).status_code == 200

    view = await client.get(f"/api/customers/{customer}", headers=olga["headers"])

    assert view.status_code == 200, view.text
    shown = [e for e in view.json()["recent_events"] if e["name"] == "Ticket Created"]
    assert sorted(
        e["properties"]["case_id"] for e in shown if isinstance(e["properties"]["case_id"], str)
    ) == ["ZD-1"]
    assert len(shown) == len(own)
    assert view.json()["facts"]["track_counts"].get("Ticket Created") == len(own)
    assert view.json()["facts"]["track_counts"].get("Case Opened") == 1  # of the billing case only
    opened = [e["properties"]["case_id"] for e in view.json()["recent_events"] if e["name"] == "Case Opened"]
    assert opened == [billing_case]
    assert "a private care matter" not in view.text


async def test_resolved_cases_are_listed_most_recently_resolved_first(client, sessions):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, "u1")
    ids = [await open_case(sessions, customer, "care", reason=f"case {i}") for i in range(4)]
    for case_id in ids:  # resolved in the order they were opened: the last one most recently
        assert (await client.post(f"/api/cases/{case_id}/claim", headers=ann["headers"])).is_success
        resolved = await client.post(
            f"/api/cases/{case_id}/resolve", headers=ann["headers"], json={"outcome": "solved"}
        )
        assert resolved.is_success, resolved.text
    assert (await client.post(f"/api/cases/{ids[0]}/close", headers=ann["headers"])).is_success
    still_open = await open_case(sessions, customer, "care", reason="still open")

    latest = await client.get("/api/cases?status=resolved&status=closed&limit=2", headers=ann["headers"])
    assert [c["id"] for c in latest.json()] == [ids[3], ids[2]], latest.text
    everything = await client.get(
        "/api/cases?status=open&status=resolved&status=closed", headers=ann["headers"]
    )
    assert [c["id"] for c in everything.json()] == [still_open, *reversed(ids)], everything.text
