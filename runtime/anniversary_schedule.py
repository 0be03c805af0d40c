"""The Temporal Schedule of the birthday and anniversary sweep, created (or brought up to date) when the
worker starts. Running this twice, or from several workers at once, leaves exactly one schedule."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, Schedule

from config.settings import Settings
from runtime.schedules import create_or_update, every
from workflows.anniversaries import AnniversarySweepInput, AnniversarySweepWorkflow

SCHEDULE_ID = "anniversaries-sweep"


def schedule_for(settings: Settings) -> Schedule:
    # The sweep looks two days ahead: after downtime one catch-up pass enrolls everything the missed
    # ones would have.
    return every(
        AnniversarySweepWorkflow.run,
        AnniversarySweepInput(),
        workflow_id="anniversaries/sweep",
        task_queue=settings.temporal_task_queue,
        seconds=settings.anniversary_sweep_seconds,
        catchup_window=timedelta(days=1),
    )


async def ensure_schedule(client: Client, settings: Settings) -> bool:
    """Create the schedule, or update it to the current settings; True when it was created."""
    # The first sweep runs at once rather than an interval after the first deploy.
    return await create_or_update(client, SCHEDULE_ID, schedule_for(settings), trigger_immediately=True)
