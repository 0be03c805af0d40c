from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.db import insert_ignoring_conflicts
from domain.events.models import Event, EventOutbox


async def insert_event(session: AsyncSession, values: dict) -> int | None:
    """Insert one event; ``None`` when its messageId was already received."""
    stmt = insert_ignoring_conflicts(session, Event, ["message_id"]).values(**values).returning(Event.id)
    return await session.scalar(stmt)


async def enqueue(session: AsyncSession, event_ids: list[int]) -> None:
    if event_ids:
        await session.execute(
            insert_ignoring_conflicts(session, EventOutbox, ["event_id"]),
            [{"event_id": i} for i in event_ids],
        )


async def pending(session: AsyncSession, limit: int) -> list[Event]:
    stmt = (
        select(Event)
        .join(EventOutbox, EventOutbox.event_id == Event.id)
        .order_by(EventOutbox.event_id)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def dequeue(session: AsyncSession, event_ids: list[int]) -> None:
    if event_ids:
        await session.execute(delete(EventOutbox).where(EventOutbox.event_id.in_(event_ids)))


async def backlog(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many events wait for routing, and since when the oldest has waited."""
    row = (await session.execute(select(func.count(), func.min(EventOutbox.created_at)))).one()
    return row[0], row[1]
