"""Group commit: concurrent writes share a transaction; a failing write does not fail its neighbours."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from activities.group_commit import GroupCommit
from domain.customers.models import Customer
from domain.db import transaction, utcnow


async def test_concurrent_writes_commit_and_a_bad_one_fails_alone(sessions):
    writes = GroupCommit(sessions)

    def add(user_id: str):
        async def write(session):
            session.add(Customer(user_id=user_id, traits={}, first_seen_at=utcnow(), last_seen_at=utcnow()))
            await session.flush()
            return user_id

        return write

    async def bad(session):
        raise ValueError("broken write")

    results = await asyncio.gather(
        *(writes.run(add(f"u{i}")) for i in range(20)), writes.run(bad), return_exceptions=True
    )

    assert results[:20] == [f"u{i}" for i in range(20)]
    assert isinstance(results[20], ValueError)
    async with transaction(sessions) as session:
        stored = set(await session.scalars(select(Customer.user_id)))
    assert stored == {f"u{i}" for i in range(20)}
    with pytest.raises(ValueError):
        await writes.run(bad)
