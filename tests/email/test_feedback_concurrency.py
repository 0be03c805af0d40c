"""Email feedback batches (and erasures) that lock the same addresses at once, on PostgreSQL: each
locks an address before changing its suppression, and two that took those locks in different orders
deadlocked (one was answered 503, to be retried). SQLite runs one writer at a time."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, select

from domain.customers.models import Customer
from domain.db import utcnow
from domain.subscriptions import service as subscriptions
from domain.subscriptions.models import Suppression
from domain.subscriptions.schemas import FeedbackBatch

ROUNDS = 6
ADDRESSES = 40


@pytest.fixture
def postgresql(database_url) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("lock order matters where writers run at once: PostgreSQL")


def _batch(addresses: list[str]) -> dict:
    return {"events": [{"type": "bounce", "email": a, "detail": "550 no such user"} for a in addresses]}


async def _customers(sessions, addresses: list[str]) -> list[int]:
    async with sessions.begin() as session:
        now = utcnow()
        rows = [
            Customer(user_id=a, email=a, traits={}, first_seen_at=now, last_seen_at=now) for a in addresses
        ]
        session.add_all(rows)
        await session.flush()
        return [c.id for c in rows]


async def test_two_feedback_batches_of_the_same_addresses_in_opposite_orders_both_succeed(
    postgresql, client, admin_headers, sessions
):
    for round_ in range(ROUNDS):
        addresses = [f"r{round_}-{i}@example.com" for i in range(ADDRESSES)]
        await _customers(sessions, addresses)  # each suppression also records an event for its customer
        answers = await asyncio.gather(
            client.post("/api/webhooks/email-feedback", json=_batch(addresses), headers=admin_headers),
            client.post("/api/webhooks/email-feedback", json=_batch(addresses[::-1]), headers=admin_headers),
        )
        assert [r.status_code for r in answers] == [200, 200], (round_, [r.text for r in answers])
    async with sessions() as session:
        stored = set(await session.scalars(select(Suppression.address)))
    assert len(stored) == ROUNDS * ADDRESSES


async def test_a_batch_and_an_erasure_lock_their_addresses_in_one_order_the_lock_keys(
    postgresql, sessions, engine
):
    """Sorted by key, not by address (two addresses can share a key): each lock is taken once,
    before any change, in the same order by a batch in any order and by an erasure."""
    addresses = [f"k{i}@example.com" for i in range(30)]
    locked: list[int] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "pg_advisory_xact_lock" in statement:
            locked.append(parameters[1])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with sessions.begin() as session:
            batch = FeedbackBatch.model_validate(_batch(addresses[::-1]))
            await subscriptions.record_feedback(session, batch)
        first_pass = locked[: len(addresses)]
        assert first_pass == sorted(first_pass) and len(set(first_pass)) == len(addresses)
        locked.clear()
        async with sessions.begin() as session:
            await subscriptions.forget_addresses(session, addresses)
        assert locked == first_pass
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
