"""A journey that loops for a long time continues as new before its history grows large, carrying its
position, visit counts and listeners, so nothing is re-sent and the goal still ends it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.conftest import wait_for
from tests.workflows.harness import engine
from tests.workflows.small_history import ContinuesOnceClicked, SmallHistoryJourney

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


CLICK_AFTER_HOOK = [
    {"id": "start", "type": "entry", "event": "Subscribed", "next": "w1"},
    {
        "id": "w1",
        "type": "wait_for_event",
        "event": "Clicked",
        "timeout": "1h",
        "next": "early",
        "timeout_next": "hook",
    },
    {"id": "early", "type": "exit"},
    {"id": "hook", "type": "webhook", "url": "{url}", "next": "w2"},
    {
        "id": "w2",
        "type": "wait_for_event",
        "event": "Clicked",
        "timeout": "1d",
        "next": "thanks",
        "timeout_next": "gave_up",
    },
    {"id": "thanks", "type": "send_email", "template_id": "thanks", "next": "done"},
    {"id": "done", "type": "exit"},
    {"id": "gave_up", "type": "exit"},
]


async def test_an_event_that_came_since_the_last_wake_up_is_carried_into_the_next_run(
    env, sessions, settings, monkeypatch
):
    # Ada clicks while the webhook step runs (its receiver records the click before answering): the
    # wait after it counts that click. The enrollment continues as new right between the two, and
    # the name was registered by the first wait, so nothing looks for the click again.
    monkeypatch.setattr("tests.workflows.harness.WORKFLOWS", [ContinuesOnceClicked])
    async with engine(env, sessions, settings) as e:

        async def receiver(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            await e.track("ada", "Clicked")  # routed to the enrollment before the step ends
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(receiver, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
        try:
            await e.template("thanks", "Thanks for clicking")
            nodes = [{**n, "url": url} if n["type"] == "webhook" else n for n in CLICK_AFTER_HOOK]
            await e.journey("clicks", {"nodes": nodes})
            ada = await e.customer("ada")
            await e.track("ada", "Subscribed")
            handle = e.handle("clicks", ada)
            first_run = (await handle.describe()).run_id
            result = await e.result(handle)
        finally:
            server.close()
        assert (await handle.describe()).run_id != first_run  # it did continue as new
        assert result.path[-3:] == ["w2", "thanks", "done"], result.path
        assert [m["subject"] for m in e.mailbox()] == ["Thanks for clicking"]
