"""After a one-click unsubscribe, the next step of a journey already running sends nothing."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager

from temporalio.worker import Worker

from activities.contracts import EventRef
from domain.db import transaction
from domain.journeys import service as journeys
from domain.journeys.schemas import JourneyIn
from runtime.worker import activities as worker_activities
from tests.email.helpers import add_customer, add_template
from tests.temporal_env import time_skipping
from workflows.journey import JourneyInput, JourneyWorkflow

DEFINITION = {
    "nodes": [
        {"id": "entry", "type": "entry", "event": "Signed Up", "next": "welcome"},
        {"id": "welcome", "type": "send_email", "template_id": "welcome", "next": "wait"},
        {"id": "wait", "type": "wait", "duration": "3d", "next": "followup"},
        {"id": "followup", "type": "send_email", "template_id": "welcome", "next": "done"},
        {"id": "done", "type": "exit"},
    ]
}


@asynccontextmanager
async def onboarding_running(settings, sessions, customer_id: int):
    """The onboarding journey (a welcome email, three days, a follow-up) published and started for the
    customer, with a worker; yields its handle (awaiting its result skips the three days)."""
    await add_template(sessions, subscription_group="newsletter")
    async with transaction(sessions) as session:
        await journeys.create(session, JourneyIn(id="onboarding", name="Onboarding", definition=DEFINITION))
        published = await journeys.publish(session, "onboarding")
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with await time_skipping() as env:
        acts = worker_activities(settings, sessions)
        async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=acts):
            yield await env.client.start_workflow(
                JourneyWorkflow.run,
                JourneyInput(
                    journey_id="onboarding",
                    version=1,
                    customer_id=customer_id,
                    definition=published.definition,
                    entry_event=EventRef(id=1, name="signed_up"),
                ),
                id=f"journey/onboarding/customer/{customer_id}",
                task_queue=queue,
            )


async def test_unsubscribe_stops_the_next_step_of_a_running_journey(
    settings, sessions, client, capture, marketer_headers
):
    cid = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    async with onboarding_running(settings, sessions, cid) as handle:
        [first] = await capture.wait_for_count(1)
        # the customer clicks the one-click link in the first email (no credentials)
        url = dict(first["headers"])["List-Unsubscribe"].strip("<>")
        r = await client.post("/u/" + url.split("/u/", 1)[1], content="List-Unsubscribe=One-Click")
        assert r.status_code == 200
        result = await handle.result()  # three days pass in skipped time
    assert result.path == ["welcome", "wait", "followup", "done"]
    assert capture.handler.received == 1
    ledger = (await client.get("/api/messages", params={"customer_id": cid}, headers=marketer_headers)).json()
    assert sorted((m["node_id"], m["status"]) for m in ledger) == [
        ("followup", "skipped"),
        ("welcome", "sent"),
    ]
    assert "unsubscribed from newsletter" in next(m["error"] for m in ledger if m["node_id"] == "followup")
