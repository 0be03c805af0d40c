"""Creating the worker's periodic Temporal Schedules, idempotently, each time a worker starts.

Running this twice, or from several workers at once, leaves exactly one schedule per id, brought up to
date with the current settings (an interval changed in configuration reaches the existing schedule).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

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

log = logging.getLogger(__name__)


def every(
    run: Any,
    arg: Any,
    *,
    workflow_id: str,
    task_queue: str,
    seconds: int,
    catchup_window: timedelta | None = None,
) -> Schedule:
    """A schedule starting ``run(arg)`` every ``seconds``. A pass still running when the next is due
    makes the next redundant (skipped); ``catchup_window`` bounds the catching up after downtime."""
    return Schedule(
        action=ScheduleActionStartWorkflow(run, arg, id=workflow_id, task_queue=task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=catchup_window),
    )


async def create_or_update(
    client: Client, schedule_id: str, desired: Schedule, *, trigger_immediately: bool = False
) -> bool:
    """Create the schedule, or update an existing one to ``desired``; True when it was created."""
    try:
        await client.create_schedule(schedule_id, desired, trigger_immediately=trigger_immediately)
        log.info("created schedule %s", schedule_id)
        return True
    except ScheduleAlreadyRunningError:

        def _update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=desired)

        await client.get_schedule_handle(schedule_id).update(_update)
        return False
