"""Concurrent requests share their writes (group commit), yet each is answered for itself: only once its
own events are committed, with its own result, and a request that cannot be stored fails alone."""

import asyncio

import pytest
from sqlalchemy import func, select

from domain.customers.models import Customer
from domain.events.ingestor import Ingestor
from domain.events.models import Event, EventOutbox
from domain.events.schemas import TrackCall
from domain.events.service import Submission


def _submission(n: int, *, duplicate_of: int | None = None) -> Submission:
    calls = [TrackCall(userId=f"u{n % 7}", event="Viewed", messageId=f"m-{n}-{i}") for i in range(5)]
    if duplicate_of is not None:  # a retry of an earlier request, arriving alongside it
        calls = _submission(duplicate_of).calls
    return Submission(calls, source_key_id=None)


class _Unstorable(Submission):
    """A request whose calls cannot be written (the database would refuse them)."""

    def document(self, pos: int) -> bytes:
        raise ValueError("cannot be stored")

    def applied(self):
        raise ValueError("cannot be stored")


async def _count(sessions, model) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


@pytest.fixture
async def ingestor(sessions, database_url):
    ingestor = Ingestor(sessions, database_url, writers=2)
    yield ingestor
    await ingestor.close()


async def test_concurrent_requests_are_stored_together_each_with_its_own_result(ingestor, sessions):
    submissions = [_submission(n) for n in range(40)] + [_submission(40, duplicate_of=3)]
    results = await asyncio.gather(*(ingestor.store(s) for s in submissions))

    assert [r.stored for r in results[:40]] == [5] * 40
    assert (results[40].received, results[40].stored) == (5, 0)  # the retry: acknowledged, not stored
    assert await _count(sessions, Event) == 200
    assert await _count(sessions, EventOutbox) == 200
    async with sessions() as session:
        assert await session.scalar(select(func.sum(Customer.event_count))) == 200
    # Fewer writes than requests: the ones that arrived together went in together.
    assert ingestor.stats.submissions == 41 and ingestor.stats.groups < 41


async def test_a_request_that_cannot_be_stored_fails_alone(ingestor, sessions):
    good = [_submission(n) for n in range(6)]
    bad = _Unstorable(_submission(99).calls, source_key_id=None)
    outcomes = await asyncio.gather(
        *(ingestor.store(s) for s in [*good[:3], bad, *good[3:]]), return_exceptions=True
    )

    assert isinstance(outcomes[3], ValueError)
    assert [o.stored for i, o in enumerate(outcomes) if i != 3] == [5] * 6
    assert await _count(sessions, Event) == 30
    async with sessions() as session:
        stored = set(await session.scalars(select(Event.message_id)))
    assert not any(m.startswith("m-99-") for m in stored)


async def test_a_request_is_answered_only_after_its_events_are_committed(ingestor, sessions):
    async def store_then_look(n: int) -> tuple[int, int]:
        result = await ingestor.store(_submission(n))
        async with sessions() as session:  # at once, while other groups may still be in flight
            found = await session.scalar(
                select(func.count()).select_from(Event).where(Event.message_id.like(f"m-{n}-%"))
            )
        return result.stored, found

    assert await asyncio.gather(*(store_then_look(n) for n in range(20))) == [(5, 5)] * 20


async def test_a_deadlocked_group_is_stored_again(ingestor, sessions, database_url, monkeypatch):
    """Two groups locking the same rows in different orders: PostgreSQL aborts one of them, which then
    runs again (its statement rolled back whole) instead of failing its requests."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's storing statement; SQLite has one writer")
    import asyncpg

    from domain.events import postgres_batch

    real, attempts = postgres_batch.store_group, []

    async def deadlocking_once(*args, **kwargs):
        attempts.append(1)
        if len(attempts) == 1:
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        return await real(*args, **kwargs)

    monkeypatch.setattr(postgres_batch, "store_group", deadlocking_once)
    result = await ingestor.store(_submission(1))

    assert result.stored == 5 and len(attempts) > 1
    assert await _count(sessions, Event) == 5
