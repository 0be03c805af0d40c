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
from activities.enrollment import calling_workflow_id, refuse_if_superseded
from activities.group_commit import GroupCommit
from activities.journey_status import JourneyStatusCache
from domain.customers import service as customers
from domain.db import transaction, utcnow
from domain.journeys import service as journeys


class JourneyActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writes: GroupCommit | None = None,
        status: JourneyStatusCache | None = None,
    ):
        self._sessions = sessions
        self._statuses = status or JourneyStatusCache(sessions)
        self._writes = writes or GroupCommit(sessions)

    @activity.defn(name=FINISH_ENROLLMENT)
    async def finish_enrollment(self, req: FinishEnrollmentRequest) -> None:
        async def write(session: AsyncSession) -> None:
            # The profile the journey's customer id names now: a visitor may have logged in since.
            customer_id = await customers.current_id(session, req.customer_id)
            if customer_id is None:  # erased: nothing more of them is recorded
                return
            if req.steps and req.journey_id is not None:
                await journeys.record_steps(
                    session,
                    workflow_id=req.workflow_id,
                    journey_id=req.journey_id,
                    version=req.version,
                    customer_id=customer_id,
                    steps=req.steps,
                )
            if req.journey_id is None:
                await journeys.close_enrollment(session, req.workflow_id, req.status, utcnow())
                return
            # The router records the enrollment after starting it; a journey that finishes first
            # creates the row here (closed, in one statement), so the router's late insert finds it
            # and changes nothing.
            await journeys.record_closed_enrollment(
                session,
                workflow_id=req.workflow_id,
                journey_id=req.journey_id,
                version=req.version,
                customer_id=customer_id,
                event_id=req.entry_event_id,
                entered_at=datetime.fromisoformat(req.entered_at) if req.entered_at else None,
                status=req.status,
                at=utcnow(),
                remove_listeners=req.listened,
            )

        await self._writes.run(write)

    @activity.defn(name=JOURNEY_CONTEXT)
    async def journey_context(self, req: JourneyContextRequest) -> JourneyContext:
        status = await self._statuses.status(req.journey_id, req.fresh_status)
        if status != "archived" and (not req.with_customer or (req.plan and req.plan.kind == "send")):
            # Before a send: an enrollment a profile merge ended (the person is in this journey
            # through another one) leaves as it would from an archived journey.
            async with self._sessions() as session:
                if await journeys.superseded_by(session, calling_workflow_id()):
                    status = "archived"
        if not req.with_customer or status == "archived":
            return JourneyContext(journey_status=status, timezone=None)
        plan = req.plan
        if plan is not None and (plan.rate_max or plan.cap_max) and status == "published":
            # Takes a slot on the journey's send-rate clock and the send's reservation under the
            # frequency cap: a write. A held journey takes none.
            async with transaction(self._sessions) as session:
                found = await journeys.enrollment_context(
                    session, req.customer_id, plan, journey_id=req.journey_id
                )
            return JourneyContext(journey_status=status, **found)
        async with self._sessions() as session:  # reads only: no write lock
            found = await journeys.enrollment_context(session, req.customer_id, plan)
        return JourneyContext(journey_status=status, **found)

    @activity.defn(name=REGISTER_LISTENERS)
    async def register_listeners(self, req: RegisterListenersRequest) -> list[EventRef]:
        async with transaction(self._sessions) as session:
            await refuse_if_superseded(session, calling_workflow_id(), req.customer_id)
            customer_id = await customers.current_id(session, req.customer_id)
            if customer_id is None:  # erased: no event of theirs will come
                return []
            missed = await journeys.register_listeners(
                session,
                workflow_id=req.workflow_id,
                customer_id=customer_id,
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
        async def write(session: AsyncSession) -> None:
            customer_id = await customers.current_id(session, req.customer_id)
            if customer_id is None:  # erased (its listeners went with it)
                return
            if req.stop_listening:
                await journeys.stop_listening(session, req.workflow_id, req.stop_listening)
            if req.steps:
                await journeys.record_steps(
                    session,
                    workflow_id=req.workflow_id,
                    journey_id=req.journey_id,
                    version=req.version,
                    customer_id=customer_id,
                    steps=req.steps,
                )

        await self._writes.run(write)

    @activity.defn(name=UPDATE_TRAITS)
    async def update_traits(self, req: UpdateTraitsRequest) -> None:
        async with transaction(self._sessions) as session:
            await refuse_if_superseded(session, calling_workflow_id(), req.customer_id)
            customer_id = await customers.current_id(session, req.customer_id)
            if customer_id is not None:  # erased: nothing to update
                await journeys.update_traits(session, customer_id, req.traits)

    def all(self) -> list:
        return [
            self.finish_enrollment,
            self.journey_context,
            self.register_listeners,
            self.record_steps,
            self.update_traits,
        ]
