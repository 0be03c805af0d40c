"""A journey that starts while its customer is being erased keeps nothing of them.

The router starts an enrollment in Temporal, then records it. An erasure that reads the customer's
enrollments in between cannot see it: the recording finds the customer gone and deletes the workflow.
A visitor merged away in between is recorded as the customer it became."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import event, select

from domain.customers import service as customers
from domain.customers.models import Customer
from domain.db import transaction
from domain.events import service as events
from domain.events.schemas import IdentifyCall, TrackCall
from domain.journeys import service as journeys
from domain.journeys.models import Enrollment
from domain.journeys.schemas import JourneyIn
from runtime.event_router import EventRouter
from tests.conftest import wait_for
from tests.email.helpers import done_or_waiting_on_a_lock
from tests.temporal_env import gone
from tests.workflows.harness import engine
from tests.workflows.test_abandoned_cart import _setup


async def _ingest(sessions, *calls) -> None:
    async with transaction(sessions) as session:
        await events.ingest(session, list(calls), source_key_id=None)


async def _id(sessions, **key) -> int | None:
    async with sessions() as session:
        (column, value), *_ = key.items()
        return await session.scalar(select(Customer.id).where(getattr(Customer, column) == value))


async def _enrollments(sessions) -> list[tuple[str, int]]:
    async with sessions() as session:
        return list((await session.execute(select(Enrollment.workflow_id, Enrollment.customer_id))).all())


def _row(workflow_id: str, customer_id: int) -> dict:
    return {
        "workflow_id": workflow_id,
        "journey_id": "j",
        "version": 1,
        "customer_id": customer_id,
        "event_id": None,
    }


ENTER_AND_EXIT = {
    "nodes": [
        {"id": "start", "type": "entry", "event": "Viewed", "next": "done"},
        {"id": "done", "type": "exit"},
    ]
}


@pytest.fixture
async def journey(sessions):
    async with transaction(sessions) as session:
        await journeys.create(session, JourneyIn(id="j", name="j", definition=ENTER_AND_EXIT))
        await journeys.publish(session, "j")


async def test_recording_names_the_profile_a_visitor_became_and_leaves_out_the_erased(sessions, journey):
    await _ingest(sessions, TrackCall(anonymousId="v-1", event="Viewed"), IdentifyCall(userId="kim"))
    await _ingest(sessions, IdentifyCall(userId="gone"))
    visitor = await _id(sessions, anonymous_id="v-1")
    kim = await _id(sessions, user_id="kim")
    erased = await _id(sessions, user_id="gone")
    await _ingest(sessions, IdentifyCall(userId="kim", anonymousId="v-1"))  # the visitor logs in
    async with transaction(sessions) as session:
        await customers.hold_for_erasure(session, erased)
        await customers.erase(session, erased, by_key_id=None, reason=None)
    assert kim != visitor

    async with transaction(sessions) as session:
        orphans = await journeys.record_enrollments(
            session, [_row("w-visitor", visitor), _row("w-gone", erased)]
        )

    assert orphans == ["w-gone"]
    assert await _enrollments(sessions) == [("w-visitor", kim)]


def _write_lock_taken(path: str) -> bool:
    """Whether a connection holds SQLite's write lock: one more writer, not willing to wait, is refused."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    finally:
        probe.close()


async def test_a_recording_waits_for_an_erasure_in_flight_and_then_finds_the_customer_gone(sessions, journey):
    db = sessions.kw["bind"]
    await _ingest(sessions, IdentifyCall(userId="ada"))
    ada = await _id(sessions, user_id="ada")
    async with sessions() as erasing:
        await erasing.begin()
        await customers.hold_for_erasure(erasing, ada)
        # What the erasure will delete from Temporal was read: no enrollment yet.
        assert await journeys.workflow_ids_of_customer(erasing, ada) == []

        async def record() -> list[str]:
            async with transaction(sessions) as session:
                return await journeys.record_enrollments(session, [_row("w-ada", ada)])

        asked = asyncio.Event()  # SQLite: the recording asks for the write lock

        def noting(_conn, _cursor, statement, *_):
            if statement == "BEGIN IMMEDIATE":
                asked.set()

        event.listen(db.sync_engine, "before_cursor_execute", noting)
        recording = asyncio.create_task(record())

        async def blocked() -> bool:
            if db.dialect.name == "postgresql":  # the recording's statement waits for a lock
                return await done_or_waiting_on_a_lock(recording, db)
            # SQLite shows no waiting sessions; a recording that asked for the write lock while the
            # erasure's transaction holds it can only wait (or finish, if the lock were not held).
            return recording.done() or (asked.is_set() and _write_lock_taken(db.url.database))

        # It cannot record ahead of the erasure (the erasure would cascade the row away unseen).
        await wait_for(blocked)
        assert not recording.done()
        await customers.erase(erasing, ada, by_key_id=None, reason=None)
        await erasing.commit()

    assert await recording == ["w-ada"]
    assert await _enrollments(sessions) == []


async def test_a_journey_started_while_its_customer_is_erased_is_deleted_from_temporal(
    dev_server, app, client, admin_headers, sessions, settings
):
    app.state.temporal = dev_server.client
    erasures = []

    class ErasingMidRoute(EventRouter):
        async def _start(self, c):
            started = await super()._start(c)
            if c.event.customer_id == ada:  # the erasure runs between the start and the record
                erased = await client.delete(f"/api/customers/{ada}?reason=asked", headers=admin_headers)
                erasures.append(erased)
            return started

    async with engine(dev_server, sessions, settings) as e:
        await _setup(e)
        ada = await e.customer("ada", value_tier="small")
        bob = await e.customer("bob", value_tier="small")
        e.router = ErasingMidRoute(e.client, sessions, task_queue=e.task_queue)
        await e.track("ada", "Cart Updated", cart_id="c1")
        await e.track("bob", "Cart Updated", cart_id="c2")

        [erasure] = erasures
        assert erasure.status_code == 200, erasure.text
        assert erasure.json()["workflows_deleted"] == 0  # it started after the erasure looked
        assert await wait_for(lambda: gone(e.handle("cart", ada, "c1")))
        assert [r.customer_id for r in await e.enrollments("cart")] == [bob]
        await wait_for(lambda: e.listening(bob, "Order Completed"))
        assert not await gone(e.handle("cart", bob, "c2"))
        assert e.mailbox() == []
