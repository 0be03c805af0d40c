"""Activities that keep the database's view of enrollments in step with the workflows."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.contracts import FINISH_ENROLLMENT, FinishEnrollmentRequest
from domain.db import transaction, utcnow
from domain.journeys import service as journeys


class JourneyActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    @activity.defn(name=FINISH_ENROLLMENT)
    async def finish_enrollment(self, req: FinishEnrollmentRequest) -> None:
        async with transaction(self._sessions) as session:
            await journeys.finish_enrollment(session, req.workflow_id, req.status, utcnow())
