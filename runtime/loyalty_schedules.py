"""The loyalty programme's Temporal Schedules, created (or brought up to date) when the worker starts.

Running this twice, or from several workers at once, leaves exactly one schedule per task.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, Schedule

from config.settings import Settings
from runtime.schedules import create_or_update, every
from workflows.loyalty_maintenance import EXPIRY, TIERS, LoyaltyMaintenanceInput, LoyaltyMaintenanceWorkflow

SCHEDULES = {"loyalty-expiry": [EXPIRY], "loyalty-tiers": [TIERS]}


def schedule_for(settings: Settings, schedule_id: str, tasks: list[str]) -> Schedule:
    # After downtime, one catch-up pass does all the missed work.
    return every(
        LoyaltyMaintenanceWorkflow.run,
        LoyaltyMaintenanceInput(tasks=tasks),
        workflow_id=f"loyalty/{schedule_id}",
        task_queue=settings.temporal_task_queue,
        seconds=settings.loyalty_maintenance_every_seconds,
        catchup_window=timedelta(days=1),
    )


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    for schedule_id, tasks in SCHEDULES.items():
        await create_or_update(client, schedule_id, schedule_for(settings, schedule_id, tasks))
    return list(SCHEDULES)
