from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.db import insert_ignoring_conflicts
from domain.email.models import Message, Template, TemplateVersion


async def get_template(session: AsyncSession, template_id: str, *, lock: bool = False) -> Template | None:
    """``lock``: row-locked (PostgreSQL) until the transaction ends, so concurrent saves of one template
    take turns, each getting the next version number (SQLite serialises writers anyway)."""
    if lock:
        return await session.get(Template, template_id, with_for_update=True, populate_existing=True)
    return await session.get(Template, template_id)


async def get_version(session: AsyncSession, template_id: str, version: int) -> TemplateVersion | None:
    return await session.scalar(
        select(TemplateVersion).where(
            TemplateVersion.template_id == template_id, TemplateVersion.version == version
        )
    )


async def list_templates(session: AsyncSession) -> list[Template]:
    return list(await session.scalars(select(Template).order_by(Template.created_at, Template.id)))


async def add(session: AsyncSession, *rows) -> None:
    session.add_all(rows)
    await session.flush()


async def claim_message(session: AsyncSession, values: dict) -> Message:
    """The ledger row for this idempotency key, created if new."""
    await session.execute(insert_ignoring_conflicts(session, Message, ["idempotency_key"]).values(**values))
    return await session.scalar(
        select(Message).where(Message.idempotency_key == values["idempotency_key"]).with_for_update()
    )


async def list_messages(
    session: AsyncSession,
    *,
    customer_id: int | None,
    journey_id: str | None,
    limit: int,
    before_id: int | None,
) -> list[Message]:
    where = []
    if customer_id is not None:
        where.append(Message.customer_id == customer_id)
    if journey_id is not None:
        where.append(Message.journey_id == journey_id)
    if before_id is not None:
        where.append(Message.id < before_id)
    page = select(Message.id if journey_id is not None else Message).where(*where)
    page = page.order_by(Message.id.desc()).limit(limit)
    if journey_id is None:
        return list(await session.scalars(page))
    # A journey's page is found in ix_messages_journey alone (its ids, newest first), then read. Asked
    # for whole rows, PostgreSQL walked the primary key backwards instead whenever the journey made up
    # much of the ledger, expecting its sends to be spread evenly over it; a journey whose sends are
    # older than the others' was then read past every later send (8 ms at 50 000 later ones, 0.2 ms now).
    stmt = select(Message).where(Message.id.in_(page)).order_by(Message.id.desc())
    return list(await session.scalars(stmt))


async def set_message_status(
    session: AsyncSession, idempotency_key: str, *, status: str, error: str | None, sent_at: datetime | None
) -> None:
    values = {"status": status, "error": error}
    if sent_at is not None:
        values["sent_at"] = sent_at
    await session.execute(update(Message).where(Message.idempotency_key == idempotency_key).values(**values))


async def anonymised(session: AsyncSession, keys: list[str]) -> set[str]:
    """Of these keys, those whose row an erasure stripped of its recipient."""
    if not keys:
        return set()
    m = Message.__table__.c
    conn = await session.connection()
    rows = await conn.execute(
        select(m.idempotency_key).where(m.idempotency_key.in_(keys), m.customer_id.is_(None))
    )
    return set(rows.scalars())


async def recent_for_customer(session: AsyncSession, customer_id: int, limit: int) -> list[Message]:
    """A customer's latest messages, newest first (customer 360, case snapshots)."""
    stmt = (
        select(Message)
        .where(Message.customer_id == customer_id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
    )
    return list(await session.scalars(stmt))
