"""Sections of the customer 360 that other areas own.

Each section is an async function ``(session, customer_id, limit, viewer) -> data``; its name is a
field of ``Customer360``. Imports are local so the customer area does not load every other area at
import time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers.schemas import JourneyEnrollment, MessageSummary, SegmentStay


@dataclass(frozen=True)
class Viewer:
    """Who looks: an agent sees only their teams' cases, here as in the queue."""

    case_teams: list[str] | None = None  # None: every team's (marketers, admins)


EVERYONE = Viewer()

Section = Callable[[AsyncSession, int, int, Viewer], Awaitable[Any]]


async def journeys(session: AsyncSession, customer_id: int, limit: int, _: Viewer) -> list[JourneyEnrollment]:
    from domain.journeys.models import Enrollment

    rows = await session.scalars(
        select(Enrollment)
        .where(Enrollment.customer_id == customer_id)
        .order_by(Enrollment.entered_at.desc(), Enrollment.id.desc())
        .limit(limit)
    )
    return [JourneyEnrollment.model_validate(e, from_attributes=True) for e in rows]


async def messages(session: AsyncSession, customer_id: int, limit: int, _: Viewer) -> list[MessageSummary]:
    from domain.email import repository as email_repo

    rows = await email_repo.recent_for_customer(session, customer_id, limit)
    return [MessageSummary.model_validate(m, from_attributes=True) for m in rows]


async def segments(session: AsyncSession, customer_id: int, limit: int, _: Viewer) -> list[SegmentStay]:
    from domain.segments import repository as segments_repo

    rows = await segments_repo.stays_of(session, customer_id, limit)
    return [SegmentStay(segment_id=r[0], name=r[1], entered_at=r[2], exited_at=r[3]) for r in rows]


async def loyalty(session: AsyncSession, customer_id: int, limit: int, _: Viewer) -> dict[str, Any]:
    from domain.loyalty import service as loyalty_service
    from domain.segments import service as segments_service

    status = await loyalty_service.status(session, customer_id)
    scores = await segments_service.scores_for(session, customer_id)
    return {
        "balance": status.balance,
        "tier": status.tier,
        "tier_points": status.tier_points,
        # Value tier and RFM scores (recomputed on a schedule; null before the first run).
        "value": scores.model_dump(mode="json") if scores is not None else None,
    }


async def cases(session: AsyncSession, customer_id: int, limit: int, viewer: Viewer) -> list[dict[str, Any]]:
    from domain.cases import service as cases_service

    found = await cases_service.cases_of_customer(session, customer_id, limit, teams=viewer.case_teams)
    return [c.model_dump(mode="json") for c in found]


SECTIONS: dict[str, Section] = {
    "journeys": journeys,
    "messages": messages,
    "segments": segments,
    "loyalty": loyalty,
    "cases": cases,
}
