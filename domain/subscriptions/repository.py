from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.db import insert_ignoring_conflicts, utcnow
from domain.subscriptions.models import Subscription, SubscriptionGroup, Suppression


async def get_group(session: AsyncSession, group_id: str) -> SubscriptionGroup | None:
    return await session.get(SubscriptionGroup, group_id)


async def list_groups(session: AsyncSession) -> list[SubscriptionGroup]:
    return list(await session.scalars(select(SubscriptionGroup).order_by(SubscriptionGroup.id)))


async def add(session: AsyncSession, row) -> None:
    session.add(row)
    await session.flush()


async def choices(session: AsyncSession, customer_ids: list[int]) -> dict[tuple[int, str], bool]:
    if not customer_ids:
        return {}
    rows = await session.execute(
        select(Subscription.customer_id, Subscription.group_id, Subscription.subscribed).where(
            Subscription.customer_id.in_(customer_ids)
        )
    )
    return {(c, g): s for c, g, s in rows}


async def set_choice(session: AsyncSession, customer_id: int, group_id: str, subscribed: bool, source: str):
    await session.execute(
        insert_ignoring_conflicts(session, Subscription, ["customer_id", "group_id"]).values(
            customer_id=customer_id,
            group_id=group_id,
            subscribed=subscribed,
            source=source,
            updated_at=utcnow(),
        )
    )
    row = await session.scalar(
        select(Subscription).where(Subscription.customer_id == customer_id, Subscription.group_id == group_id)
    )
    row.subscribed, row.source, row.updated_at = subscribed, source, utcnow()


async def suppressed(session: AsyncSession, addresses: list[str]) -> dict[str, str]:
    if not addresses:
        return {}
    rows = await session.execute(
        select(Suppression.address, Suppression.reason).where(Suppression.address.in_(addresses))
    )
    return dict(rows.all())


async def suppress(session: AsyncSession, address: str, reason: str, detail: str | None) -> None:
    """Record a suppression; a stronger reason (bounced > complained > unsubscribed) replaces a weaker."""
    await session.execute(
        insert_ignoring_conflicts(session, Suppression, ["address"]).values(
            address=address, reason=reason, detail=detail, created_at=utcnow()
        )
    )
    row = await session.scalar(select(Suppression).where(Suppression.address == address))
    rank = {"unsubscribed": 0, "complained": 1, "bounced": 2}
    if rank[reason] > rank.get(row.reason, 0):
        row.reason, row.detail = reason, detail


async def list_suppressions(session: AsyncSession, limit: int, after_id: int | None) -> list[Suppression]:
    stmt = select(Suppression).order_by(Suppression.id).limit(limit)
    if after_id is not None:
        stmt = stmt.where(Suppression.id > after_id)
    return list(await session.scalars(stmt))


async def unsuppress(session: AsyncSession, address: str) -> int:
    result = await session.execute(delete(Suppression).where(Suppression.address == address))
    return result.rowcount
