"""A segment delete and the save of a broadcast or journey publish that uses the segment, at the same
moment: one of the two must lose. Each test holds one transaction at the step where the race bit and
runs the other to its end (or until it waits for a lock) before letting the first go on.

On PostgreSQL neither read locked anything: the delete found no broadcast (or published journey) yet
and the save found the segment still there, so both committed, leaving a broadcast that sends to a
segment that is gone. On SQLite every transaction takes the write lock as it begins, so the second one
cannot start before the first ends; the tests hold there too."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest

from domain.broadcasts import repository as broadcast_repository
from domain.broadcasts import service as broadcasts
from domain.broadcasts.schemas import BroadcastIn
from domain.db import transaction
from domain.errors import Conflict, InvalidInput
from domain.journeys import repository as journey_repository
from domain.journeys import service as journeys
from domain.journeys.schemas import JourneyIn
from domain.segments import repository as segment_repository
from domain.segments import service as segments
from domain.segments.schemas import SegmentIn
from tests.conftest import wait_for
from tests.email.helpers import add_template, done_or_waiting_on_a_lock

AUDIENCE = {"kind": "segment", "segment_id": "picked"}
JOURNEY = JourneyIn(
    id="j1",
    name="J1",
    definition={
        "nodes": [
            {"id": "start", "type": "entry", "trigger": "segment", "segment_id": "picked", "next": "hello"},
            {"id": "hello", "type": "send_email", "template_id": "welcome", "next": "done"},
            {"id": "done", "type": "exit"},
        ]
    },
)


async def _segment(sessions) -> None:
    await add_template(sessions)
    async with transaction(sessions) as session:
        rule = {"trait": "first_name", "op": "exists"}
        await segments.create(session, SegmentIn(id="picked", name="Picked", rule=rule))


async def _create_broadcast(sessions) -> None:
    async with transaction(sessions) as session:
        await broadcasts.create(
            session, BroadcastIn(id="spring", name="Spring", template_id="welcome", audience=AUDIENCE)
        )


async def _publish(sessions) -> None:
    async with transaction(sessions) as session:
        await journeys.publish(session, "j1")


async def _delete(sessions) -> None:
    async with transaction(sessions) as session:
        await segments.delete(session, "picked")


@asynccontextmanager
async def _other_runs_at(monkeypatch, module, name: str, other, engine):
    """While this block's transaction calls ``module.name``: start ``other``, let it finish or wait for
    a lock (PostgreSQL; on SQLite it cannot begin before this transaction ends), then go on."""
    started: list[asyncio.Task] = []
    original = getattr(module, name)

    async def hooked(*args, **kwargs):
        if not started:
            started.append(asyncio.create_task(other()))
            if engine.dialect.name == "postgresql":
                await wait_for(lambda: done_or_waiting_on_a_lock(started[0], engine))
        return await original(*args, **kwargs)

    monkeypatch.setattr(module, name, hooked)
    yield started
    monkeypatch.setattr(module, name, original)


async def _outcome(task: asyncio.Task) -> Exception | None:
    try:
        await task
    except (Conflict, InvalidInput) as exc:
        return exc
    return None


async def test_a_broadcast_created_while_its_segment_is_deleted_fails_when_the_delete_checked_first(
    engine, sessions, monkeypatch
):
    # The delete has found no broadcast to the segment; the create runs now.
    await _segment(sessions)
    hook = _other_runs_at(
        monkeypatch,
        segment_repository,
        "unfinished_broadcast_audiences",
        lambda: _create_broadcast(sessions),
        engine,
    )
    async with hook as started:
        await _delete(sessions)
    refused = await _outcome(started[0])

    assert isinstance(refused, InvalidInput), refused
    assert refused.detail == {"field": "audience.segment_id", "problem": "no such segment"}
    async with sessions() as session:
        assert await broadcast_repository.get(session, "spring") is None
        assert not await segments.exists(session, "picked")


async def test_a_segment_deleted_while_a_broadcast_to_it_is_created_is_refused_when_the_create_checked_first(
    engine, sessions, monkeypatch
):
    # The create has found the segment; the delete runs now, before the broadcast row is written.
    await _segment(sessions)
    hook = _other_runs_at(monkeypatch, broadcast_repository, "add", lambda: _delete(sessions), engine)
    async with hook as started:
        await _create_broadcast(sessions)
    refused = await _outcome(started[0])

    assert isinstance(refused, Conflict), refused
    assert refused.code == "segment_in_use" and refused.detail["broadcasts"] == ["spring"]
    async with sessions() as session:
        assert await segments.exists(session, "picked")


@pytest.mark.parametrize("first", ["delete", "publish"])
async def test_a_journey_published_while_its_segment_is_deleted_leaves_one_of_the_two(
    engine, sessions, monkeypatch, first
):
    await _segment(sessions)
    async with transaction(sessions) as session:
        await journeys.create(session, JOURNEY)
    if first == "delete":  # the delete has found no published journey; the publish runs now
        hook = _other_runs_at(
            monkeypatch,
            segment_repository,
            "published_journey_definitions",
            lambda: _publish(sessions),
            engine,
        )
        run = _delete
    else:  # the publish has found the segment; the delete runs before the version is written
        hook = _other_runs_at(monkeypatch, journey_repository, "add", lambda: _delete(sessions), engine)
        run = _publish
    async with hook as started:
        await run(sessions)
    refused = await _outcome(started[0])

    async with sessions() as session:
        published = (await journeys.get(session, "j1")).published_version
        still_there = await segments.exists(session, "picked")
    if first == "delete":
        assert isinstance(refused, InvalidInput), refused
        assert (published, still_there) == (None, False)
    else:
        assert isinstance(refused, Conflict) and refused.detail["journeys"] == ["j1"], refused
        assert (published, still_there) == (1, True)
