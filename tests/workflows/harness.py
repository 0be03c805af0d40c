"""A journey engine on Temporal's time-skipping test server, with the real database, the real
send_email activity and the SMTP capture server: tests assert on what reached the mailbox."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select
from temporalio.client import Client
from temporalio.worker import Worker

from config.settings import Settings
from domain.cases import service as cases
from domain.cases.models import Case
from domain.cases.schemas import TeamIn
from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.email import service as email
from domain.email.schemas import TemplateIn
from domain.events import service as events
from domain.events.models import LANE_SEGMENTS
from domain.events.schemas import TrackCall
from domain.journeys import service as journeys
from domain.journeys.schemas import JourneyIn, JourneyUpdate
from domain.loyalty import service as loyalty
from domain.segments import service as segments
from domain.segments.schemas import SegmentIn
from runtime import smtp_capture
from runtime.event_router import EventRouter
from runtime.worker import WORKFLOWS, activities
from tests.conftest import free_port
from workflows.journey import JourneyWorkflow


class Engine:
    def __init__(self, env, sessions, settings: Settings, task_queue: str):
        self.env = env
        self.client: Client = env.client
        self.sessions = sessions
        self.settings = settings
        self.router = EventRouter(self.client, sessions, task_queue=task_queue)
        self.segment_router = EventRouter(
            self.client, sessions, task_queue=task_queue, lane=LANE_SEGMENTS, batch_size=100
        )
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
                [TrackCall(userId=user_id, event=event, properties=properties, messageId=uuid.uuid4().hex)],
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

    async def team(self, team_id: str) -> None:
        async with transaction(self.sessions) as session:
            if not await cases.team_exists(session, team_id):
                await cases.create_team(session, TeamIn(id=team_id, name=team_id.title()))

    async def cases(self) -> list[Case]:
        async with transaction(self.sessions) as session:
            return list(await session.scalars(select(Case).order_by(Case.id)))

    async def segment(self, segment_id: str, rule: dict) -> None:
        async with transaction(self.sessions) as session:
            await segments.create(session, SegmentIn(id=segment_id, name=segment_id, rule=rule))

    async def move_into_segments(self, customer_ids: list[int], **traits: Any) -> None:
        """Give customers traits, let the segments re-evaluate them (recording Segment Entered/Exited
        events as the refresher does) and route those events as the worker's segment lane would."""
        async with transaction(self.sessions) as session:
            for customer_id in customer_ids:
                customer = await session.get(Customer, customer_id)
                customer.traits = {**customer.traits, **traits}
            await segments.refresh_customers(session, customer_ids)
        while await self.segment_router.route_once():
            pass

    async def points(self, customer_id: int) -> int:
        async with transaction(self.sessions) as session:
            return (await loyalty.status(session, customer_id)).balance

    def mailbox(self) -> list[dict]:
        return smtp_capture.read_mailbox(self.settings.mailbox_dir, limit=10_000)

    async def enrollments(self, journey_id: str):
        async with transaction(self.sessions) as session:
            return await journeys.enrollments(session, journey_id)


@asynccontextmanager
async def engine(env, sessions, settings: Settings):
    """Run a worker with every real activity (loyalty, cases and segments included) and the capture."""
    server, _ = await smtp_capture.start(settings.smtp_host, settings.smtp_port, settings.mailbox_dir)
    task_queue = f"journeys-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        env.client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities(settings, sessions),
    )
    try:
        async with worker:
            yield Engine(env, sessions, settings, task_queue)
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
