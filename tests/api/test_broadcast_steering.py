"""Pausing, resuming and cancelling a broadcast: the state is committed before Temporal is signalled, so
no transaction (on SQLite, no write lock) waits on Temporal, and a signal that fails leaves the
database saying what the workflow will do."""

from __future__ import annotations

import asyncio

from sqlalchemy import update
from temporalio.service import RPCError, RPCStatusCode

from domain.broadcasts import service as broadcasts
from domain.broadcasts.models import Broadcast
from domain.broadcasts.schemas import BroadcastIn
from domain.db import transaction, utcnow
from tests.email.helpers import add_customer, add_template


class _Temporal:
    """Stands in for the API's Temporal client: records signals, and is slow (until released) or down."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.signalled: list[tuple[str, str]] = []
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def get_workflow_handle(self, workflow_id: str) -> _Handle:
        return _Handle(self, workflow_id)


class _Handle:
    def __init__(self, temporal: _Temporal, workflow_id: str) -> None:
        self.temporal, self.workflow_id = temporal, workflow_id

    async def signal(self, action: str) -> None:
        self.temporal.signalled.append((self.workflow_id, action))
        self.temporal.reached.set()
        if self.temporal.down:
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
        await self.temporal.release.wait()


async def _broadcast(sessions, status: str = "scheduled") -> None:
    await add_template(sessions)
    await add_customer(sessions, email="ann@example.com", traits={})
    spec = BroadcastIn(id="spring", name="Spring", template_id="welcome", audience={"kind": "all"})
    async with transaction(sessions) as session:
        row = await broadcasts.create(session, spec)
        row.status = status


async def _status(sessions) -> str:
    async with sessions() as session:
        return (await broadcasts.get(session, "spring")).status


async def test_another_writer_is_not_held_up_while_temporal_is_slow_to_take_a_pause(
    app, client, sessions, marketer_headers
):
    await _broadcast(sessions)
    app.state.temporal = temporal = _Temporal()
    steer = asyncio.create_task(client.post("/api/broadcasts/spring/pause", headers=marketer_headers))
    await asyncio.wait_for(temporal.reached.wait(), 30)

    async def write() -> None:  # as a batch of the workflow records its progress on the same row
        async with transaction(sessions) as session:
            await session.execute(
                update(Broadcast).where(Broadcast.id == "spring").values(sent=Broadcast.sent + 1)
            )

    writer = asyncio.create_task(write())
    try:
        done, _ = await asyncio.wait({writer}, timeout=10)
        assert writer in done, "a write waited on the request that was waiting on Temporal"
        writer.result()
        assert await _status(sessions) == "paused"  # committed before Temporal was asked
    finally:
        temporal.release.set()
        response = await steer
        await writer
    assert response.status_code == 200 and response.json()["status"] == "paused", response.text
    assert temporal.signalled == [("broadcast/spring", "pause")]


async def test_a_resume_the_workflow_could_not_be_told_is_undone(app, client, sessions, marketer_headers):
    await _broadcast(sessions, status="paused")
    app.state.temporal = _Temporal(down=True)

    response = await client.post("/api/broadcasts/spring/resume", headers=marketer_headers)

    # a paused workflow moves on the signal alone: the broadcast must not say running while it waits
    assert response.status_code == 503 and "stays paused" in response.text, response.text
    assert await _status(sessions) == "paused"


async def test_a_pause_or_cancel_the_workflow_could_not_be_told_holds_at_its_next_batch(
    app, client, sessions, marketer_headers
):
    await _broadcast(sessions, status="running")
    app.state.temporal = _Temporal(down=True)

    response = await client.post("/api/broadcasts/spring/pause", headers=marketer_headers)

    assert response.status_code == 200 and response.json()["status"] == "paused", response.text
    async with transaction(sessions) as session:  # what the workflow's next batch reads first
        assert (await broadcasts.plan_batch(session, "spring", 0, str)).status == "paused"
        assert (await broadcasts.plan_batch(session, "spring", 0, str)).todo == []

    response = await client.post("/api/broadcasts/spring/cancel", headers=marketer_headers)

    assert response.status_code == 200 and response.json()["status"] == "cancelled", response.text
    async with transaction(sessions) as session:
        assert (await broadcasts.plan_batch(session, "spring", 0, str)).status == "cancelled"


class _FirstReadWaits:
    """The first steering request to read the broadcast waits, once it has read it, for ``go_on``: a
    second request reads, writes and commits in between. On SQLite a transaction takes the write lock
    as it begins (BEGIN IMMEDIATE), so the second cannot start before the first ends: nothing waits
    there and the two run in turn, as they must."""

    def __init__(self, monkeypatch, database_url: str) -> None:
        self.read, self.go_on = asyncio.Event(), asyncio.Event()
        if not database_url.startswith("postgresql"):
            self.go_on.set()
        real = broadcasts.get

        async def get(session, broadcast_id):
            row = await real(session, broadcast_id)
            if not self.read.is_set():
                self.read.set()
                await self.go_on.wait()
            return row

        monkeypatch.setattr(broadcasts, "get", get)


async def _steer_while_another_waits(client, headers, gate: _FirstReadWaits, first: str, second: str):
    waiting = asyncio.create_task(client.post(f"/api/broadcasts/spring/{first}", headers=headers))
    await asyncio.wait_for(gate.read.wait(), 30)
    other = await client.post(f"/api/broadcasts/spring/{second}", headers=headers)
    gate.go_on.set()
    return await waiting, other


async def test_of_two_resumes_at_once_one_wins_and_the_other_is_told_the_broadcast_runs(
    app, client, sessions, marketer_headers, monkeypatch, database_url
):
    await _broadcast(sessions, status="paused")
    async with transaction(sessions) as session:  # it had started: a resume makes it run again
        (await broadcasts.get(session, "spring")).started_at = utcnow()
    app.state.temporal = temporal = _Temporal()
    temporal.release.set()
    gate = _FirstReadWaits(monkeypatch, database_url)

    one, other = await _steer_while_another_waits(client, marketer_headers, gate, "resume", "resume")

    codes = sorted([one.status_code, other.status_code])
    assert codes == [200, 409], (one.text, other.text)
    refused = one if one.status_code == 409 else other
    assert "cannot resume a broadcast that is running" in refused.text, refused.text
    assert temporal.signalled == [("broadcast/spring", "resume")]  # the workflow is told once
    assert await _status(sessions) == "running"


async def test_a_pause_read_before_a_cancel_committed_does_not_bring_the_broadcast_back(
    app, client, sessions, marketer_headers, monkeypatch, database_url
):
    await _broadcast(sessions, status="running")
    app.state.temporal = temporal = _Temporal()
    temporal.release.set()
    gate = _FirstReadWaits(monkeypatch, database_url)

    pause, cancel = await _steer_while_another_waits(client, marketer_headers, gate, "pause", "cancel")

    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled", cancel.text
    # PostgreSQL: the pause read 'running' before the cancel and came second, so it is refused; SQLite
    # ran the pause first (both succeed, in turn). Never may the broadcast end up paused.
    if database_url.startswith("postgresql"):
        assert pause.status_code == 409, pause.text
        assert "cannot pause a broadcast that is cancelled" in pause.text, pause.text
        assert temporal.signalled == [("broadcast/spring", "cancel")]
    else:
        assert pause.status_code == 200, pause.text
    assert await _status(sessions) == "cancelled"
