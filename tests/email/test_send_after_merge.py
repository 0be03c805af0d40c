"""A profile merge that finds one person inside one journey twice ends the later-entered enrollment:
its sends answer as for an archived journey (so its workflow leaves), from the moment the merge
commits, and its record stays "exited" whatever its workflow reports when it finishes."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.contracts import JourneyContextRequest, SendEmailRequest, TimePlan
from activities.email import EmailActivities
from activities.journeys import JourneyActivities
from domain.customers import service as customers
from domain.db import transaction, utcnow
from domain.email.models import Message
from domain.journeys import service as journeys
from domain.journeys.models import Enrollment, Journey, JourneyListener, JourneyVersion
from tests.conftest import wait_for
from tests.email.helpers import add_customer, add_template, done_or_waiting_on_a_lock


@pytest.fixture
def sender(settings, sessions, mailer) -> EmailActivities:
    return EmailActivities(settings, sessions, mailer)


async def _journey(sessions, journey_id: str, reentry: str) -> None:
    entry = {"id": "start", "type": "entry", "event": "Viewed", "reentry": reentry, "next": "hello"}
    if reentry == "once_per_key":
        entry["entry_key"] = "k"
    async with transaction(sessions) as session:
        session.add(
            Journey(id=journey_id, name=journey_id, status="published", draft={}, published_version=1)
        )
        await session.flush()
        session.add(
            JourneyVersion(
                journey_id=journey_id, version=1, definition={"nodes": [entry]}, trigger_event="Viewed"
            )
        )


async def _enroll(sessions, workflow_id: str, journey_id: str, customer_id: int, minutes_ago: int) -> None:
    async with transaction(sessions) as session:
        session.add(
            Enrollment(
                workflow_id=workflow_id,
                journey_id=journey_id,
                version=1,
                customer_id=customer_id,
                status="active",
                entered_at=utcnow() - timedelta(minutes=minutes_ago),
            )
        )
        session.add(JourneyListener(workflow_id=workflow_id, customer_id=customer_id, event_name="Bought"))


async def _people(sessions) -> tuple[int, int]:
    ada = await add_customer(sessions, email="ada@example.com", traits={"first_name": "Ada"})
    visitor = await add_customer(sessions, email="v@example.com", traits={"first_name": "Visitor"})
    return ada, visitor


async def _merge(sessions, visitor: int, ada: int) -> None:
    async with transaction(sessions) as session:
        await customers.merge(session, source_id=visitor, target_id=ada)


async def _rows(sessions) -> dict[str, tuple[str, str | None]]:
    async with sessions() as session:
        found = await session.execute(
            select(Enrollment.workflow_id, Enrollment.status, Enrollment.superseded_by)
        )
        return {w: (s, by) for w, s, by in found}


def _send(workflow_id: str, customer_id: int, *, hold: bool = True) -> SendEmailRequest:
    return SendEmailRequest(
        idempotency_key=f"{workflow_id}/7/hello/1",
        customer_id=customer_id,
        template_id="welcome",
        template_version=1,
        journey_id=workflow_id.split("/")[1],
        node_id="hello",
        hold_unless_published=hold,
    )


async def test_an_after_exit_journey_keeps_the_earlier_enrollment_and_ends_the_later_for_good(sessions):
    ada, visitor = await _people(sessions)
    await _journey(sessions, "nurture", "after_exit")
    await _enroll(sessions, f"journey/nurture/customer/{ada}/n1", "nurture", ada, minutes_ago=5)
    await _enroll(sessions, f"journey/nurture/customer/{visitor}/n1", "nurture", visitor, minutes_ago=9)

    await _merge(sessions, visitor, ada)

    kept, ended = f"journey/nurture/customer/{visitor}/n1", f"journey/nurture/customer/{ada}/n1"
    assert await _rows(sessions) == {kept: ("active", None), ended: ("exited", kept)}
    async with sessions() as session:  # it no longer hears the person's events
        listening = await session.scalars(select(JourneyListener.workflow_id))
        assert list(listening) == [kept]
    # Its workflow finishes later (whatever it reports) and the record stays as the merge left it.
    async with transaction(sessions) as session:
        await journeys.record_closed_enrollment(
            session,
            workflow_id=ended,
            journey_id="nurture",
            version=1,
            customer_id=ada,
            event_id=None,
            entered_at=None,
            status="completed",
            at=utcnow(),
        )
        await journeys.close_enrollment(session, ended, "completed", utcnow())
    assert (await _rows(sessions))[ended] == ("exited", kept)


async def test_the_superseded_enrollments_sends_go_nowhere_and_the_kept_ones_go(
    settings, sessions, sender, capture
):
    ada, visitor = await _people(sessions)
    await add_template(sessions)
    await _journey(sessions, "pricing", "once")
    kept, ended = f"journey/pricing/customer/{ada}", f"journey/pricing/customer/{visitor}"
    await _enroll(sessions, kept, "pricing", ada, minutes_ago=9)
    await _enroll(sessions, ended, "pricing", visitor, minutes_ago=5)
    await _merge(sessions, visitor, ada)

    env = ActivityEnvironment()
    held = await env.run(sender.send_email, _send(ended, visitor))
    planned = await env.run(sender.send_email, _send(ended, visitor, hold=False))  # planned, then merged
    assert (held.status, held.detail) == ("held", "archived")  # the workflow leaves, "exited"
    assert planned.status == "skipped"
    sent = await env.run(sender.send_email, _send(kept, ada))
    assert sent.status == "sent"

    await capture.wait_for_count(1)
    assert capture.handler.received == 1
    async with sessions() as session:
        keys = await session.scalars(select(Message.idempotency_key))
        assert list(keys) == [f"{kept}/7/hello/1"]

    # The status read before a send (quiet hours, cap or send rate, or the status alone) says the same.
    steps = JourneyActivities(sessions)
    plan = TimePlan(kind="send", now=utcnow().isoformat(), default_timezone="UTC", cap_max=3)
    for workflow_id, customer_id, status in [(ended, visitor, "archived"), (kept, ada, "published")]:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, workflow_id=workflow_id)
        for req in (
            JourneyContextRequest(journey_id="pricing", customer_id=customer_id, with_customer=False),
            JourneyContextRequest(journey_id="pricing", customer_id=customer_id, plan=plan),
        ):
            assert (await env.run(steps.journey_context, req)).journey_status == status


async def test_once_per_key_and_always_journeys_keep_enrollments_that_may_coexist(sessions):
    ada, visitor = await _people(sessions)
    await _journey(sessions, "cart", "once_per_key")
    await _journey(sessions, "every", "always")
    await _enroll(sessions, f"journey/cart/customer/{ada}/c1", "cart", ada, minutes_ago=9)
    await _enroll(sessions, f"journey/cart/customer/{visitor}/c1", "cart", visitor, minutes_ago=7)
    await _enroll(sessions, f"journey/cart/customer/{visitor}/c2", "cart", visitor, minutes_ago=6)
    await _enroll(sessions, f"journey/every/customer/{ada}/e1", "every", ada, minutes_ago=9)
    await _enroll(sessions, f"journey/every/customer/{visitor}/e2", "every", visitor, minutes_ago=5)

    await _merge(sessions, visitor, ada)

    assert await _rows(sessions) == {
        f"journey/cart/customer/{ada}/c1": ("active", None),
        f"journey/cart/customer/{visitor}/c1": ("exited", f"journey/cart/customer/{ada}/c1"),
        f"journey/cart/customer/{visitor}/c2": ("active", None),
        f"journey/every/customer/{ada}/e1": ("active", None),
        f"journey/every/customer/{visitor}/e2": ("active", None),
    }


async def test_a_send_running_while_the_merge_commits_waits_for_it_and_sends_nothing(
    engine, settings, sessions, sender, capture
):
    """PostgreSQL (SQLite runs one write transaction at a time): the send's claim waits for the merge
    in flight and then finds its enrollment ended."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    ada, visitor = await _people(sessions)
    await add_template(sessions)
    await _journey(sessions, "pricing", "once")
    ended = f"journey/pricing/customer/{visitor}"
    await _enroll(sessions, f"journey/pricing/customer/{ada}", "pricing", ada, minutes_ago=9)
    await _enroll(sessions, ended, "pricing", visitor, minutes_ago=5)

    async with transaction(sessions) as session:
        await customers.merge(session, source_id=visitor, target_id=ada)
        send = asyncio.create_task(ActivityEnvironment().run(sender.send_email, _send(ended, visitor)))
        await wait_for(lambda: done_or_waiting_on_a_lock(send, engine))
        assert not send.done()
    result = await send

    assert (result.status, result.detail) == ("held", "archived")
    assert capture.handler.received == 0  # held before any handoff to the relay
    async with sessions() as session:
        assert list(await session.scalars(select(Message.id))) == []
