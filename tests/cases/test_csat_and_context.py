"""What the customer and the agent see: the signed CSAT page and the case's 360 context snapshot."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from domain.cases import service as cases
from domain.cases.models import Case
from domain.cases.schemas import Outcome
from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.email.models import Message
from domain.events.models import Event
from domain.loyalty import service as loyalty
from tests.cases.helpers import make_agent, make_customer, make_team, open_case

HOSTILE = '<script>alert("x")</script>'


async def _resolved_case(sessions, settings, **traits) -> int:
    await make_team(sessions, "care")
    agent = await make_agent(sessions, "ann", "care")
    case_id = await open_case(sessions, await make_customer(sessions, "u1", **traits), "care")
    actor = cases.Actor(agent["id"], ["care"])
    async with transaction(sessions) as session:
        await cases.claim(session, actor, case_id)
        await cases.resolve(session, settings, actor, case_id, Outcome.solved, "")
    return case_id


async def test_the_customer_rates_through_the_signed_link_and_the_rating_is_kept(client, sessions, settings):
    case_id = await _resolved_case(sessions, settings, first_name=HOSTILE)
    link = cases.csat_url(settings, case_id)
    path = link.removeprefix(settings.resolved_public_url)
    sig = path.split("sig=")[1]

    page = await client.get(path + "&rating=4")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script
    assert HOSTILE not in page.text
    assert "&lt;script&gt;" in page.text
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating is None  # opening the link records nothing

    recorded = await client.post(
        f"/csat/{case_id}",
        content=f"sig={sig}&rating=4",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert recorded.status_code == 200
    assert "4 out of 5" in recorded.text
    assert HOSTILE not in recorded.text
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating == 4


async def test_a_rating_posted_to_the_signed_link_itself_is_kept(client, sessions, settings):
    # `POST /csat/{case_id}?sig=...` with only the rating in the form answered "this rating link is
    # not valid" (404): the signature was read from the form alone.
    case_id = await _resolved_case(sessions, settings)
    path = cases.csat_url(settings, case_id).removeprefix(settings.resolved_public_url)
    form = {"content-type": "application/x-www-form-urlencoded"}

    forged = await client.post(f"/csat/{case_id}?sig=deadbeef", content="rating=5", headers=form)
    assert forged.status_code == 404
    recorded = await client.post(path, content="rating=5", headers=form)
    assert recorded.status_code == 200, recorded.text
    assert "5 out of 5" in recorded.text
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating == 5


async def test_a_forged_link_or_a_rating_outside_1_to_5_changes_nothing(client, sessions, settings):
    case_id = await _resolved_case(sessions, settings)
    sig = cases.csat_signature(settings, case_id)
    form = {"content-type": "application/x-www-form-urlencoded"}

    forged = await client.post(f"/csat/{case_id}", content="sig=deadbeef&rating=5", headers=form)
    assert forged.status_code == 404
    other_case = await client.post(f"/csat/{case_id + 1}", content=f"sig={sig}&rating=5", headers=form)
    assert other_case.status_code == 404
    too_high = await client.post(f"/csat/{case_id}", content=f"sig={sig}&rating=7", headers=form)
    assert too_high.status_code == 422
    assert "1 to 5" in too_high.text
    assert (await client.get(f"/csat/{case_id}?sig=nope")).status_code == 404
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating is None


async def test_an_open_case_cannot_be_rated_yet(client, sessions, settings):
    await make_team(sessions, "care")
    case_id = await open_case(sessions, await make_customer(sessions, "u1"), "care")
    sig = cases.csat_signature(settings, case_id)
    response = await client.post(
        f"/csat/{case_id}",
        content=f"sig={sig}&rating=5",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 409


async def test_the_case_carries_the_customers_360_view_at_opening(client, sessions):
    await make_team(sessions, "care")
    agent = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, "u1", value_tier="key", plan="gold")
    other = await make_customer(sessions, "u2")
    now = utcnow()
    async with transaction(sessions) as session:
        # Facts kept by ingestion, and points from the loyalty ledger, as the snapshot shows them.
        row = await session.get(Customer, customer)
        row.lifetime_value, row.order_count = 5400, 3
        await loyalty.award(session, customer, "welcome", 120, "welcome", now)
        for i in range(12):
            session.add(
                Event(
                    message_id=f"m{i}",
                    type="track",
                    name=f"Order {i}",
                    customer_id=customer,
                    properties={"n": i},
                    timestamp=now - timedelta(minutes=60 - i),
                )
            )
        session.add(
            Event(message_id="other", type="track", name="Elsewhere", customer_id=other, timestamp=now)
        )
        session.add(
            Message(
                idempotency_key="k1",
                message_id="<k1@x>",
                customer_id=customer,
                subject="Welcome",
                status="sent",
                template_id="welcome",
            )
        )
    case_id = await open_case(sessions, customer, "care")

    shown = (await client.get(f"/api/cases/{case_id}", headers=agent["headers"])).json()
    assert shown["priority"] == "urgent"  # a key customer's case
    context = shown["context"]
    assert context["value_tier"] == "key"
    assert (context["lifetime_value"], context["order_count"]) == (5400, 3)
    assert context["points"] == 120
    assert context["traits"]["plan"] == "gold"
    assert context["customer"]["email"] == "u1@example.com"
    # The ten latest: the points award just now, then the orders, newest first (none of the other customer).
    expected = ["Points Earned", *(f"Order {i}" for i in range(11, 2, -1))]
    assert [e["name"] for e in context["recent_events"]] == expected
    assert [m["subject"] for m in context["recent_messages"]] == ["Welcome"]


async def test_without_a_value_tier_the_default_priority_is_normal(sessions):
    await make_team(sessions, "care")
    plain = await open_case(sessions, await make_customer(sessions, "u1"), "care")
    small = await open_case(sessions, await make_customer(sessions, "u2", value_tier="small"), "care")
    async with sessions() as session:
        rows = {c.id: c.priority for c in await session.scalars(select(Case))}
    assert rows == {plain: "normal", small: "low"}
