"""The Temporal Schedules of segment maintenance, created (or brought up to date) when the worker starts."""

from __future__ import annotations

from temporalio.client import Client

from activities.segment_contracts import MaintenanceInput
from config.settings import Settings
from runtime.schedules import create_or_update, every
from workflows.segments import SegmentMaintenanceWorkflow


def schedules(settings: Settings) -> dict[str, tuple[str, int]]:
    """Schedule id -> (task, every seconds)."""
    return {
        "segments-window-edges": ("window_edges", settings.segment_window_edge_seconds),
        "segments-customer-scores": ("customer_scores", settings.customer_scores_seconds),
    }


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Create the schedules that do not exist yet, update the others; returns the ids created."""
    created = []
    for schedule_id, (task, seconds) in schedules(settings).items():
        desired = every(
            SegmentMaintenanceWorkflow.run,
            MaintenanceInput(task=task),
            workflow_id=f"segments/{task}",
            task_queue=settings.temporal_task_queue,
            seconds=seconds,
        )
        if await create_or_update(client, schedule_id, desired):
            created.append(schedule_id)
    return created
