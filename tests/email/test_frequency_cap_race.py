"""The frequency cap holds when journeys plan sends to one customer at the same moment.

A capped send is planned (the journey_context activity counts the customer's recent sends) before it is
sent (send_email records the ledger row), so plans that all run before any send must still let at most
``max`` of them go: the plan reserves the send under the cap in the transaction that counts, and the
reservation stops counting once the send is skipped or never comes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from activities.contracts import JourneyContext, JourneyContextRequest, SendEmailRequest, TimePlan
from activities.email import EmailActivities
from activities.journeys import JourneyActivities
from domain.customers import service as customers
from domain.db import transaction
from domain.journeys import service as journeys
from domain.journeys.models import Journey
from domain.subscriptions import service as subscriptions
from tests.conftest import wait_for
from tests.email.helpers import add_customer, add_template, done_or_waiting_on_a_lock

DAY = 86_400


@pytest.fixture
def steps(sessions) -> JourneyActivities:
    return JourneyActivities(sessions)


@pytest.fixture
def sender(settings, sessions, mailer) -> EmailActivities:
    return EmailActivities(settings, sessions, mailer)


async def _journeys(sessions, *ids: str) -> None:
    async with transaction(sessions) as session:
        session.add_all(Journey(id=j, name=j, status="published", draft={}) for j in ids)


def _key(journey_id: str, customer_id: int) -> str:
    """As the workflow derives it: workflow id / entry event / node / visit."""
    return f"journey/{journey_id}/customer/{customer_id}/0/hello/1"


def _plan(journey_id: str, customer_id: int, now: datetime, cap_max: int) -> JourneyContextRequest:
    return JourneyContextRequest(
        journey_id=journey_id,
        customer_id=customer_id,
        plan=TimePlan(
            kind="send",
            now=now.isoformat(),
            cap_max=cap_max,
            cap_window_seconds=DAY,
            send_key=_key(journey_id, customer_id),
        ),
    )


async def _ask(steps: JourneyActivities, req: JourneyContextRequest) -> JourneyContext:
    return await ActivityEnvironment().run(steps.journey_context, req)


async def _send(sender: EmailActivities, journey_id: str, customer_id: int, template: str = "welcome"):
    req = SendEmailRequest(
        idempotency_key=_key(journey_id, customer_id),
        customer_id=customer_id,
        template_id=template,
        template_version=1,
        journey_id=journey_id,
        node_id="hello",
    )
    return await ActivityEnvironment().run(sender.send_email, req)


async def test_journeys_planning_at_once_send_no_more_than_the_cap(sessions, steps, sender, capture):
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions)
    names = ("welcome", "promo", "winback")
    await _journeys(sessions, *names)
    now = datetime.now(UTC)

    # Every plan runs before any send is recorded: each journey's check comes before the others' sends.
    plans = await asyncio.gather(*(_ask(steps, _plan(j, ann, now, cap_max=2)) for j in names))
    going = [j for j, p in zip(names, plans, strict=True) if p.held_by is None]
    # A plan asked again (a retried activity) keeps its reservation: it still goes, and takes no other.
    again = await _ask(steps, _plan(going[0], ann, now, cap_max=2))
    assert again.held_by is None
    await asyncio.gather(*(_send(sender, j, ann) for j in going))

    await capture.wait_until(2)
    assert capture.handler.received == 2
    [held] = [p for p in plans if p.held_by is not None]
    assert held.held_by == "frequency_cap"
    assert datetime.fromisoformat(held.moment) == now + timedelta(days=1)


async def test_a_plan_waits_for_a_concurrent_one_and_counts_its_send(
    engine, sessions, steps, sender, capture
):
    """Two plans in simultaneous transactions on PostgreSQL (SQLite runs one write at a time): the
    second counts the first's send although neither has been sent when it asks."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions)
    await _journeys(sessions, "welcome", "promo")
    now = datetime.now(UTC)

    async with transaction(sessions) as session:
        first = await journeys.enrollment_context(
            session, ann, _plan("welcome", ann, now, cap_max=1).plan, journey_id="welcome"
        )
        # The second plan starts while the first's transaction is still open, and must wait for it.
        second = asyncio.create_task(_ask(steps, _plan("promo", ann, now, cap_max=1)))
        await wait_for(lambda: done_or_waiting_on_a_lock(second, engine))
    second = await second
    # Each journey sends if its plan let it go.
    if first["held_by"] is None:
        await _send(sender, "welcome", ann)
    if second.held_by is None:
        await _send(sender, "promo", ann)

    await capture.wait_until(1)
    assert capture.handler.received == 1
    assert first["held_by"] is None and second.held_by == "frequency_cap"


async def test_a_skipped_send_frees_its_place_under_the_cap(sessions, steps, sender, capture):
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions, id="promo", subscription_group="promos")
    await add_template(sessions)
    await _journeys(sessions, "promo", "welcome")
    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(session, ann, "promos", "preferences")
    now = datetime.now(UTC)

    promo = await _ask(steps, _plan("promo", ann, now, cap_max=1))
    assert promo.held_by is None
    assert (await _send(sender, "promo", ann, template="promo")).status == "skipped"
    welcome = await _ask(steps, _plan("welcome", ann, now, cap_max=1))
    assert welcome.held_by is None
    assert (await _send(sender, "welcome", ann)).status == "sent"

    [msg] = await capture.wait_for_count(1)
    assert msg["subject"] == "Hi Ann" and capture.handler.received == 1


async def test_a_reservation_whose_send_never_comes_expires(sessions, steps):
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await _journeys(sessions, "welcome", "promo")
    now = datetime.now(UTC)

    # The welcome send is let go, and never sent (its enrollment was terminated in between).
    assert (await _ask(steps, _plan("welcome", ann, now, cap_max=1))).held_by is None
    promo = await _ask(steps, _plan("promo", ann, now, cap_max=1))
    assert promo.held_by == "frequency_cap"

    later = now + journeys.CAP_RESERVATION_EXPIRY + timedelta(seconds=1)
    assert (await _ask(steps, _plan("promo", ann, later, cap_max=1))).held_by is None


async def test_a_visitors_reserved_send_counts_for_the_customer_they_turn_out_to_be(sessions, steps):
    visitor = await add_customer(sessions, email="visitor@example.com", traits={})
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await _journeys(sessions, "welcome", "promo")
    now = datetime.now(UTC)

    # The visitor's send is let go; they log in as Ann before it is sent (it will go to Ann).
    assert (await _ask(steps, _plan("welcome", visitor, now, cap_max=1))).held_by is None
    async with transaction(sessions) as session:
        await customers.merge(session, source_id=visitor, target_id=ann)

    assert (await _ask(steps, _plan("promo", ann, now, cap_max=1))).held_by == "frequency_cap"
