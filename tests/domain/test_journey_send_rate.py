"""The per-journey send-rate clock: slots in order, at most ``max`` per period in any window, and one
slot per send key however often the send asks (a retried activity takes no second slot)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.db import transaction
from domain.journeys import service as journeys
from domain.journeys.models import Journey

NOW = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)


async def _journey(sessions, journey_id: str) -> None:
    async with transaction(sessions) as session:
        session.add(Journey(id=journey_id, name=journey_id, status="published", draft={}))


async def _slot(sessions, key: str, now: datetime = NOW, journey_id: str = "j") -> timedelta:
    async with transaction(sessions) as session:
        slot = await journeys.take_send_slot(session, journey_id, key, now, 2, 60)
    return slot - NOW


async def test_slots_hold_at_most_max_per_period_and_keep_to_their_key(sessions):
    await _journey(sessions, "j")
    await _journey(sessions, "other")

    slots = [await _slot(sessions, f"send-{i}") for i in range(5)]
    assert [s.total_seconds() for s in slots] == [0, 0, 60, 60, 120]
    # Asked again (a retried plan, or the send waking at its slot), a key finds its own slot.
    assert await _slot(sessions, "send-3") == timedelta(seconds=60)
    assert await _slot(sessions, "send-3", NOW + timedelta(seconds=61)) == timedelta(seconds=60)
    # Another journey has a clock of its own.
    assert await _slot(sessions, "elsewhere", journey_id="other") == timedelta(0)
    # A slot that passed long ago unused (held by quiet hours or a pause) is traded for a new one.
    later = NOW + timedelta(hours=1)
    assert await _slot(sessions, "send-0", later) == later - NOW
    assert await _slot(sessions, "send-5", later) == later - NOW
    assert await _slot(sessions, "send-6", later) == later - NOW + timedelta(seconds=60)
