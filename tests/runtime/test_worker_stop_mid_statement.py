"""A worker that stops while one of its activities is inside a database statement cancels that activity;
the database must come out of it unlocked, or every later writer waits (on SQLite: for the whole 30 s
busy timeout, as a CI run once did in the test after one whose workflow was still running)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.engine import make_url
from temporalio import activity, workflow
from temporalio.worker import Worker

from domain.cases.models import Team
from domain.db import transaction
from tests.temporal_env import time_skipping

HOLD = "hold"


@workflow.defn(sandboxed=False)
class Holding:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(HOLD, start_to_close_timeout=timedelta(minutes=5))


def _unlocked_sqlite(path: str) -> bool:
    """Whether a writer takes SQLite's write lock within 5 s (a connection of its own, as another
    process would be: the engine's pool cannot hand out the stranded connection's lock)."""
    connection = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


async def _unlocked(sessions) -> bool:
    async with sessions() as session:
        url = session.bind.url
    if url.get_backend_name() == "sqlite":
        return await asyncio.to_thread(_unlocked_sqlite, make_url(url).database)
    async with transaction(sessions) as session:  # the row lock the activity took, within 5 s
        await session.execute(text("SET LOCAL lock_timeout = '5s'"))
        await session.execute(text("UPDATE teams SET name = 'after' WHERE id = 'held'"))
    return True


async def test_a_worker_stopped_mid_statement_leaves_the_database_unlocked(sessions):
    async with transaction(sessions) as session:
        session.add(Team(id="held", name="before"))
    inside, release = threading.Event(), threading.Event()
    releasing: list[asyncio.Task] = []

    @activity.defn(name=HOLD)
    async def hold() -> None:
        async with transaction(sessions) as session:
            await session.execute(text("UPDATE teams SET name = 'during' WHERE id = 'held'"))
            if session.bind.dialect.name == "sqlite":
                driver = (await (await session.connection()).get_raw_connection()).driver_connection
                # A statement that runs until the test lets it go, so the cancel lands inside it.
                await driver.create_function("held", 0, lambda: (inside.set(), release.wait(30))[1])
                statement = "SELECT held()"
            else:
                inside.set()
                statement = "SELECT pg_sleep(30)"
            # Let the statement end once the worker has cancelled the activity.
            releasing.append(asyncio.create_task(_release_on_cancel(release)))
            await session.execute(text(statement))

    async with await time_skipping() as env:
        queue = f"hold-{uuid.uuid4().hex[:8]}"
        async with Worker(env.client, task_queue=queue, workflows=[Holding], activities=[hold]):
            await env.client.start_workflow(Holding.run, id=f"hold/{queue}", task_queue=queue)
            assert await asyncio.to_thread(inside.wait, 30)
        # The worker has stopped and waited for the cancelled activity: its transaction is over.
        assert await _unlocked(sessions)
    release.set()
    await asyncio.gather(*releasing)


async def _release_on_cancel(release: threading.Event) -> None:
    await activity.wait_for_cancelled()
    release.set()  # the statement's end comes back through the thread, after the CancelledError
