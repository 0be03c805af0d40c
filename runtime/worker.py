"""The worker process: Temporal workflows and activities, plus the event router."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.email import EmailActivities
from activities.journeys import JourneyActivities
from activities.smtp import Mailer
from activities.webhooks import WebhookActivities
from config.settings import Settings
from runtime import anniversaries
from runtime.event_router import EventRouter
from workflows.journey import JourneyWorkflow

WORKFLOWS = [JourneyWorkflow]


def activities(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> list:
    mail = EmailActivities(settings, sessions, Mailer(settings))
    journeys = JourneyActivities(sessions)
    return [mail.send_email, *journeys.all(), WebhookActivities(settings).call_webhook]


def build_worker(client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Worker:
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=activities(settings, sessions),
        max_concurrent_activities=200,
    )


async def run_worker(
    client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession], stop: asyncio.Event
) -> None:
    """Run the Temporal worker and the event router until ``stop`` is set."""
    router = EventRouter(
        client,
        sessions,
        task_queue=settings.temporal_task_queue,
        poll_seconds=settings.router_poll_seconds,
        batch_size=settings.router_batch_size,
    )
    worker = build_worker(client, settings, sessions)
    async with worker:
        router_task = asyncio.create_task(router.run(stop), name="event-router")
        sweep_task = asyncio.create_task(
            anniversaries.run(client, sessions, stop, task_queue=settings.temporal_task_queue),
            name="anniversary-sweep",
        )
        try:
            await stop.wait()
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await router_task
                await sweep_task
