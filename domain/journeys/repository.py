from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.db import insert_ignoring_conflicts
from domain.journeys.models import Enrollment, Journey, JourneyVersion


async def get(session: AsyncSession, journey_id: str) -> Journey | None:
    return await session.get(Journey, journey_id)


async def list_all(session: AsyncSession) -> list[Journey]:
    return list(await session.scalars(select(Journey).order_by(Journey.created_at, Journey.id)))


async def add(session: AsyncSession, row) -> None:
    session.add(row)
    await session.flush()


async def latest_version_number(session: AsyncSession, journey_id: str) -> int:
    found = await session.scalar(
        select(func.max(JourneyVersion.version)).where(JourneyVersion.journey_id == journey_id)
    )
    return found or 0


async def get_version(session: AsyncSession, journey_id: str, version: int) -> JourneyVersion | None:
    return await session.scalar(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == journey_id, JourneyVersion.version == version
        )
    )


async def live_versions(session: AsyncSession, event_names: set[str]) -> list[JourneyVersion]:
    """The published version of every live journey whose entry is one of these event names."""
    stmt = (
        select(JourneyVersion)
        .join(Journey, Journey.id == JourneyVersion.journey_id)
        .where(
            Journey.status == "published",
            JourneyVersion.version == Journey.published_version,
            JourneyVersion.trigger_event.in_(event_names),
        )
    )
    return list(await session.scalars(stmt))


async def enrollment(session: AsyncSession, workflow_id: str) -> Enrollment | None:
    return await session.scalar(select(Enrollment).where(Enrollment.workflow_id == workflow_id))


async def record_enrollment(session: AsyncSession, values: dict) -> None:
    await session.execute(insert_ignoring_conflicts(session, Enrollment, ["workflow_id"]).values(**values))


async def finish_enrollment(session: AsyncSession, workflow_id: str, status: str, at) -> None:
    await session.execute(
        update(Enrollment).where(Enrollment.workflow_id == workflow_id).values(status=status, completed_at=at)
    )


async def enrollments_of(session: AsyncSession, journey_id: str, limit: int) -> list[Enrollment]:
    return list(
        await session.scalars(
            select(Enrollment)
            .where(Enrollment.journey_id == journey_id)
            .order_by(Enrollment.id.desc())
            .limit(limit)
        )
    )
