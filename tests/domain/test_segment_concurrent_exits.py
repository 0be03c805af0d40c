"""Two passes that end the same stay at once (PostgreSQL, where they run concurrently): the second
waits for the first one's row lock, then finds the stay closed and leaves it, so the exit is recorded
once and keeps the first pass's time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.segments import service as segments
from domain.segments.models import SegmentMembership
from domain.segments.schemas import SegmentIn
from tests.conftest import wait_for
from tests.domain.test_segment_stays_follow_deletions import (
    _postgresql_only,
    _segment_events_of,
    _waiting_on_a_lock,
)

BERLINERS = {"trait": "city", "op": "equals", "value": "Berlin"}


async def _a_berliner_who_moved(sessions) -> int:
    now = utcnow()
    async with transaction(sessions) as session:
        ada = Customer(user_id="ada", traits={"city": "Berlin"}, first_seen_at=now, last_seen_at=now)
        session.add(ada)
        await session.flush()
        await segments.create(session, SegmentIn(id="berliners", name="Berliners", rule=BERLINERS))
    async with transaction(sessions) as session:  # she moves (say, a journey's update_trait step)
        await session.execute(update(Customer).where(Customer.id == ada.id).values(traits={"city": "Paris"}))
    return ada.id


@pytest.mark.parametrize(
    ("exit_pass", "statement_start"),
    [
        (lambda session, ada, at: segments.refresh_customers(session, {ada}, now=at), "WITH changed AS"),
        (
            lambda session, ada, at: segments.rebuild(session, "berliners", now=at),
            "UPDATE segment_memberships",
        ),
    ],
    ids=["refresh_customers", "rebuild"],
)
async def test_two_passes_ending_the_same_stay_record_one_exit(sessions, exit_pass, statement_start):
    _postgresql_only(sessions)
    ada = await _a_berliner_who_moved(sessions)
    first_at = utcnow()
    async with sessions() as first:
        await first.begin()
        await exit_pass(first, ada, first_at)  # ada exits, not committed yet

        async def second_pass():
            async with transaction(sessions) as session:
                await exit_pass(session, ada, first_at + timedelta(seconds=1))

        second = asyncio.create_task(second_pass())
        await wait_for(lambda: _waiting_on_a_lock(sessions, statement_start))  # on ada's stay
        await first.commit()
    await second
    assert sorted(await _segment_events_of(sessions, ada)) == ["Segment Entered", "Segment Exited"]
    async with sessions() as session:
        stays = (await session.execute(select(SegmentMembership.exited_at))).scalars().all()
    assert stays == [first_at]
