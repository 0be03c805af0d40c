"""The Temporal Schedules of segment maintenance, created idempotently when the worker starts."""

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
)

from activities.segment_contracts import MaintenanceInput
from config.settings import Settings
from workflows.segments import SegmentMaintenanceWorkflow

log = logging.getLogger(__name__)


def schedules(settings: Settings) -> dict[str, tuple[str, int]]:
    """Schedule id -> (task, every seconds)."""
    return {
        "segments-window-edges": ("window_edges", settings.segment_window_edge_seconds),
        "segments-customer-scores": ("customer_scores", settings.customer_scores_seconds),
    }


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Create the schedules that do not exist yet; returns the ids created."""
    created = []
    for schedule_id, (task, seconds) in schedules(settings).items():
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                SegmentMaintenanceWorkflow.run,
                MaintenanceInput(task=task),
                id=f"segments/{task}",
                task_queue=settings.temporal_task_queue,
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=seconds))]),
            # A slow pass is never run twice at once; the next one starts after it.
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        )
        try:
            await client.create_schedule(schedule_id, schedule)
            created.append(schedule_id)
        except ScheduleAlreadyRunningError:
            log.debug("schedule %s exists", schedule_id)
    return created
