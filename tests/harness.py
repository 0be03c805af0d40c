"""A running engine for tests: Temporal environment, SMTP capture, worker with real activities, router."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from config.settings import Settings
from domain.db import transaction
from domain.email import service as email
from domain.email.schemas import TemplateIn
from domain.events import service as events
from domain.events.schemas import IdentifyCall, TrackCall
from domain.journeys import service as journeys
from domain.journeys.schemas import JourneyIn
from runtime import smtp_capture
from runtime.event_router import EventRouter
from runtime.worker import build_worker


@dataclass
class Engine:
    env: WorkflowEnvironment
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    router: EventRouter
    worker: Worker

    @property
    def mailbox(self) -> list[dict]:
        return smtp_capture.read_mailbox(self.settings.mailbox_dir, limit=10_000)

    async def template(self, **spec) -> None:
        async with transaction(self.sessions) as session:
            await email.create_template(session, TemplateIn(**spec))

    async def publish(self, journey_id: str, nodes: list[dict]) -> None:
        async with transaction(self.sessions) as session:
            await journeys.create(
                session, JourneyIn(id=journey_id, name=journey_id, definition={"nodes": nodes})
            )
            await journeys.publish(session, journey_id)

    async def identify(self, user_id: str, **traits) -> None:
        async with transaction(self.sessions) as session:
            await events.ingest(session, [IdentifyCall(userId=user_id, traits=traits)], source_key_id=None)

    async def track(self, user_id: str, event: str, message_id: str | None = None, **properties) -> None:
        async with transaction(self.sessions) as session:
            call = TrackCall(userId=user_id, event=event, properties=properties, messageId=message_id)
            await events.ingest(session, [call], source_key_id=None)


@contextlib.asynccontextmanager
async def running_engine(env: WorkflowEnvironment, settings: Settings, sessions):
    server, _ = await smtp_capture.start(settings.smtp_host, settings.smtp_port, settings.mailbox_dir)
    worker = build_worker(env.client, settings, sessions)
    router = EventRouter(env.client, sessions, task_queue=settings.temporal_task_queue)
    try:
        async with worker:
            yield Engine(env=env, settings=settings, sessions=sessions, router=router, worker=worker)
    finally:
        server.close()
        await server.wait_closed()


def mailbox_dir(settings: Settings) -> Path:
    return settings.mailbox_dir
