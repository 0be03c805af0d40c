"""A journey engine on Temporal's time-skipping test server, with the real database, the real
send_email activity and the SMTP capture server: tests assert on what reached the mailbox."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.contracts import (
    AWARD_POINTS,
    DEDUCT_POINTS,
    EVALUATE_SEGMENT,
    OPEN_CASE,
    OpenCaseRequest,
    OpenCaseResult,
    PointsRequest,
    PointsResult,
    SegmentMembership,
    SegmentMembershipRequest,
)
from config.settings import Settings
from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.email import service as email
from domain.email.schemas import TemplateIn
from domain.events import service as events
from domain.events.schemas import TrackCall
from domain.journeys import service as journeys
from domain.journeys.schemas import JourneyIn, JourneyUpdate
from runtime import smtp_capture
from runtime.event_router import EventRouter
from runtime.worker import WORKFLOWS, activities
from tests.conftest import free_port
from workflows.journey import JourneyWorkflow


@dataclass
class OtherAreas:
    """Loyalty, cases and segments as the engine sees them: activities under their contract names."""

    points: list[PointsRequest] = field(default_factory=list)
    cases: list[OpenCaseRequest] = field(default_factory=list)
    members: dict[int, set[str]] = field(default_factory=dict)

    def activities(self) -> list:
        @activity.defn(name=AWARD_POINTS)
        async def award_points(req: PointsRequest) -> PointsResult:
            if all(p.idempotency_key != req.idempotency_key for p in self.points):
                self.points.append(req)
            return PointsResult(
                balance=sum(p.points for p in self.points if p.customer_id == req.customer_id)
            )

        @activity.defn(name=DEDUCT_POINTS)
        async def deduct_points(req: PointsRequest) -> PointsResult:
            self.points.append(PointsRequest(**{**req.__dict__, "points": -req.points}))
            return PointsResult()

        @activity.defn(name=OPEN_CASE)
        async def open_case(req: OpenCaseRequest) -> OpenCaseResult:
            for index, case in enumerate(self.cases):
                if case.idempotency_key == req.idempotency_key:
                    return OpenCaseResult(case_id=index + 1)
            self.cases.append(req)
            return OpenCaseResult(case_id=len(self.cases))

        @activity.defn(name=EVALUATE_SEGMENT)
        async def evaluate_segment(req: SegmentMembershipRequest) -> SegmentMembership:
            mine = self.members.get(req.customer_id, set())
            return SegmentMembership(member_of=[s for s in req.segment_ids if s in mine])

        return [award_points, deduct_points, open_case, evaluate_segment]


class Engine:
    def __init__(self, env, sessions, settings: Settings, other: OtherAreas, task_queue: str):
        self.env = env
        self.client: Client = env.client
        self.sessions = sessions
        self.settings = settings
        self.other = other
        self.router = EventRouter(self.client, sessions, task_queue=task_queue)
        self.task_queue = task_queue

    async def template(self, template_id: str, subject: str, html: str = "<p>{{ traits.name }}</p>") -> None:
        async with transaction(self.sessions) as session:
            await email.create_template(
                session, TemplateIn(id=template_id, name=template_id, subject=subject, html=html)
            )

    async def customer(self, user_id: str, **traits: Any) -> int:
        async with transaction(self.sessions) as session:
            row = Customer(
                user_id=user_id,
                email=traits.pop("email", f"{user_id}@example.com"),
                timezone=traits.pop("timezone", None),
                traits={"name": user_id.title(), **traits},
                first_seen_at=utcnow(),
                last_seen_at=utcnow(),
            )
            session.add(row)
            await session.flush()
            return row.id

    async def journey(self, journey_id: str, definition: dict) -> None:
        async with transaction(self.sessions) as session:
            if await journeys.repository.get(session, journey_id) is None:
                await journeys.create(
                    session, JourneyIn(id=journey_id, name=journey_id, definition=definition)
                )
            else:
                await journeys.update(session, journey_id, JourneyUpdate(definition=definition))
            await journeys.publish(session, journey_id)

    async def track(self, user_id: str, event: str, **properties: Any) -> None:
        """Ingest a track call and route it, as the API and the worker's router would."""
        async with transaction(self.sessions) as session:
            await events.ingest(
                session,
                TrackCall(userId=user_id, event=event, properties=properties, messageId=uuid.uuid4().hex),
                source_key_id=None,
            )
        await self.router.route_once()

    async def listening(self, customer_id: int, event_name: str) -> bool:
        async with transaction(self.sessions) as session:
            return bool(await journeys.listeners_for(session, {(customer_id, event_name)}))

    def handle(self, journey_id: str, customer_id: int, key: str | None = None):
        return self.client.get_workflow_handle_for(
            JourneyWorkflow.run, journeys.workflow_id_for(journey_id, customer_id, key)
        )

    async def result(self, handle):
        """The enrollment's result, letting the test server skip time while it waits."""
        async with self.env.time_skipping_unlocked():
            return await handle.result()

    def mailbox(self) -> list[dict]:
        return smtp_capture.read_mailbox(self.settings.mailbox_dir, limit=10_000)

    async def enrollments(self, journey_id: str):
        async with transaction(self.sessions) as session:
            return await journeys.enrollments(session, journey_id)


@asynccontextmanager
async def engine(env, sessions, settings: Settings, *, other: OtherAreas | None = None):
    """Run the worker (real activities + the other areas' stand-ins) and the SMTP capture."""
    other = other or OtherAreas()
    server, _ = await smtp_capture.start(settings.smtp_host, settings.smtp_port, settings.mailbox_dir)
    task_queue = f"journeys-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        env.client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[*activities(settings, sessions), *other.activities()],
    )
    try:
        async with worker:
            yield Engine(env, sessions, settings, other, task_queue)
    finally:
        server.close()
        await server.wait_closed()


def engine_settings(database_url: str, tmp_path) -> Settings:
    return Settings(
        dev_mode=True,
        data_dir=tmp_path / "data",
        database_url=database_url,
        smtp_port=free_port(),
        webhook_allow_private_addresses=True,
    )


async def settle() -> None:
    await asyncio.sleep(0)
