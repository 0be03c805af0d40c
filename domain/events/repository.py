from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Insert,
    String,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domain.db import utcnow
from domain.events.models import LANE_EVENTS, Event, EventOutbox, message_ref_of

events = Event.__table__
outbox = EventOutbox.__table__


# --- events the engine records itself -------------------------------------------------------------

_COLUMNS = [
    "message_id", "type", "name", "customer_id", "user_id", "anonymous_id",
    "properties", "traits", "context", "timestamp", "received_at", "message_ref",
]  # fmt: skip


def track_for_each(
    who: FromClause,
    *where: ColumnElement[bool],
    message_id_prefix: str,
    name: str,
    properties: dict,
    context: dict,
    at: datetime,
) -> Insert:
    """INSERT of one ``name`` track event at ``at`` for each customer of ``who`` (id, user_id and
    anonymous_id columns) that ``where`` selects, its message id the prefix and the customer id;
    returning the event ids."""
    source = select(
        literal(message_id_prefix, String) + cast(who.c.id, String),
        literal("track"),
        literal(name),
        who.c.id,
        who.c.user_id,
        who.c.anonymous_id,
        literal(properties, events.c.properties.type),
        literal({}, events.c.traits.type),
        literal(context, events.c.context.type),
        literal(at, events.c.timestamp.type),
        literal(at, events.c.received_at.type),
        literal(message_ref_of(properties), events.c.message_ref.type),
    ).where(*where)
    return insert(events).from_select(_COLUMNS, source).returning(events.c.id)


# --- the outbox, as routers see it ----------------------------------------------------------------


async def claim(
    session: AsyncSession, router_id: str, limit: int, lease: timedelta, lane: str = LANE_EVENTS
) -> list[Event]:
    """Lease up to ``limit`` unclaimed (or expired) outbox rows of ``lane`` to ``router_id``; returns
    their events.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets several routers claim disjoint batches at once.
    SQLite: the transaction holds the write lock (BEGIN IMMEDIATE), which serialises claims.
    """
    now = utcnow()
    free = or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now)
    pick = (
        select(outbox.c.event_id).where(outbox.c.lane == lane, free).order_by(outbox.c.event_id).limit(limit)
    )
    if session.bind.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    claimed = list(
        await session.scalars(
            update(outbox)
            .where(outbox.c.event_id.in_(pick.scalar_subquery()))
            .values(claimed_until=now + lease, claimed_by=router_id)
            .returning(outbox.c.event_id)
        )
    )
    if not claimed:
        return []
    found = list(await session.scalars(select(Event).where(Event.id.in_(claimed)).order_by(Event.id)))
    orphans = set(claimed) - {e.id for e in found}  # the event was erased meanwhile
    if orphans:
        await session.execute(delete(outbox).where(outbox.c.event_id.in_(orphans)))
    return found


async def emails_identified(session: AsyncSession, customer_id: int) -> set[str]:
    """The addresses a customer's identify calls gave (validated and normalised at ingestion)."""
    traits = await session.scalars(
        select(events.c.traits).where(events.c.customer_id == customer_id, events.c.type == "identify")
    )
    return {t["email"] for t in traits if isinstance(t, dict) and isinstance(t.get("email"), str)}


async def forget_customer(session: AsyncSession, customer_id: int) -> None:
    """Delete a customer's events and their outbox rows (erasure)."""
    await session.execute(
        delete(outbox).where(
            outbox.c.event_id.in_(select(events.c.id).where(events.c.customer_id == customer_id))
        )
    )
    await session.execute(delete(events).where(events.c.customer_id == customer_id))


async def dequeue(session: AsyncSession, event_ids: list[int], router_id: str | None = None) -> None:
    """Delete routed rows (only those still leased to ``router_id`` when given)."""
    if event_ids:
        stmt = delete(outbox).where(outbox.c.event_id.in_(event_ids))
        if router_id is not None:
            stmt = stmt.where(outbox.c.claimed_by == router_id)
        await session.execute(stmt)


async def release(session: AsyncSession, event_ids: list[int], router_id: str) -> None:
    """Hand rows back before their lease ends (routing them failed; the next pass retries)."""
    if event_ids:
        await session.execute(
            update(outbox)
            .where(outbox.c.event_id.in_(event_ids), outbox.c.claimed_by == router_id)
            .values(claimed_until=None, claimed_by=None)
        )


async def pending(session: AsyncSession, limit: int) -> list[Event]:
    stmt = select(Event).join(outbox, outbox.c.event_id == Event.id).order_by(outbox.c.event_id).limit(limit)
    return list(await session.scalars(stmt))


async def backlog(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many events wait for routing, and since when the oldest has waited."""
    row = (await session.execute(select(func.count(), func.min(outbox.c.created_at)))).one()
    return row[0], row[1]


# --- reads for the customer 360 -------------------------------------------------------------------


async def recent_for(
    session: AsyncSession, customer_id: int, limit: int, hidden: ColumnElement[bool] | None = None
) -> list[Event]:
    """The customer's latest events, leaving out those ``hidden`` selects."""
    stmt = (
        select(Event)
        .where(Event.customer_id == customer_id)
        .order_by(Event.timestamp.desc(), Event.id.desc())
        .limit(limit)
    )
    if hidden is not None:
        stmt = stmt.where(~hidden)
    return list(await session.scalars(stmt))


async def counts_by_name(
    session: AsyncSession, customer_id: int, hidden: ColumnElement[bool] | None = None
) -> dict[str, int]:
    """How many track events of each name the customer has, leaving out those ``hidden`` selects."""
    stmt = (
        select(events.c.name, func.count())
        .where(events.c.customer_id == customer_id, events.c.type == "track")
        .group_by(events.c.name)
    )
    if hidden is not None:
        stmt = stmt.where(~hidden)
    rows = await session.execute(stmt)
    return {name: count for name, count in rows.all() if name is not None}


async def count_for(session: AsyncSession, customer_id: int) -> int:
    return await session.scalar(select(func.count()).where(events.c.customer_id == customer_id)) or 0
