"""The Temporal Schedule of the birthday and anniversary sweep, created (or brought up to date) when the
worker starts. Running this twice, or from several workers at once, leaves exactly one schedule."""

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
from workflows.anniversaries import AnniversarySweepInput, AnniversarySweepWorkflow

log = logging.getLogger(__name__)

SCHEDULE_ID = "anniversaries-sweep"


def schedule_for(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AnniversarySweepWorkflow.run,
            AnniversarySweepInput(),
            id="anniversaries/sweep",
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.anniversary_sweep_seconds))]
        ),
        # The sweep looks two days ahead: a pass still running makes the next redundant, and after
        # downtime one catch-up pass enrolls everything the missed ones would have.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
    )


async def ensure_schedule(client: Client, settings: Settings) -> bool:
    """Create the schedule, or update it to the current settings; True when it was created."""
    desired = schedule_for(settings)
    try:
        # The first sweep runs at once rather than an interval after the first deploy.
        await client.create_schedule(SCHEDULE_ID, desired, trigger_immediately=True)
        log.info("created schedule %s", SCHEDULE_ID)
        return True
    except ScheduleAlreadyRunningError:

        def _update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=desired)

        await client.get_schedule_handle(SCHEDULE_ID).update(_update)
        return False
