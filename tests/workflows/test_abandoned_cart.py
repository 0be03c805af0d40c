"""Abandoned cart, end to end through the router: entered on Cart Updated, waits 1 h for Order Completed
with the same cart id, emails, waits a day, escalates top-tier customers to a human."""

from __future__ import annotations

from sqlalchemy import select

from activities.contracts import EventRef
from domain.db import transaction
from domain.events import service as events
from domain.events.models import Event
from domain.events.schemas import TrackCall
from domain.journeys import service as journeys
from tests.conftest import wait_for
from tests.workflows.harness import engine
from workflows.journey import JourneyInput, JourneyWorkflow

CART = {
    "nodes": [
        {
            "id": "start",
            "type": "entry",
            "event": "Cart Updated",
            "reentry": "once_per_key",
            "entry_key": "cart_id",
            "next": "wait_order",
        },
        {
            "id": "wait_order",
            "type": "wait_for_event",
            "event": "Order Completed",
            "match_entry": ["cart_id"],
            "timeout": "1h",
            "next": "done",
            "timeout_next": "reminder",
        },
        {"id": "reminder", "type": "send_email", "template_id": "cart-reminder", "next": "wait_day"},
        {
            "id": "wait_day",
            "type": "wait_for_event",
            "event": "Order Completed",
            "match_entry": ["cart_id"],
            "timeout": "1d",
            "next": "done",
            "timeout_next": "tier",
        },
        {
            "id": "tier",
            "type": "branch",
            "branches": [
                {"when": [{"trait": "value_tier", "op": "in", "value": ["key", "major"]}], "next": "escalate"}
            ],
            "default_next": "done",
        },
        {
            "id": "escalate",
            "type": "escalate",
            "subject": "A top customer left a cart",
            "team": "care",
            "priority": "high",
            "sla": "4h",
            "resolved_next": "done",
            "breached_next": "done",
        },
        {"id": "done", "type": "exit"},
    ]
}


async def _setup(e) -> None:
    await e.team("care")
    await e.template("cart-reminder", "{{ traits.name }}, your cart {{ properties.cart_id }} is waiting")
    await e.journey("cart", CART)


async def test_no_order_emails_once_then_escalates_a_key_customer(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await _setup(e)
        ada = await e.customer("ada", value_tier="key")
        bob = await e.customer("bob", value_tier="small")
        await e.track("ada", "Cart Updated", cart_id="c1")
        await e.track("bob", "Cart Updated", cart_id="c2")

        ada_result = await e.result(e.handle("cart", ada, "c1"))
        bob_result = await e.result(e.handle("cart", bob, "c2"))

        assert ada_result.path == ["wait_order", "reminder", "wait_day", "tier", "escalate", "done"]
        assert bob_result.path == ["wait_order", "reminder", "wait_day", "tier", "done"]
        mail = sorted(e.mailbox(), key=lambda m: m["to"])
        assert [(m["to"], m["subject"]) for m in mail] == [
            ("ada@example.com", "Ada, your cart c1 is waiting"),
            ("bob@example.com", "Bob, your cart c2 is waiting"),
        ]
        assert [(c.customer_id, c.reason, c.priority, c.team_id) for c in await e.cases()] == [
            (ada, "A top customer left a cart", "high", "care")
        ]


async def test_order_for_the_same_cart_stops_the_reminder(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await _setup(e)
        ada = await e.customer("ada", value_tier="key")
        await e.track("ada", "Cart Updated", cart_id="c1")
        await wait_for(lambda: e.listening(ada, "Order Completed"))
        await e.track("ada", "Order Completed", cart_id="c1")

        result = await e.result(e.handle("cart", ada, "c1"))

        assert result.path == ["wait_order", "done"]
        assert e.mailbox() == []
        assert await e.cases() == []


async def test_order_for_another_cart_does_not_count(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await _setup(e)
        bob = await e.customer("bob", value_tier="ordinary")
        await e.track("bob", "Cart Updated", cart_id="c7")
        await wait_for(lambda: e.listening(bob, "Order Completed"))
        await e.track("bob", "Order Completed", cart_id="c8")

        result = await e.result(e.handle("cart", bob, "c7"))

        assert result.path == ["wait_order", "reminder", "wait_day", "tier", "done"]
        assert [m["subject"] for m in e.mailbox()] == ["Bob, your cart c7 is waiting"]


async def test_an_order_during_the_day_wait_skips_the_escalation(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await _setup(e)
        ada = await e.customer("ada", value_tier="major")
        await e.track("ada", "Cart Updated", cart_id="c1")
        handle = e.handle("cart", ada, "c1")

        async def at_day_wait():
            steps = await handle.query(JourneyWorkflow.path)
            return steps and steps[-1].node_id == "wait_day"

        # Let the hour pass (time skips while we wait on the server), then order during the day.
        while not await at_day_wait():
            await env.sleep(600)
        await e.track("ada", "Order Completed", cart_id="c1")

        result = await e.result(handle)

        assert result.path == ["wait_order", "reminder", "wait_day", "done"]
        assert len(e.mailbox()) == 1
        assert await e.cases() == []


async def test_an_order_signalled_before_the_wait_is_reached_still_stops_the_reminder(
    env, sessions, settings
):
    """The router can signal an order while the enrollment's first task runs (Temporal then runs that
    task again with the signal first), or while the nodes before a wait run: it counts for the wait."""
    async with engine(env, sessions, settings) as e:
        await _setup(e)
        ada = await e.customer("ada", value_tier="key")
        async with transaction(sessions) as session:
            for name in ("Cart Updated", "Order Completed"):
                call = TrackCall(userId="ada", event=name, properties={"cart_id": "c1"}, messageId=name)
                await events.ingest(session, [call], source_key_id=None)
            cart, order = await session.scalars(select(Event).order_by(Event.id))
            version = await journeys.get_version(session, "cart", 1)
        handle = await e.client.start_workflow(
            JourneyWorkflow.run,
            JourneyInput(
                journey_id="cart",
                version=1,
                customer_id=ada,
                definition=version.definition,
                entry_event=EventRef(id=cart.id, name=cart.name, properties=cart.properties),
            ),
            id=journeys.workflow_id_for("cart", ada, "c1"),
            task_queue=e.task_queue,
            start_signal="event",  # in the history before the workflow's first step
            start_signal_args=[EventRef(id=order.id, name=order.name, properties=order.properties)],
        )

        result = await handle.result()

        assert result.path == ["wait_order", "done"]
        assert e.mailbox() == []
        assert await e.cases() == []
