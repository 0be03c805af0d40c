"""Bookkeeping activities of the journey engine: what a running enrollment reads from and records in
the database. The workflow runs them as local activities (no server round trip); each is idempotent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.contracts import (
    FINISH_ENROLLMENT,
    JOURNEY_CONTEXT,
    RECORD_STEPS,
    REGISTER_LISTENERS,
    UPDATE_TRAITS,
    EventRef,
    FinishEnrollmentRequest,
    JourneyContext,
    JourneyContextRequest,
    RecordStepsRequest,
    RegisterListenersRequest,
    UpdateTraitsRequest,
)
from domain.db import transaction, utcnow
from domain.journeys import service as journeys


class JourneyActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    @activity.defn(name=FINISH_ENROLLMENT)
    async def finish_enrollment(self, req: FinishEnrollmentRequest) -> None:
        async with transaction(self._sessions) as session:
            if req.steps and req.journey_id is not None:
                await journeys.record_steps(
                    session,
                    workflow_id=req.workflow_id,
                    journey_id=req.journey_id,
                    version=req.version,
                    customer_id=req.customer_id,
                    steps=req.steps,
                )
            await journeys.close_enrollment(session, req.workflow_id, req.status, utcnow())

    @activity.defn(name=JOURNEY_CONTEXT)
    async def journey_context(self, req: JourneyContextRequest) -> JourneyContext:
        async with transaction(self._sessions) as session:
            found = await journeys.enrollment_context(session, req.journey_id, req.customer_id, req.plan)
        return JourneyContext(**found)

    @activity.defn(name=REGISTER_LISTENERS)
    async def register_listeners(self, req: RegisterListenersRequest) -> list[EventRef]:
        async with transaction(self._sessions) as session:
            missed = await journeys.register_listeners(
                session,
                workflow_id=req.workflow_id,
                customer_id=req.customer_id,
                names=req.event_names,
                after_event_id=req.after_event_id,
                since=datetime.fromisoformat(req.since) if req.since else None,
            )
        return [
            EventRef(id=e.id, name=e.name, properties=e.properties or {}, timestamp=e.timestamp.isoformat())
            for e in missed
        ]

    @activity.defn(name=RECORD_STEPS)
    async def record_steps(self, req: RecordStepsRequest) -> None:
        async with transaction(self._sessions) as session:
            await journeys.record_steps(
                session,
                workflow_id=req.workflow_id,
                journey_id=req.journey_id,
                version=req.version,
                customer_id=req.customer_id,
                steps=req.steps,
            )

    @activity.defn(name=UPDATE_TRAITS)
    async def update_traits(self, req: UpdateTraitsRequest) -> None:
        async with transaction(self._sessions) as session:
            await journeys.update_traits(session, req.customer_id, req.traits)

    def all(self) -> list:
        return [
            self.finish_enrollment,
            self.journey_context,
            self.register_listeners,
            self.record_steps,
            self.update_traits,
        ]
