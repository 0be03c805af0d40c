"""The worker process: Temporal workflows and activities, plus the background loops that feed them."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.anniversaries import AnniversaryActivities
from activities.broadcasts import BroadcastActivities
from activities.cases import CaseActivities
from activities.email import EmailActivities
from activities.group_commit import GroupCommit
from activities.journey_status import JourneyStatusCache
from activities.journeys import JourneyActivities
from activities.loyalty import LoyaltyActivities
from activities.segments import SegmentActivities
from activities.smtp import Mailer
from activities.webhooks import WebhookActivities
from config.settings import Settings
from runtime.anniversary_schedule import ensure_schedule as ensure_anniversary_schedule
from runtime.broadcast_start import BroadcastStartSweep
from runtime.case_dispatcher import CaseDispatcher
from runtime.event_router import routers
from runtime.loyalty_earner import LoyaltyEarner
from runtime.loyalty_schedules import ensure_schedules as ensure_loyalty_schedules
from runtime.segment_refresher import SegmentRefresher
from runtime.segment_schedules import ensure_schedules as ensure_segment_schedules
from workflows.anniversaries import AnniversarySweepWorkflow
from workflows.broadcast import BroadcastWorkflow
from workflows.case_sla import CaseSlaWorkflow
from workflows.journey import JourneyWorkflow
from workflows.loyalty_maintenance import LoyaltyMaintenanceWorkflow
from workflows.segments import SegmentMaintenanceWorkflow

WORKFLOWS = [
    JourneyWorkflow,
    BroadcastWorkflow,
    CaseSlaWorkflow,
    LoyaltyMaintenanceWorkflow,
    SegmentMaintenanceWorkflow,
    AnniversarySweepWorkflow,
]


def activities(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> list:
    mailer = Mailer(settings)  # one SMTP pool shared by single sends and broadcasts
    # One group commit for the journey steps' small writes (send ledger, points, step records), so
    # enrollments running together share commits across step kinds too.
    writes = GroupCommit(sessions)
    status = JourneyStatusCache(sessions)
    mail = EmailActivities(settings, sessions, mailer, writes, status)
    broadcast = BroadcastActivities(settings, sessions, mailer)
    journeys = JourneyActivities(sessions, writes, status)
    case_activities = CaseActivities(sessions)
    loyalty = LoyaltyActivities(sessions, writes)
    segments = SegmentActivities(settings, sessions)
    return [
        mail.send_email,
        *journeys.all(),
        WebhookActivities(settings, sessions).call_webhook,
        broadcast.send_broadcast_batch,
        broadcast.plan_broadcast_slots,
        broadcast.finish_broadcast,
        case_activities.open_case,
        case_activities.case_sla_breach,
        loyalty.award_points,
        loyalty.deduct_points,
        loyalty.loyalty_status,
        loyalty.warn_expiring,
        loyalty.expire_points,
        loyalty.reevaluate_tiers,
        segments.refresh_window_edges,
        segments.recompute_customer_scores,
        segments.customer_in_segment,
        segments.evaluate_segment,
        AnniversaryActivities(sessions).enroll_due_anniversaries,
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
    client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    stop: asyncio.Event,
    *,
    schedules: bool = True,
) -> None:
    """Run the Temporal worker and its background loops until ``stop`` is set.

    ``schedules=False`` skips creating the Temporal Schedules, for the time-skipping test server,
    which does not implement them.
    """
    event_router, segment_router = routers(client, sessions, settings)
    dispatcher = CaseDispatcher(
        client, sessions, task_queue=settings.temporal_task_queue, poll_seconds=settings.router_poll_seconds
    )
    refresher = SegmentRefresher(
        sessions,
        poll_seconds=settings.segment_refresh_poll_seconds,
        batch_size=settings.segment_refresh_batch_size,
    )
    broadcast_starter = BroadcastStartSweep(
        client,
        sessions,
        task_queue=settings.temporal_task_queue,
        poll_seconds=settings.broadcast_start_sweep_seconds,
    )
    worker = build_worker(client, settings, sessions)
    if schedules:
        await ensure_loyalty_schedules(client, settings)
        await ensure_segment_schedules(client, settings)
        await ensure_anniversary_schedule(client, settings)
    earner = LoyaltyEarner(
        sessions,
        poll_seconds=settings.loyalty_earn_poll_seconds,
        batch_size=settings.loyalty_earn_batch_size,
        gap_timeout=settings.loyalty_event_gap_seconds,
    )
    async with worker:
        router_task = asyncio.create_task(event_router.run(stop), name="event-router")
        segment_router_task = asyncio.create_task(segment_router.run(stop), name="segment-entry-router")
        cases_task = asyncio.create_task(dispatcher.run(stop), name="case-dispatcher")
        earner_task = asyncio.create_task(earner.run(stop), name="loyalty-earner")
        refresher_task = asyncio.create_task(refresher.run(stop), name="segment-refresher")
        starter_task = asyncio.create_task(broadcast_starter.run(stop), name="broadcast-start-sweep")
        try:
            await stop.wait()
        finally:
            stop.set()
            for task in (
                router_task,
                segment_router_task,
                cases_task,
                earner_task,
                refresher_task,
                starter_task,
            ):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
