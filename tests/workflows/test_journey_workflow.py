"""JourneyWorkflow on Temporal's time-skipping server, with real activities, database and SMTP capture."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowFailureError
from temporalio.testing import ActivityEnvironment

from activities.contracts import SendEmailRequest
from activities.email import EmailActivities
from activities.smtp import Mailer
from domain.db import transaction
from domain.email.models import Message
from domain.events.models import Event, EventOutbox
from domain.journeys.models import Enrollment
from tests import temporal_env
from tests.harness import running_engine
from workflows.journey import JourneyResult


@pytest.fixture
async def time_env():
    # One server per test: workflow ids (journey + customer id) repeat across tests and backends.
    env = await temporal_env.time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture
async def engine(time_env, settings, sessions):
    async with running_engine(time_env, settings, sessions) as engine:
        yield engine


WELCOME = {
    "id": "welcome",
    "name": "Welcome",
    "subject": "Welcome, {{ traits.first_name }}!",
    "html": "<p>Hi {{ traits.first_name }}, you chose {{ properties.plan }}.</p>",
}
NUDGE = {
    "id": "nudge",
    "name": "Nudge",
    "subject": "Still there, {{ traits.first_name }}?",
    "html": "<p>?</p>",
}
TWO_EMAILS_THREE_DAYS_APART = [
    {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"},
    {"id": "hello", "type": "send_email", "template_id": "welcome", "next": "pause"},
    {"id": "pause", "type": "wait", "duration": "3d", "next": "nudge"},
    {"id": "nudge", "type": "send_email", "template_id": "nudge", "next": "done"},
    {"id": "done", "type": "exit"},
]


async def _result(engine, journey_id: str, customer_id: int = 1):
    workflow_id = f"journey/{journey_id}/customer/{customer_id}"
    return await temporal_env.result(engine.env, workflow_id, JourneyResult)


async def test_a_journey_sends_personalised_emails_across_a_three_day_wait(engine):
    await engine.template(**WELCOME)
    await engine.template(**NUDGE)
    await engine.publish("onboarding", TWO_EMAILS_THREE_DAYS_APART)
    await engine.identify("ada", email="ada@example.com", first_name="Ada")
    await engine.track("ada", "Signed Up", plan="pro")

    started_at = await engine.env.get_current_time()
    assert await engine.router.route_once() == 1
    result = await _result(engine, "onboarding")

    assert result.path == ["hello", "pause", "nudge", "done"]
    assert await engine.env.get_current_time() - started_at >= timedelta(days=3)
    mails = sorted(engine.mailbox, key=lambda m: m["subject"])
    assert [m["subject"] for m in mails] == ["Still there, Ada?", "Welcome, Ada!"]
    assert all(m["envelope_to"] == ["ada@example.com"] for m in mails)
    assert "Hi Ada, you chose pro." in mails[1]["html"]
    assert len({m["message_id"] for m in mails}) == 2
    async with engine.sessions() as session:
        ledger = (await session.scalars(select(Message).order_by(Message.id))).all()
        enrollment = await session.scalar(select(Enrollment))
    assert [(m.node_id, m.status) for m in ledger] == [("hello", "sent"), ("nudge", "sent")]
    assert {m.message_id for m in ledger} == {m["message_id"] for m in mails}
    assert (enrollment.status, enrollment.version) == ("completed", 1)


async def test_the_same_trigger_routed_twice_enrolls_and_sends_once(engine):
    await engine.template(**WELCOME)
    await engine.publish(
        "welcome-once",
        [
            {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"},
            {"id": "hello", "type": "send_email", "template_id": "welcome", "next": "done"},
            {"id": "done", "type": "exit"},
        ],
    )
    await engine.identify("bob", email="bob@example.com", first_name="Bob")
    await engine.track("bob", "Signed Up", message_id="m-1", plan="basic")
    assert await engine.router.route_once() == 1
    # A routing pass that crashed after signalling but before dequeuing sees the event again.
    async with transaction(engine.sessions) as session:
        event_id = await session.scalar(select(Event.id).where(Event.message_id == "m-1"))
        session.add(EventOutbox(event_id=event_id))
    assert await engine.router.route_once() == 1
    await _result(engine, "welcome-once")
    # A second, distinct Signed Up later: re-entry policy "once" keeps the customer out.
    await engine.track("bob", "Signed Up", message_id="m-2", plan="basic")
    assert await engine.router.route_once() == 1
    assert [m["subject"] for m in engine.mailbox] == ["Welcome, Bob!"]
    async with engine.sessions() as session:
        assert len((await session.scalars(select(Enrollment))).all()) == 1


async def test_a_retried_send_activity_delivers_once(engine, settings):
    await engine.template(**WELCOME)
    await engine.identify("cy", email="cy@example.com", first_name="Cy")
    activities = EmailActivities(settings, engine.sessions, Mailer(settings))
    request = SendEmailRequest(
        idempotency_key="wf/1/hello/1", customer_id=1, template_id="welcome", template_version=1
    )
    first = await ActivityEnvironment().run(activities.send_email, request)
    second = await ActivityEnvironment().run(activities.send_email, request)
    assert first.status == second.status == "sent"
    assert first.message_id == second.message_id
    assert len(engine.mailbox) == 1


async def test_a_template_that_fails_to_render_fails_that_send_only(engine, settings):
    await engine.template(
        id="broken", name="Broken", subject="Hi", html="<p>{{ traits.missing.deeper() }}</p>"
    )
    await engine.publish(
        "broken-journey",
        [
            {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"},
            {"id": "hello", "type": "send_email", "template_id": "broken", "next": "done"},
            {"id": "done", "type": "exit"},
        ],
    )
    await engine.identify("dee", email="dee@example.com")
    await engine.track("dee", "Signed Up")
    await engine.router.route_once()
    with pytest.raises(WorkflowFailureError):
        await _result(engine, "broken-journey")
    async with engine.sessions() as session:
        row = await session.scalar(select(Message))
        enrollment = await session.scalar(select(Enrollment))
    assert row.status == "failed"
    assert "render" in row.error
    assert enrollment.status == "failed"
    assert engine.mailbox == []
