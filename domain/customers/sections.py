"""Sections of the customer 360 that other areas own.

Each section is an async function ``(session, customer_id, limit) -> data``; its name is a field of
``Customer360``. An area adds its section here (e.g. ``"loyalty"``, ``"cases"``) when it lands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers.schemas import JourneyEnrollment, MessageSummary

Section = Callable[[AsyncSession, int, int], Awaitable[Any]]


async def journeys(session: AsyncSession, customer_id: int, limit: int) -> list[JourneyEnrollment]:
    from domain.journeys.models import Enrollment

    rows = await session.scalars(
        select(Enrollment)
        .where(Enrollment.customer_id == customer_id)
        .order_by(Enrollment.entered_at.desc(), Enrollment.id.desc())
        .limit(limit)
    )
    return [JourneyEnrollment.model_validate(e, from_attributes=True) for e in rows]


async def messages(session: AsyncSession, customer_id: int, limit: int) -> list[MessageSummary]:
    from domain.email.models import Message

    rows = await session.scalars(
        select(Message)
        .where(Message.customer_id == customer_id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
    )
    return [MessageSummary.model_validate(m, from_attributes=True) for m in rows]


SECTIONS: dict[str, Section] = {
    "journeys": journeys,
    "messages": messages,
}
