"""The birthday and anniversary enrollment sweep, as the activity its Temporal Schedule runs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.contracts import ENROLL_DUE_ANNIVERSARIES, AnniversarySweepRequest, AnniversarySweepResult
from activities.heartbeat import heartbeating
from runtime import anniversaries


class AnniversaryActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    @activity.defn(name=ENROLL_DUE_ANNIVERSARIES)
    async def enroll_due_anniversaries(self, req: AnniversarySweepRequest) -> AnniversarySweepResult:
        # Enrollments go to the queue this worker serves: the worker that sweeps also runs journeys.
        async with heartbeating():
            started = await anniversaries.enroll_due(
                activity.client(),
                self._sessions,
                task_queue=activity.info().task_queue,
                now=datetime.fromisoformat(req.as_of),
            )
        return AnniversarySweepResult(started=started)
