"""Creating a broadcast: its row is committed before its workflow is started, so no transaction (on
SQLite, no write lock) waits on Temporal, and a start that fails leaves no broadcast behind, nor a
workflow with anything to send."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.broadcasts import service as broadcasts
from domain.broadcasts.models import Broadcast
from domain.broadcasts.schemas import BroadcastIn
from domain.db import transaction, utcnow
from runtime.broadcast_start import BroadcastStartSweep
from tests.email.helpers import add_customer, add_template

BODY = {"id": "spring", "name": "Spring", "template_id": "welcome", "audience": {"kind": "all"}}


class _Temporal:
    """Stands in for the API's Temporal client: records starts; slow (until released), down, or
    failing with ``error`` after running ``meanwhile`` (what the started workflow did)."""

    def __init__(self, *, error: Exception | None = None, meanwhile=None) -> None:
        self.error, self.meanwhile = error, meanwhile
        self.started: list[str] = []
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        if error is not None or meanwhile is not None:
            self.release.set()

    async def start_workflow(self, run, arg, *, id: str, **_) -> None:
        self.started.append(id)
        self.reached.set()
        await self.release.wait()
        if self.meanwhile is not None:
            await self.meanwhile()
        if self.error is not None:
            raise self.error


def _unavailable() -> RPCError:
    return RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")


async def _setup(sessions) -> None:
    await add_template(sessions)
    await add_customer(sessions, email="ann@example.com", traits={})


async def _status(client, headers) -> int | str:
    r = await client.get("/api/broadcasts/spring", headers=headers)
    return r.json()["status"] if r.status_code == 200 else r.status_code


async def test_other_writers_are_not_held_up_while_temporal_is_slow_to_start_a_broadcast(
    app, client, sessions, marketer_headers
):
    await _setup(sessions)
    app.state.temporal = temporal = _Temporal()
    create = asyncio.create_task(client.post("/api/broadcasts", json=BODY, headers=marketer_headers))
    await asyncio.wait_for(temporal.reached.wait(), 30)

    # Another create of the same id (PostgreSQL waited on the first one's uncommitted row, SQLite on
    # its write lock) and a write elsewhere, as ingestion makes all the time.
    same_id = asyncio.create_task(client.post("/api/broadcasts", json=BODY, headers=marketer_headers))
    writer = asyncio.create_task(add_customer(sessions, email="bo@example.com", traits={}))
    try:
        done, _ = await asyncio.wait({same_id, writer}, timeout=10)
        assert done == {same_id, writer}, "a write waited on the request that was waiting on Temporal"
        writer.result()
        refused = same_id.result()
        assert refused.status_code == 409 and "exists" in refused.text, refused.text
        assert await _status(client, marketer_headers) == "starting"  # stored, its workflow not yet
    finally:
        temporal.release.set()
        response = await create
        await asyncio.gather(same_id, writer, return_exceptions=True)
    assert response.status_code == 201 and response.json()["status"] == "scheduled", response.text
    assert await _status(client, marketer_headers) == "scheduled"
    assert temporal.started == ["broadcast/spring"]


async def test_a_broadcast_temporal_could_not_start_is_not_stored_and_can_be_asked_for_again(
    app, client, sessions, marketer_headers
):
    await _setup(sessions)
    app.state.temporal = _Temporal(error=_unavailable())

    response = await client.post("/api/broadcasts", json=BODY, headers=marketer_headers)

    assert response.status_code == 503 and "nothing was stored" in response.text, response.text
    assert await _status(client, marketer_headers) == 404
    app.state.temporal = temporal = _Temporal()
    temporal.release.set()
    again = await client.post("/api/broadcasts", json=BODY, headers=marketer_headers)
    assert again.status_code == 201 and again.json()["status"] == "scheduled", again.text


async def test_a_start_that_failed_only_as_the_api_saw_it_answers_the_broadcast_its_workflow_sends(
    app, client, sessions, marketer_headers
):
    await _setup(sessions)

    async def first_batch() -> None:  # the workflow did start, and its first batch ran at once
        async with transaction(sessions) as session:
            await broadcasts.plan_batch(session, "spring", 0, str)

    timeout = RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")
    app.state.temporal = _Temporal(error=timeout, meanwhile=first_batch)

    response = await client.post("/api/broadcasts", json=BODY, headers=marketer_headers)

    # Withdrawing it now would leave a workflow sending a broadcast nobody can see or stop.
    assert response.status_code == 201 and response.json()["status"] == "running", response.text
    assert await _status(client, marketer_headers) == "running"


async def test_an_id_whose_workflow_outlived_a_withdrawn_broadcast_is_refused_and_nothing_stored(
    app, client, sessions, marketer_headers
):
    await _setup(sessions)
    app.state.temporal = _Temporal(error=WorkflowAlreadyStartedError("broadcast/spring", "BroadcastWorkflow"))

    response = await client.post("/api/broadcasts", json=BODY, headers=marketer_headers)

    assert response.status_code == 409, response.text
    assert "use another id" in response.text and '"id"' in response.text, response.text
    assert await _status(client, marketer_headers) == 404


async def test_a_workflow_whose_broadcast_was_withdrawn_sends_nothing_and_ends(sessions):
    # What the workflow's activities read when the API withdrew the row after a start it thought failed
    async with transaction(sessions) as session:
        assert (await broadcasts.plan_batch(session, "withdrawn", 0, str)).status == "cancelled"
        assert await broadcasts.time_slots(session, "withdrawn") == []


async def test_a_broadcast_whose_start_was_never_confirmed_is_sent_by_its_workflow(sessions):
    # The API stopped after starting the workflow, before marking the broadcast scheduled.
    await _setup(sessions)
    spec = BroadcastIn.model_validate(BODY)
    async with transaction(sessions) as session:
        assert (await broadcasts.create(session, spec)).status == "starting"
    async with transaction(sessions) as session:
        plan = await broadcasts.plan_batch(session, "spring", 0, str)
    assert plan.status == "running" and [c["email"] for c in plan.todo] == ["ann@example.com"]
    async with sessions() as session:
        row = await broadcasts.get(session, "spring")
        assert row.status == "running" and row.started_at is not None


async def test_a_broadcast_left_starting_without_a_workflow_can_be_cancelled(
    app, client, sessions, marketer_headers
):
    # The API stopped between storing the broadcast and starting its workflow: nothing will send it.
    await _setup(sessions)
    async with transaction(sessions) as session:
        await broadcasts.create(session, BroadcastIn.model_validate(BODY))
    app.state.temporal = _NoWorkflow()

    response = await client.post("/api/broadcasts/spring/cancel", headers=marketer_headers)

    assert response.status_code == 200 and response.json()["status"] == "cancelled", response.text


async def test_the_start_sweep_leaves_a_broadcast_alone_while_its_create_is_at_temporal(
    app, client, sessions, marketer_headers, settings
):
    await _setup(sessions)
    app.state.temporal = temporal = _Temporal()
    create = asyncio.create_task(client.post("/api/broadcasts", json=BODY, headers=marketer_headers))
    await asyncio.wait_for(temporal.reached.wait(), 30)
    workers = _Temporal()
    workers.release.set()
    try:
        sweep = BroadcastStartSweep(workers, sessions, task_queue=settings.temporal_task_queue)
        assert await sweep.sweep_once() == 0
    finally:
        temporal.release.set()
        response = await create
    assert response.status_code == 201 and response.json()["status"] == "scheduled", response.text
    assert (temporal.started, workers.started) == (["broadcast/spring"], [])  # the create's start alone


async def test_a_create_whose_start_failed_past_its_grace_leaves_the_broadcast_to_the_start_sweep(
    app, client, sessions, marketer_headers
):
    await _setup(sessions)

    async def outlasted() -> None:  # Temporal took longer than the grace to answer
        async with transaction(sessions) as session:
            earlier = utcnow() - broadcasts.CREATE_GRACE - timedelta(seconds=1)
            backdate = update(Broadcast).where(Broadcast.id == "spring").values(created_at=earlier)
            await session.execute(backdate)

    app.state.temporal = _Temporal(error=_unavailable(), meanwhile=outlasted)

    response = await client.post("/api/broadcasts", json=BODY, headers=marketer_headers)

    # a worker's sweep may already have started it: taken back, it would be a workflow with nothing to send
    assert response.status_code == 201 and response.json()["status"] == "starting", response.text
    assert await _status(client, marketer_headers) == "starting"


class _NoWorkflow:
    def get_workflow_handle(self, workflow_id: str):
        return self

    async def signal(self, action: str) -> None:
        raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
