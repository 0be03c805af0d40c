from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.broadcasts.models import Broadcast
from domain.customers.models import Customer
from domain.db import insert_ignoring_conflicts, utcnow
from domain.email.models import Message


async def get(session: AsyncSession, broadcast_id: str, *, lock: bool = False) -> Broadcast | None:
    if lock:
        return await session.scalar(select(Broadcast).where(Broadcast.id == broadcast_id).with_for_update())
    return await session.get(Broadcast, broadcast_id)


async def add(session: AsyncSession, row: Broadcast) -> None:
    session.add(row)
    await session.flush()


async def set_if(session: AsyncSession, broadcast_id: str, allowed: tuple[str, ...], **values: Any) -> bool:
    """``values`` in one compare-and-set, only if the broadcast is in one of ``allowed`` when the
    statement runs: a change committed first (a withdrawal, a marketer's, the workflow's) makes it
    match nothing. Rows already loaded are not updated: refresh one to read what it left."""
    result = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.status.in_(allowed))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def delete_if(
    session: AsyncSession, broadcast_id: str, expected: str, *, created_after: datetime | None = None
) -> bool:
    where = [Broadcast.id == broadcast_id, Broadcast.status == expected]
    if created_after is not None:
        where.append(Broadcast.created_at > created_after)
    result = await session.execute(
        delete(Broadcast).where(*where).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def starting_before(session: AsyncSession, created_before: datetime, limit: int) -> list[Broadcast]:
    query = (
        select(Broadcast)
        .where(Broadcast.status == "starting", Broadcast.created_at <= created_before)
        .order_by(Broadcast.created_at, Broadcast.id)
        .limit(limit)
    )
    return list(await session.scalars(query))


async def move(session: AsyncSession, broadcast_id: str, allowed: tuple[str, ...], status: str) -> bool:
    """``status`` by ``set_if``. ``"resumed"`` means running if it started, else scheduled;
    ``"cancelled"`` also stamps ``finished_at``."""
    values: dict = {"status": status}
    if status == "resumed":
        values["status"] = case((Broadcast.started_at.is_(None), "scheduled"), else_="running")
    if status == "cancelled":
        values["finished_at"] = utcnow()
    return await set_if(session, broadcast_id, allowed, **values)


async def list_all(session: AsyncSession, limit: int) -> list[Broadcast]:
    return list(await session.scalars(select(Broadcast).order_by(Broadcast.created_at.desc()).limit(limit)))


# The statements below run for every page (and every few dozen sends) of a broadcast: they are
# written against the tables (Core), which SQLAlchemy executes at about half the cost of the ORM path.
_customers = Customer.__table__
_messages = Message.__table__


async def profiles(session: AsyncSession, ids: list[int]) -> list[dict[str, Any]]:
    c = _customers.c
    conn = await session.connection()
    rows = await conn.execute(
        select(c.id, c.user_id, c.email, c.traits, c.timezone, c.locale).where(c.id.in_(ids)).order_by(c.id)
    )
    return [
        {"id": i, "user_id": u, "email": e, "traits": t or {}, "timezone": tz, "locale": lc}
        for i, u, e, t, tz, lc in rows
    ]


async def claim_messages(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Ledger rows for a batch, created where new; returns each key's current status."""
    if not rows:
        return {}
    table = _messages
    insert = insert_ignoring_conflicts(session, table, ["idempotency_key"]).returning(table.c.idempotency_key)
    conn = await session.connection()
    statuses = dict.fromkeys((await conn.execute(insert, rows)).scalars(), "pending")
    earlier = [r["idempotency_key"] for r in rows if r["idempotency_key"] not in statuses]
    if earlier:  # claimed by an earlier attempt of this batch: it may have sent some
        found = await conn.execute(
            select(table.c.idempotency_key, table.c.status).where(table.c.idempotency_key.in_(earlier))
        )
        statuses.update(found.all())
    return statuses


async def ledger_rows(session: AsyncSession, keys: list[str]) -> dict[str, tuple[str, str | None]]:
    """Each key's (status, to_address) as the ledger holds them now."""
    if not keys:
        return {}
    m = _messages.c
    conn = await session.connection()
    rows = await conn.execute(
        select(m.idempotency_key, m.status, m.to_address).where(m.idempotency_key.in_(keys))
    )
    return {k: (s, a) for k, s, a in rows}


# A sent message: its subject as rendered for its recipient, one more attempt.
_sent = {
    "status": "sent",
    "error": None,
    "subject": bindparam("subj"),
    "sent_at": bindparam("at"),
    "attempts": _messages.c.attempts + 1,
}
_mark_sent = (
    update(_messages).where(_messages.c.idempotency_key.in_(bindparam("keys", expanding=True))).values(_sent)
)
_mark_one_sent = update(_messages).where(_messages.c.idempotency_key == bindparam("k")).values(_sent)


async def mark_sent(session: AsyncSession, subjects: dict[str, str | None]) -> None:
    """Sent messages (ledger key -> the subject as rendered for its recipient): one statement when
    they share a subject, else one executemany."""
    if not subjects:
        return
    conn = await session.connection()
    at = utcnow()
    if len(distinct := set(subjects.values())) == 1:
        await conn.execute(_mark_sent, {"keys": list(subjects), "subj": distinct.pop(), "at": at})
    else:
        await conn.execute(_mark_one_sent, [{"k": k, "subj": s, "at": at} for k, s in subjects.items()])


async def mark_each(session: AsyncSession, changes: list[dict[str, Any]]) -> None:
    """Per-row updates in one executemany: dicts of k (key), s (status), e (error), subj, at (sent)."""
    if changes:
        t = _messages
        stmt = (
            update(t)
            .where(t.c.idempotency_key == bindparam("k"))
            .values(
                status=bindparam("s"),
                error=bindparam("e"),
                subject=bindparam("subj"),
                sent_at=bindparam("at"),
                attempts=t.c.attempts + 1,
            )
        )
        conn = await session.connection()
        await conn.execute(stmt, changes)


async def count_statuses(session: AsyncSession, keys: list[str]) -> dict[str, int]:
    if not keys:
        return {}
    m = _messages.c
    conn = await session.connection()
    rows = await conn.execute(
        select(m.status, func.count()).where(m.idempotency_key.in_(keys)).group_by(m.status)
    )
    return dict(rows.all())


async def timezones(session: AsyncSession, ids: list[int]) -> set[str]:
    """The timezones of these customers who have an address (those without one get nothing)."""
    where = Customer.id.in_(ids), Customer.email.is_not(None)
    rows = await session.scalars(select(Customer.timezone).where(*where).distinct())
    return {tz or "" for tz in rows}


async def advance(
    session: AsyncSession, broadcast_id: str, slot: int, cursor: int, sent: int, skipped: int, failed: int
):
    """Add a page's totals once: only when (slot, cursor) moves forward (a retried page does not)."""
    forward = or_(Broadcast.slot < slot, and_(Broadcast.slot == slot, Broadcast.cursor < cursor))
    await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, forward)
        .values(
            slot=slot,
            cursor=cursor,
            sent=Broadcast.sent + sent,
            skipped=Broadcast.skipped + skipped,
            failed=Broadcast.failed + failed,
        )
    )


async def reached_through_other_profiles(
    session: AsyncSession, key_prefix: str, keys: dict[int, str]
) -> set[int]:
    """Of these customers (id -> their own ledger key under ``key_prefix``), those holding another key
    under it that is sent or under way: a profile merged into them got the message before the merge."""
    if not keys:
        return set()
    m = _messages.c
    conn = await session.connection()
    rows = await conn.execute(
        select(m.customer_id)
        .where(
            m.customer_id.in_(list(keys)),
            m.idempotency_key.startswith(key_prefix, autoescape=True),
            m.idempotency_key.not_in(list(keys.values())),
            m.status.in_(("sent", "pending")),
        )
        .distinct()
    )
    return set(rows.scalars())
