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
from domain.email.models import Message
from domain.journeys.models import Enrollment
from tests.workflows.harness import engine

TWO_EMAILS_THREE_DAYS_APART = {
    "nodes": [
        {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"},
        {"id": "hello", "type": "send_email", "template_id": "welcome", "next": "pause"},
        {"id": "pause", "type": "wait", "duration": "3d", "next": "nudge"},
        {"id": "nudge", "type": "send_email", "template_id": "nudge", "next": "done"},
        {"id": "done", "type": "exit"},
    ]
}


async def _welcome(e) -> None:
    await e.template(
        "welcome",
        "Welcome, {{ traits.first_name }}!",
        "<p>Hi {{ traits.first_name }}, you chose {{ properties.plan }}.</p>",
    )


async def test_a_journey_sends_personalised_emails_across_a_three_day_wait(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await _welcome(e)
        await e.template("nudge", "Still there, {{ traits.first_name }}?", "<p>?</p>")
        await e.journey("onboarding", TWO_EMAILS_THREE_DAYS_APART)
        ada = await e.customer("ada", first_name="Ada")

        started_at = await env.get_current_time()
        await e.track("ada", "Signed Up", plan="pro")
        result = await e.result(e.handle("onboarding", ada))

        assert result.path == ["hello", "pause", "nudge", "done"]
        assert await env.get_current_time() - started_at >= timedelta(days=3)
        mails = sorted(e.mailbox(), key=lambda m: m["subject"])
        assert [m["subject"] for m in mails] == ["Still there, Ada?", "Welcome, Ada!"]
        assert all(m["envelope_to"] == ["ada@example.com"] for m in mails)
        assert "Hi Ada, you chose pro." in mails[1]["html"]
        assert len({m["message_id"] for m in mails}) == 2
        async with sessions() as session:
            ledger = (await session.scalars(select(Message).order_by(Message.id))).all()
            enrollment = await session.scalar(select(Enrollment))
        assert [(m.node_id, m.status) for m in ledger] == [("hello", "sent"), ("nudge", "sent")]
        assert {m.message_id for m in ledger} == {m["message_id"] for m in mails}
        assert (enrollment.status, enrollment.version) == ("completed", 1)


async def test_a_retried_send_activity_delivers_once(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await _welcome(e)
        cy = await e.customer("cy", first_name="Cy")
        activities = EmailActivities(settings, sessions, Mailer(settings))
        request = SendEmailRequest(
            idempotency_key="wf/1/hello/1", customer_id=cy, template_id="welcome", template_version=1
        )
        first = await ActivityEnvironment().run(activities.send_email, request)
        second = await ActivityEnvironment().run(activities.send_email, request)
        assert first.status == second.status == "sent"
        assert first.message_id == second.message_id
        assert len(e.mailbox()) == 1


async def test_a_template_that_fails_to_render_fails_that_send_only(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("broken", "Hi", "<p>{{ traits.missing.deeper() }}</p>")
        await e.journey(
            "broken-journey",
            {
                "nodes": [
                    {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"},
                    {"id": "hello", "type": "send_email", "template_id": "broken", "next": "done"},
                    {"id": "done", "type": "exit"},
                ]
            },
        )
        dee = await e.customer("dee")
        await e.track("dee", "Signed Up")

        with pytest.raises(WorkflowFailureError):
            await e.result(e.handle("broken-journey", dee))
        async with sessions() as session:
            row = await session.scalar(select(Message))
            enrollment = await session.scalar(select(Enrollment))
        assert row.status == "failed"
        assert "render" in row.error
        assert enrollment.status == "failed"
        assert e.mailbox() == []
