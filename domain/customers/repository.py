from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers.models import Customer


async def get(session: AsyncSession, customer_id: int) -> Customer | None:
    return await session.get(Customer, customer_id)


async def find_by_ids(session: AsyncSession, user_id: str | None, anonymous_id: str | None) -> list[Customer]:
    clauses = []
    if user_id is not None:
        clauses.append(Customer.user_id == user_id)
    if anonymous_id is not None:
        clauses.append(Customer.anonymous_id == anonymous_id)
    if not clauses:
        return []
    return list(await session.scalars(select(Customer).where(or_(*clauses)).order_by(Customer.id)))


async def add(session: AsyncSession, customer: Customer) -> Customer:
    session.add(customer)
    await session.flush()
    return customer
