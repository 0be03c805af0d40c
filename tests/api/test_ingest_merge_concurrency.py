"""Concurrent batches that link and merge the same profiles (alias, identify with both ids, visitor
tracks): every request is stored on its first try, and the profiles add up afterwards.

On PostgreSQL several writers resolve identities at once. Each resolution creates, claims and merges
customers in an order only its request decides, and two at once used to deadlock: the attempt was
retried, and past the retries the client got a 503. Identity changes now take turns, among themselves
and with the statement that stores events (which key-share locks the customers in its own order: it
deadlocked with a merge in about half the runs of this test)."""

import asyncio
import random

from sqlalchemy import func, select

from domain.customers.models import Customer, CustomerAlias
from domain.events import ingestor as ingestor_module
from domain.events.models import Event

USERS, VISITORS = 30, 60
BATCHES, CALLS, SENDERS = 120, 40, 8


def _batches(rng: random.Random) -> list[list[dict]]:
    ids = iter(range(1, BATCHES * CALLS + 1))

    def call() -> dict:
        user, visitor, kind = (
            f"user-{rng.randrange(USERS)}",
            f"visitor-{rng.randrange(VISITORS)}",
            rng.random(),
        )
        message = {"messageId": f"m-{next(ids)}"}
        if kind < 0.3:
            return {"type": "alias", "userId": user, "previousId": visitor, **message}
        if kind < 0.6:
            return {"type": "identify", "userId": user, "anonymousId": visitor, **message}
        return {"type": "track", "anonymousId": visitor, "event": "Viewed", **message}

    return [[call() for _ in range(CALLS)] for _ in range(BATCHES)]


async def test_concurrent_merging_batches_are_stored_first_time(client, sessions, write_key, monkeypatch):
    failed_attempts = []
    retryable = ingestor_module._retryable

    def recording(exc):
        failed_attempts.append(repr(exc))
        return retryable(exc)

    monkeypatch.setattr(ingestor_module, "_retryable", recording)
    batches = _batches(random.Random(3))
    gate = asyncio.Semaphore(SENDERS)

    async def post(batch):
        async with gate:
            return await client.post("/v1/batch", json={"batch": batch}, auth=(write_key, ""))

    responses = await asyncio.gather(*(post(b) for b in batches))

    assert [r.status_code for r in responses] == [200] * BATCHES, [
        r.text for r in responses if r.status_code != 200
    ]
    assert failed_attempts == []  # no deadlock, nothing stored on a second attempt
    sent = [c for batch in batches for c in batch]
    async with sessions() as session:
        stored = dict((await session.execute(select(Event.message_id, Event.customer_id))).all())
        customers = {c.id: c for c in await session.scalars(select(Customer))}
        alias_owner = dict(
            (await session.execute(select(CustomerAlias.anonymous_id, CustomerAlias.customer_id))).all()
        )
        counted = (await session.execute(select(func.sum(Customer.event_count)))).scalar_one()
    assert set(stored) == {c["messageId"] for c in sent}
    assert set(stored.values()) <= set(customers)  # every event belongs to a profile that exists
    assert counted == len(sent)  # the facts of merged profiles were added up, none lost
    owner_of_user = {c.user_id: c.id for c in customers.values() if c.user_id}
    assert set(owner_of_user) == {c["userId"] for c in sent if "userId" in c}
    owner_of_visitor = {}
    for visitor in {c.get("anonymousId") or c.get("previousId") for c in sent}:
        # A visitor id names exactly one profile: its own, or the one it was merged into.
        named = {c.id for c in customers.values() if c.anonymous_id == visitor}
        named |= {alias_owner[visitor]} if visitor in alias_owner else set()
        assert len(named) == 1, (visitor, named)
        owner_of_visitor[visitor] = named.pop()
    for call in sent:  # each call is attributed to the profile its ids name now
        owner = owner_of_user[call["userId"]] if "userId" in call else owner_of_visitor[call["anonymousId"]]
        assert stored[call["messageId"]] == owner, call
