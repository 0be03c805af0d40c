"""A wait for an event hears that event while it waits: once the wait ends, the customer's later events
of that name are no longer signalled to the enrollment (each would be a signal, and history, for
nothing), unless a goal or exit rule still listens for them; a later wait for the name hears it again."""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from tests.conftest import wait_for
from tests.workflows.harness import engine
from workflows.journey import JourneyWorkflow


def _twice(rules: dict | None = None) -> dict:
    """Thanks for an order within an hour of signing up; a day later, another order within an hour?"""
    return {
        "nodes": [
            {"id": "start", "type": "entry", "event": "Signed Up", "next": "first"},
            {
                "id": "first",
                "type": "wait_for_event",
                "event": "Order Completed",
                "timeout": "1h",
                "next": "pause",
                "timeout_next": "pause",
            },
            {"id": "pause", "type": "wait", "duration": "1d", "next": "second"},
            {
                "id": "second",
                "type": "wait_for_event",
                "event": "Order Completed",
                "timeout": "1h",
                "next": "again",
                "timeout_next": "miss",
            },
            {"id": "again", "type": "send_email", "template_id": "again", "next": "done"},
            {"id": "miss", "type": "send_email", "template_id": "miss", "next": "done"},
            {"id": "done", "type": "exit"},
        ],
        "rules": rules or {},
    }


async def _at(handle, node_id: str) -> bool:
    steps = await handle.query(JourneyWorkflow.path)
    return bool(steps) and steps[-1].node_id == node_id and steps[-1].left_at is None


async def _stopped_listening(e, customer_id: int, event_name: str) -> bool:
    return not await e.listening(customer_id, event_name)


async def _events_signalled(handle) -> int:
    """How many customer events the router signalled to the enrollment."""
    signalled = [
        event
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and event.workflow_execution_signaled_event_attributes.signal_name == "event"
    ]
    return len(signalled)


async def _templates(e) -> None:
    await e.template("again", "Thanks again, {{ traits.name }}")
    await e.template("miss", "{{ traits.name }}, we miss you")


async def test_an_order_after_the_wait_is_not_signalled_and_the_next_wait_hears_the_next_order(
    env, sessions, settings
):
    async with engine(env, sessions, settings) as e:
        await _templates(e)
        await e.journey("orders", _twice())
        ada = await e.customer("ada")
        await e.track("ada", "Signed Up")
        handle = e.handle("orders", ada)
        await wait_for(lambda: e.listening(ada, "Order Completed"))
        await e.track("ada", "Order Completed")
        await wait_for(lambda: _at(handle, "pause"))
        # The query shows the pause as soon as the enrollment enters it; the listener's end is stored
        # with the pause's step record, by the write the enrollment makes before it sleeps.
        await wait_for(lambda: _stopped_listening(e, ada, "Order Completed"))
        await e.track("ada", "Order Completed")  # during the day's pause: no wait hears it
        await env.sleep(timedelta(days=1, minutes=1))
        await wait_for(lambda: e.listening(ada, "Order Completed"))  # the second wait listens again
        await e.track("ada", "Order Completed")
        result = await e.result(handle)

        assert result.path == ["first", "pause", "second", "again", "done"]
        assert [m["subject"] for m in e.mailbox()] == ["Thanks again, Ada"]
        # The entry (started with it), the first order and the last: not the one during the pause.
        assert await _events_signalled(handle) == 3
        assert not await e.listening(ada, "Order Completed")


async def test_an_order_between_the_waits_does_not_count_for_the_second(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await _templates(e)
        await e.journey("orders", _twice())
        ada = await e.customer("ada")
        await e.track("ada", "Signed Up")
        handle = e.handle("orders", ada)
        await env.sleep(timedelta(hours=2))  # the first wait timed out
        await wait_for(lambda: _at(handle, "pause"))
        await e.track("ada", "Order Completed")
        result = await e.result(handle)

        assert result.path == ["first", "pause", "second", "miss", "done"]
        assert [m["subject"] for m in e.mailbox()] == ["Ada, we miss you"]


async def test_an_exit_rule_on_the_waits_event_still_hears_it_after_the_wait(env, sessions, settings):
    rules = {"exit_when": [{"event": "Order Completed", "where": {"status": "refunded"}}]}
    async with engine(env, sessions, settings) as e:
        await _templates(e)
        await e.journey("orders", _twice(rules))
        ada = await e.customer("ada")
        await e.track("ada", "Signed Up")
        handle = e.handle("orders", ada)
        await wait_for(lambda: e.listening(ada, "Order Completed"))
        await e.track("ada", "Order Completed", status="paid")
        await wait_for(lambda: _at(handle, "pause"))
        await e.track("ada", "Order Completed", status="refunded")
        result = await e.result(handle)

        assert (result.status, result.path) == ("exited", ["first", "pause"])
        assert e.mailbox() == []
