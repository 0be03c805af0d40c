"""Stays have no foreign keys: deleting a customer or a segment deletes its stays, also when a refresh
pass is opening stays for it at that very moment (PostgreSQL, where the two run concurrently)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text

from domain.customers import service as customers
from domain.customers.models import Customer
from domain.db import transaction
from domain.events import service as events
from domain.events.models import Event
from domain.events.schemas import AliasCall, TrackCall
from domain.segments import service as segments
from domain.segments.models import SegmentMembership
from domain.segments.schemas import SegmentIn
from tests.conftest import wait_for

BUYERS = {"event": "Order Completed", "within_days": 30}


async def _track(sessions, name="Order Completed", **ids):
    async with transaction(sessions) as session:
        await events.ingest(session, [TrackCall(event=name, **ids)], source_key_id=None)


async def _customer_id(sessions, user_id: str) -> int:
    async with sessions() as session:
        return await session.scalar(select(Customer.id).where(Customer.user_id == user_id))


async def _stays(sessions) -> set[tuple[str, int]]:
    async with sessions() as session:
        rows = await session.execute(select(SegmentMembership.segment_id, SegmentMembership.customer_id))
        return {(segment_id, customer_id) for segment_id, customer_id in rows}


async def _buyers_and_a_pending_order(sessions, *users: str) -> None:
    """A segment of buyers with ``users`` in it, and a new order by ada that no pass has seen yet (her
    profile is older: the pass has nothing else of hers to do)."""
    await _track(sessions, name="Page Viewed", userId="ada")
    for user in users:
        await _track(sessions, userId=user)
    async with transaction(sessions) as session:
        await segments.create(session, SegmentIn(id="buyers", name="Buyers", rule=BUYERS))
        await segments.refresh_from_events(session)  # the cursor moves past the history
    await _track(sessions, userId="ada")


async def test_erasing_a_customer_deletes_their_stays(sessions):
    await _buyers_and_a_pending_order(sessions, "ada", "bob")
    ada, bob = await _customer_id(sessions, "ada"), await _customer_id(sessions, "bob")
    async with transaction(sessions) as session:
        await customers.erase(session, ada, by_key_id=None, reason=None)
    async with transaction(sessions) as session:
        await segments.refresh_from_events(session)
    assert await _stays(sessions) == {("buyers", bob)}


async def test_a_merged_visitor_leaves_no_stay_behind(sessions):
    await _track(sessions, anonymousId="visitor-1")
    async with transaction(sessions) as session:
        await segments.create(session, SegmentIn(id="buyers", name="Buyers", rule=BUYERS))
    async with sessions() as session:
        visitor = await session.scalar(select(Customer.id).where(Customer.anonymous_id == "visitor-1"))
    assert await _stays(sessions) == {("buyers", visitor)}
    await _track(sessions, userId="ada")
    async with transaction(sessions) as session:
        await events.ingest(session, [AliasCall(userId="ada", previousId="visitor-1")], source_key_id=None)
    ada = await _customer_id(sessions, "ada")
    assert ada != visitor
    # The visitor's profile is gone; its stay is Ada's now, as its events are.
    assert await _stays(sessions) == {("buyers", ada)}
    async with transaction(sessions) as session:
        await segments.refresh_from_events(session)
    assert await _stays(sessions) == {("buyers", ada)}


async def test_deleting_a_segment_deletes_its_stays(sessions):
    await _buyers_and_a_pending_order(sessions, "ada")
    async with transaction(sessions) as session:
        await segments.create(session, SegmentIn(id="everyone-buying", name="Also buyers", rule=BUYERS))
        await segments.delete(session, "buyers")
    assert {segment_id for segment_id, _ in await _stays(sessions)} == {"everyone-buying"}


async def _waiting_on_a_lock(sessions, statement_start: str) -> bool:
    async with sessions() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() AND query LIKE :start"
            ),
            {"start": f"{statement_start}%"},
        )
    return waiting > 0


async def _segment_events_of(sessions, customer_id: int) -> list[str]:
    async with sessions() as session:
        found = select(Event.name).where(Event.customer_id == customer_id, Event.name.like("Segment %"))
        return list((await session.scalars(found)).all())


def _postgresql_only(sessions):
    if sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time")


async def test_a_customer_erased_while_a_pass_enters_them_keeps_no_stay(sessions):
    _postgresql_only(sessions)
    await _buyers_and_a_pending_order(sessions, "bob")
    ada = await _customer_id(sessions, "ada")
    async with sessions() as eraser:
        await eraser.begin()
        await customers.erase(eraser, ada, by_key_id=None, reason=None)  # not committed yet

        async def refresh():
            async with transaction(sessions) as session:
                await segments.refresh_from_events(session)

        passing = asyncio.create_task(refresh())
        await wait_for(lambda: _waiting_on_a_lock(sessions, "WITH who AS"))  # the pass waits for ada's row
        await eraser.commit()
    await passing
    assert ada not in {customer_id for _, customer_id in await _stays(sessions)}
    assert await _segment_events_of(sessions, ada) == []


async def test_a_customer_erased_after_a_pass_entered_them_keeps_no_stay(sessions):
    _postgresql_only(sessions)
    await _buyers_and_a_pending_order(sessions, "bob")
    ada = await _customer_id(sessions, "ada")
    async with sessions() as refresher:
        await refresher.begin()
        await segments.refresh_from_events(refresher)  # ada entered, not committed yet

        async def erase():
            async with transaction(sessions) as session:
                await customers.erase(session, ada, by_key_id=None, reason=None)

        erasing = asyncio.create_task(erase())
        await wait_for(lambda: _waiting_on_a_lock(sessions, "DELETE FROM customers"))
        await refresher.commit()
    await erasing
    assert ada not in {customer_id for _, customer_id in await _stays(sessions)}


async def test_a_segment_deleted_while_a_pass_enters_customers_keeps_no_stay(sessions):
    _postgresql_only(sessions)
    await _buyers_and_a_pending_order(sessions, "bob")
    async with sessions() as deleter:
        await deleter.begin()
        await segments.delete(deleter, "buyers")  # not committed yet

        async def refresh():
            async with transaction(sessions) as session:
                await segments.refresh_from_events(session)

        passing = asyncio.create_task(refresh())
        # The pass waits for the delete before it reads the rules (it takes turns with every save).
        await wait_for(lambda: _waiting_on_a_lock(sessions, "SELECT pg_advisory_xact_lock_shared"))
        await deleter.commit()
    await passing
    assert await _stays(sessions) == set()
