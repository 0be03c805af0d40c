"""The loyalty programme's Temporal Schedules, created (or brought up to date) when the worker starts.

Running this twice, or from several workers at once, leaves exactly one schedule per task.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from config.settings import Settings
from workflows.loyalty_maintenance import EXPIRY, TIERS, LoyaltyMaintenanceInput, LoyaltyMaintenanceWorkflow

log = logging.getLogger(__name__)

SCHEDULES = {"loyalty-expiry": [EXPIRY], "loyalty-tiers": [TIERS]}


def schedule_for(settings: Settings, schedule_id: str, tasks: list[str]) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            LoyaltyMaintenanceWorkflow.run,
            LoyaltyMaintenanceInput(tasks=tasks),
            id=f"loyalty/{schedule_id}",
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(seconds=settings.loyalty_maintenance_every_seconds))
            ]
        ),
        # A pass still running when the next is due makes the next redundant; after downtime, one
        # catch-up pass does all the missed work.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
    )


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    for schedule_id, tasks in SCHEDULES.items():
        desired = schedule_for(settings, schedule_id, tasks)
        try:
            await client.create_schedule(schedule_id, desired)
            log.info("created schedule %s", schedule_id)
        except ScheduleAlreadyRunningError:

            def _update(_: ScheduleUpdateInput, desired: Schedule = desired) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=desired)

            await client.get_schedule_handle(schedule_id).update(_update)
    return list(SCHEDULES)
