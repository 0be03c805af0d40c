"""The outbox router against a real Temporal dev server: killed mid-batch and restarted, or run twice
side by side, it enrolls every stored trigger exactly once and loses none."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select
from temporalio.service import RPCError

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.events.models import EventOutbox
from domain.journeys.models import Enrollment
from runtime.event_router import EventRouter
from tests import temporal_env
from tests.conftest import ROOT, wait_for

TRIGGERS = 60


@pytest.fixture(scope="module")
async def temporal():
    env = await temporal_env.local()
    try:
        yield env
    finally:
        await env.shutdown()


async def _journey_with_triggers(client, write_key, marketer_headers) -> str:
    journey_id = f"welcome-{uuid.uuid4().hex[:8]}"
    definition = {
        "nodes": [
            {"id": "start", "type": "entry", "event": "Signed Up", "next": "pause"},
            {"id": "pause", "type": "wait", "duration": "1d", "next": "done"},
            {"id": "done", "type": "exit"},
        ]
    }
    created = await client.post(
        "/api/journeys",
        json={"id": journey_id, "name": "Welcome", "definition": definition},
        headers=marketer_headers,
    )
    assert created.status_code == 201, created.text
    assert (
        await client.post(f"/api/journeys/{journey_id}/publish", headers=marketer_headers)
    ).status_code == 201
    batch = []
    for i in range(TRIGGERS):
        batch.append({"type": "track", "userId": f"u{i}", "event": "Signed Up"})
        batch.append({"type": "track", "userId": f"u{i}", "event": "Viewed"})  # no journey listens
    response = await client.post("/v1/batch", json={"batch": batch}, auth=(write_key, ""))
    assert response.status_code == 200, response.text
    return journey_id


async def _count(sessions, stmt) -> int:
    async with sessions() as session:
        return await session.scalar(stmt)


async def _signals_by_workflow(env, sessions, journey_id) -> Counter:
    async with sessions() as session:
        ids = list(
            await session.scalars(select(Enrollment.workflow_id).where(Enrollment.journey_id == journey_id))
        )
    signals = Counter()
    for workflow_id in ids:
        async for event in env.client.get_workflow_handle(workflow_id).fetch_history_events():
            if event.HasField("workflow_execution_signaled_event_attributes"):
                signals[workflow_id] += 1
    return signals


async def _workflows_in_temporal(env, journey_id, expected) -> Counter | None:
    runs = Counter()
    async for execution in env.client.list_workflows('WorkflowType = "JourneyWorkflow"'):
        if execution.id.startswith(f"journey/{journey_id}/"):
            runs[execution.id] += 1
    return runs if len(runs) >= expected else None


async def _existing_workflows(env, journey_id, customer_ids) -> set[str]:
    found = set()
    for customer_id in customer_ids:
        workflow_id = f"journey/{journey_id}/customer/{customer_id}"
        try:
            await env.client.get_workflow_handle(workflow_id).describe()
        except RPCError:
            continue
        found.add(workflow_id)
    return found


def _router_process(database_url, env, tmp_path, *command, **settings) -> subprocess.Popen:
    environment = {
        **os.environ,
        "JOURNEYS_DEV_MODE": "true",
        "JOURNEYS_DATA_DIR": str(tmp_path),
        "JOURNEYS_DATABASE_URL": database_url,
        "JOURNEYS_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "JOURNEYS_ROUTER_POLL_SECONDS": "0.05",
        **{f"JOURNEYS_{k.upper()}": str(v) for k, v in settings.items()},
    }
    command = command or ("runtime.cli", "router")
    return subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, env=environment)


async def test_router_killed_mid_batch_and_restarted_routes_every_trigger_once(
    temporal, client, sessions, write_key, marketer_headers, database_url, tmp_path
):
    journey_id = await _journey_with_triggers(client, write_key, marketer_headers)
    enrolled = select(func.count()).select_from(Enrollment).where(Enrollment.journey_id == journey_id)
    queued = select(func.count()).select_from(EventOutbox)
    assert await _count(sessions, queued) == 2 * TRIGGERS

    async with sessions() as session:
        customer_ids = list(await session.scalars(select(Customer.id)))

    # One batch holds every row. The first router's starts stall after the tenth (tests/runtime/
    # stalling_router.py), so the kill always lands with the whole batch claimed by a dead process,
    # ten of its workflows started in Temporal, fifty not, none recorded or dequeued.
    stalled = tmp_path / "stalled"
    first = _router_process(
        database_url,
        temporal,
        tmp_path,
        "tests.runtime.stalling_router",
        "10",
        str(stalled),
        router_batch_size=1000,
        router_lease_seconds=2,
    )
    try:
        await wait_for(lambda: _exists(stalled), within=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert await _count(sessions, queued) == 2 * TRIGGERS
    assert await _count(sessions, enrolled) == 0
    started_before = await _existing_workflows(temporal, journey_id, customer_ids)
    assert len(started_before) == 10

    second = _router_process(database_url, temporal, tmp_path, router_lease_seconds=2)
    try:
        await wait_for(lambda: _is_zero(sessions, queued), within=60)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0

    assert await _count(sessions, enrolled) == TRIGGERS
    # Temporal's list is eventually consistent: wait until it shows them all, then none may be doubled.
    runs = await wait_for(lambda: _workflows_in_temporal(temporal, journey_id, TRIGGERS), within=30)
    assert set(runs.values()) == {1}
    # The dead router's claim was taken over: what it had started gets the trigger again (the workflow
    # ignores an event id it has seen), everything else exactly once. Nothing is lost.
    signals = await _signals_by_workflow(temporal, sessions, journey_id)
    assert len(signals) == TRIGGERS
    assert {w for w, n in signals.items() if n == 2} == started_before  # no RPC was in flight at the kill
    assert set(signals.values()) == {1, 2}


async def _exists(path) -> bool:
    return path.exists()


async def test_two_routers_side_by_side_claim_disjoint_batches(
    temporal, client, sessions, write_key, marketer_headers
):
    journey_id = await _journey_with_triggers(client, write_key, marketer_headers)
    queued = select(func.count()).select_from(EventOutbox)
    task_queue = f"router-test-{uuid.uuid4().hex[:6]}"
    routers = [
        EventRouter(temporal.client, sessions, task_queue=task_queue, batch_size=7, poll_seconds=0.02)
        for _ in range(2)
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in routers]
    try:
        await wait_for(lambda: _is_zero(sessions, queued), within=60)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    assert all(r.stats.routed_events > 0 for r in routers), [r.stats for r in routers]
    assert sum(r.stats.routed_events for r in routers) == 2 * TRIGGERS
    signals = await _signals_by_workflow(temporal, sessions, journey_id)
    assert len(signals) == TRIGGERS and set(signals.values()) == {1}


async def test_health_shows_routing_backlog_and_lag(client, sessions, write_key):
    health = (await client.get("/api/health")).json()
    assert (health["routing_backlog"], health["routing_lag_seconds"]) == (0, 0.0)
    await client.post("/v1/track", json={"userId": "h", "event": "Waiting"}, auth=(write_key, ""))

    async def lagging():
        health = (await client.get("/api/health")).json()
        return health if health["routing_lag_seconds"] > 0 else None

    health = await wait_for(lagging, within=5)
    assert health["routing_backlog"] == 1
    async with transaction(sessions) as session:
        await session.execute(EventOutbox.__table__.delete())
    health = (await client.get("/api/health")).json()
    assert (health["routing_backlog"], health["routing_lag_seconds"]) == (0, 0.0)


async def _at_least(sessions, stmt, n):
    return await _count(sessions, stmt) >= n


async def _is_zero(sessions, stmt):
    return await _count(sessions, stmt) == 0


async def test_an_outbox_row_whose_event_was_erased_is_dropped(sessions):
    async with transaction(sessions) as session:
        session.add(EventOutbox(event_id=987_654, created_at=utcnow()))
    router = EventRouter(None, sessions, task_queue="unused")  # nothing to route: Temporal is never called
    assert await router.route_once() == 0
    assert await _count(sessions, select(func.count()).select_from(EventOutbox)) == 0


async def test_an_event_that_cannot_be_routed_does_not_hold_up_the_others(
    temporal, client, sessions, write_key, marketer_headers, monkeypatch
):
    import runtime.event_router as event_router

    journey_id = await _journey_with_triggers(client, write_key, marketer_headers)
    async with sessions() as session:
        poisoned = await session.scalar(select(Customer.id).where(Customer.user_id == "u7"))
    start = event_router.start_enrollment

    async def failing_for_one_customer(client_, version, customer_id, *args, **kwargs):
        if customer_id == poisoned:
            raise RuntimeError("Temporal refused this start")
        return await start(client_, version, customer_id, *args, **kwargs)

    monkeypatch.setattr(event_router, "start_enrollment", failing_for_one_customer)
    router = EventRouter(temporal.client, sessions, task_queue=f"poison-{uuid.uuid4().hex[:6]}")
    enrolled = select(func.count()).select_from(Enrollment).where(Enrollment.journey_id == journey_id)
    queued = select(EventOutbox.event_id, EventOutbox.claimed_by)

    assert await router.route_once() == 2 * TRIGGERS - 1  # every event but u7's Signed Up
    assert await _count(sessions, enrolled) == TRIGGERS - 1
    async with sessions() as session:
        [(_, claimed_by)] = (await session.execute(queued)).all()
    assert claimed_by is None  # handed back at once for the next pass, not left to its lease

    monkeypatch.setattr(event_router, "start_enrollment", start)  # whatever refused it recovers
    assert await router.route_once() == 1
    assert await _count(sessions, enrolled) == TRIGGERS
    async with sessions() as session:
        assert (await session.execute(queued)).all() == []
