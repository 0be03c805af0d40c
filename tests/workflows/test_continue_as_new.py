"""A journey that loops for a long time continues as new before its history grows large, carrying its
position, visit counts and listeners, so nothing is re-sent and the goal still ends it."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import wait_for
from tests.workflows.harness import engine
from tests.workflows.small_history import SmallHistoryJourney

LOOP = {
    "nodes": [
        {"id": "start", "type": "entry", "event": "Subscribed", "next": "day"},
        {"id": "day", "type": "wait", "duration": "1d", "next": "digest"},
        {"id": "digest", "type": "send_email", "template_id": "digest", "next": "day"},
    ],
    "rules": {"goal": {"event": "Unsubscribed"}},
}


async def test_a_looping_journey_continues_as_new_and_sends_each_day_once(
    env, sessions, settings, monkeypatch
):
    monkeypatch.setattr("tests.workflows.harness.WORKFLOWS", [SmallHistoryJourney])
    async with engine(env, sessions, settings) as e:
        await e.template("digest", "Your digest")
        await e.journey("digest", LOOP)
        ada = await e.customer("ada")
        await e.track("ada", "Subscribed")
        handle = e.client.get_workflow_handle(f"journey/digest/customer/{ada}")
        first_run = (await handle.describe()).run_id

        await env.sleep(timedelta(days=10, hours=1))
        await wait_for(lambda: e.listening(ada, "Unsubscribed"))
        await e.track("ada", "Unsubscribed")
        result = await handle.result()

        assert result["status"] == "converted"
        assert (await handle.describe()).run_id != first_run  # it continued as new at least once
        ids = [m["message_id"] for m in e.mailbox()]
        assert len(ids) == 10 and len(set(ids)) == 10  # one email a day, none repeated across runs
