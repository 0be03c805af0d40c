"""The worker as deployed, on a real Temporal dev server: earning from ingested events runs on its own,
and the loyalty Schedules exist once however often the worker starts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from domain.customers.models import Customer
from runtime.loyalty_schedules import SCHEDULES, ensure_schedules
from runtime.worker import run_worker
from tests.conftest import wait_for
from tests.loyalty.helpers import set_program
from tests.temporal_env import local
from workflows.loyalty_maintenance import LoyaltyMaintenanceOutput


async def test_worker_earns_from_ingested_events_and_keeps_one_schedule_per_task(
    client, sessions, settings, write_key, marketer_headers
):
    await set_program(sessions, since=datetime(2000, 1, 1, tzinfo=UTC))
    settings = settings.model_copy(
        update={
            "temporal_task_queue": f"loyalty-{uuid.uuid4().hex[:8]}",
            "loyalty_earn_poll_seconds": 0.05,
            "loyalty_maintenance_every_seconds": 6 * 3600,
        }
    )

    async def customer_id() -> int:
        async with sessions() as session:
            return await session.scalar(select(Customer.id).where(Customer.user_id == "eve"))

    # A journey that starts when points are earned: the programme's events route like any other.
    journey = {
        "id": "thanks-for-points",
        "name": "Thanks for your points",
        "definition": {
            "nodes": [
                {"id": "start", "type": "entry", "event": "Points Earned", "next": "done"},
                {"id": "done", "type": "exit"},
            ]
        },
    }
    assert (await client.post("/api/journeys", json=journey, headers=marketer_headers)).status_code == 201
    published = await client.post("/api/journeys/thanks-for-points/publish", headers=marketer_headers)
    assert published.status_code == 201

    env = await local()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(env.client, settings, sessions, stop))
    try:
        for _ in range(2):  # a purchase retried by the shop: one messageId, one award
            response = await client.post(
                "/v1/track",
                json={
                    "userId": "eve",
                    "event": "Order Completed",
                    "properties": {"revenue": 42},
                    "messageId": "o-1",
                },
                auth=(write_key, ""),
            )
            assert response.status_code == 200

        async def balance():
            found = (await client.get(f"/api/loyalty/{await customer_id()}", headers=marketer_headers)).json()
            return found if found.get("balance") else None

        account = await wait_for(balance)
        assert account["balance"] == 42

        async def enrolled():
            found = await client.get("/api/journeys/thanks-for-points/enrollments", headers=marketer_headers)
            return found.json()

        enrollments = await wait_for(enrolled)
        assert [e["customer_id"] for e in enrollments] == [await customer_id()]

        # A second worker start (or a second worker) leaves the schedules as they are.
        await ensure_schedules(env.client, settings)
        for schedule_id in SCHEDULES:
            described = await env.client.get_schedule_handle(schedule_id).describe()
            assert described.schedule.spec.intervals[0].every == timedelta(hours=6)

        async def listed():
            ids = sorted(
                [s.id async for s in await env.client.list_schedules() if s.id.startswith("loyalty-")]
            )
            return ids if ids == sorted(SCHEDULES) else None

        await wait_for(listed)  # the list is eventually consistent; exactly one of each

        # Triggered now, a scheduled pass runs on this worker to completion.
        handle = env.client.get_schedule_handle("loyalty-expiry")
        await handle.trigger()

        async def started():
            return (await handle.describe()).info.recent_actions

        action = (await wait_for(started))[0].action
        handle = env.client.get_workflow_handle(action.workflow_id, result_type=LoyaltyMaintenanceOutput)
        result = await handle.result()
        assert (result.warned, result.expired) == (0, 0)
    finally:
        stop.set()
        await worker
        await env.shutdown()
    assert account["balance"] == 42  # still once, after every pass the earner made
    final = (await client.get(f"/api/loyalty/{await customer_id()}", headers=marketer_headers)).json()
    assert final["balance"] == 42 and final["lifetime_earned"] == 42
