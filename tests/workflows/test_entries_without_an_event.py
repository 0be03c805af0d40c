"""Enrollments no event started (by API, by the birthday sweep) and loops through a date wait.

Such an enrollment counts only the customer's events from its start on: an order from last year
neither reaches its goal nor ends its waits. A goal or exit reached while a birthday journey waits for
the day ends it (it used to leave the enrollment failing its workflow task for ever). A date wait
reached again while its date is still missing or past ends the enrollment instead of repeating the
loop, emails included, without pause."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from domain.db import transaction
from domain.journeys import service as journeys
from runtime import anniversaries
from runtime.enrollment import enroll_customers
from tests.conftest import wait_for
from tests.workflows.harness import engine
from tests.workflows.test_timing_rules import BIRTHDAY

# A stuck enrollment never finishes: the test fails after this instead of hanging.
WITHIN = 30.0


async def _enroll_by_api(e, journey_id: str, customer_id: int) -> str:
    async with transaction(e.sessions) as session:
        journey = await journeys.get(session, journey_id)
        version = await journeys.get_version(session, journey_id, journey.published_version)
    counts = await enroll_customers(e.client, e.sessions, version, [customer_id], task_queue=e.task_queue)
    assert counts.enrolled == 1
    [enrollment] = [r for r in await e.enrollments(journey_id) if r.customer_id == customer_id]
    return enrollment.workflow_id


async def _result(e, workflow_id: str) -> dict:
    async with e.env.time_skipping_unlocked():
        return await asyncio.wait_for(e.client.get_workflow_handle(workflow_id).result(), WITHIN)


def _manual(rules: dict, first: dict) -> dict:
    return {
        "nodes": [
            {"id": "start", "type": "entry", "trigger": "manual", "next": first["id"]},
            first,
            {"id": "mail", "type": "send_email", "template_id": "winback", "next": "done"},
            {"id": "done", "type": "exit"},
        ],
        "rules": rules,
    }


async def test_an_enrollment_by_api_counts_only_the_events_after_it_started(env, sessions, settings):
    wait = {"id": "wait", "type": "wait", "duration": "2d", "next": "mail"}
    async with engine(env, sessions, settings) as e:
        await e.template("winback", "We miss you, {{ traits.name }}")
        await e.journey("winback", _manual({"goal": {"event": "Order Completed"}}, wait))
        await e.journey(
            "tickets", _manual({"exit_when": [{"event": "Ticket Opened"}]}, {**wait, "duration": "1d"})
        )
        ada = await e.customer("ada")
        bob = await e.customer("bob")
        await e.track("ada", "Order Completed", revenue=10)  # last year's order
        await e.track("ada", "Ticket Opened")  # and an old ticket
        await e.track("bob", "Order Completed", revenue=10)

        ada_winback = await _enroll_by_api(e, "winback", ada)
        ada_tickets = await _enroll_by_api(e, "tickets", ada)
        bob_winback = await _enroll_by_api(e, "winback", bob)
        await e.track("bob", "Order Completed", revenue=30)  # bob orders again once enrolled

        assert await _result(e, ada_winback) == {"status": "completed", "path": ["wait", "mail", "done"]}
        assert await _result(e, ada_tickets) == {"status": "completed", "path": ["wait", "mail", "done"]}
        assert (await _result(e, bob_winback))["status"] == "converted"
        assert sorted(m["to"] for m in e.mailbox()) == ["ada@example.com", "ada@example.com"]


async def test_an_old_event_does_not_end_the_first_wait_of_an_enrollment_by_api(env, sessions, settings):
    wait = {
        "id": "wait",
        "type": "wait_for_event",
        "event": "Order Completed",
        "timeout": "3d",
        "next": "done",
        "timeout_next": "mail",
    }
    async with engine(env, sessions, settings) as e:
        await e.template("winback", "We miss you, {{ traits.name }}")
        await e.journey("winback", _manual({}, wait))
        ada = await e.customer("ada")
        await e.track("ada", "Order Completed", revenue=10)

        result = await _result(e, await _enroll_by_api(e, "winback", ada))

        assert result == {"status": "completed", "path": ["wait", "mail", "done"]}
        assert [m["subject"] for m in e.mailbox()] == ["We miss you, Ada"]


def _birthday(rules: dict) -> dict:
    return {**BIRTHDAY, "rules": rules}


async def _birthday_tomorrow(e, user_id: str) -> int:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    return await e.customer(user_id, birthday=tomorrow.replace(year=1990).isoformat())


async def test_a_birthday_journey_is_left_by_an_exit_while_it_waits_for_the_day(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("birthday", "Happy birthday, {{ traits.name }}!")
        await e.journey("birthday", _birthday({"exit_when": [{"event": "Account Closed"}]}))
        gus = await _birthday_tomorrow(e, "gus")
        assert await anniversaries.enroll_due(e.client, e.sessions, task_queue=e.task_queue) == 1
        await wait_for(lambda: e.listening(gus, "Account Closed"))

        await e.track("gus", "Account Closed")  # while the enrollment sleeps until 09:00 on the day
        [enrollment] = await e.enrollments("birthday")

        assert await _result(e, enrollment.workflow_id) == {"status": "exited", "path": []}
        assert e.mailbox() == []
        [recorded] = await e.enrollments("birthday")
        assert recorded.status == "exited"


async def test_a_birthday_greeting_is_not_held_back_by_last_years_order(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("birthday", "Happy birthday, {{ traits.name }}!")
        await e.journey("birthday", _birthday({"goal": {"event": "Order Completed"}}))
        await _birthday_tomorrow(e, "fay")
        await e.track("fay", "Order Completed", revenue=20)
        assert await anniversaries.enroll_due(e.client, e.sessions, task_queue=e.task_queue) == 1
        [enrollment] = await e.enrollments("birthday")

        assert await _result(e, enrollment.workflow_id) == {"status": "completed", "path": ["greet", "done"]}
        assert [m["subject"] for m in e.mailbox()] == ["Happy birthday, Fay!"]


RENEWALS = {
    "nodes": [
        {"id": "start", "type": "entry", "event": "Subscribed", "next": "until"},
        {
            "id": "until",
            "type": "wait_until",
            "at": "09:00",
            "date_trait": "renewal_date",
            "offset_days": -7,
            "next": "remind",
        },
        {"id": "remind", "type": "send_email", "template_id": "renew", "next": "until"},
    ]
}


async def test_a_loop_through_a_date_wait_with_nothing_to_wait_for_sends_once_and_ends(
    env, sessions, settings
):
    async with engine(env, sessions, settings) as e:
        await e.template("renew", "Renew, {{ traits.name }}")
        await e.journey("renewals", RENEWALS)
        await e.customer("cy")  # no renewal date
        await e.customer("dee", renewal_date="2020-01-01")  # long past
        await e.track("cy", "Subscribed")
        await e.track("dee", "Subscribed")

        results = [await _result(e, r.workflow_id) for r in await e.enrollments("renewals")]

        assert results == [{"status": "completed", "path": ["until", "remind", "until"]}] * 2
        assert sorted(m["to"] for m in e.mailbox()) == ["cy@example.com", "dee@example.com"]
