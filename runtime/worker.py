"""The worker process: Temporal workflows and activities, plus the event router and segment refresher."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.email import EmailActivities
from activities.journeys import JourneyActivities
from activities.segments import SegmentActivities
from activities.smtp import Mailer
from config.settings import Settings
from runtime.event_router import EventRouter
from runtime.segment_refresher import SegmentRefresher
from runtime.segment_schedules import ensure_schedules
from workflows.journey import JourneyWorkflow
from workflows.segments import SegmentMaintenanceWorkflow

WORKFLOWS = [JourneyWorkflow, SegmentMaintenanceWorkflow]


def activities(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> list:
    mail = EmailActivities(settings, sessions, Mailer(settings))
    journeys = JourneyActivities(sessions)
    segments = SegmentActivities(settings, sessions)
    return [
        mail.send_email,
        journeys.finish_enrollment,
        segments.refresh_window_edges,
        segments.recompute_customer_scores,
        segments.customer_in_segment,
    ]


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
    refresher = SegmentRefresher(
        sessions,
        poll_seconds=settings.segment_refresh_poll_seconds,
        batch_size=settings.segment_refresh_batch_size,
    )
    worker = build_worker(client, settings, sessions)
    await ensure_schedules(client, settings)
    async with worker:
        router_task = asyncio.create_task(router.run(stop), name="event-router")
        refresher_task = asyncio.create_task(refresher.run(stop), name="segment-refresher")
        try:
            await stop.wait()
        finally:
            stop.set()
            for task in (router_task, refresher_task):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
