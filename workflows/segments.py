"""SegmentMaintenanceWorkflow: what the segment Schedules start (window edges, value tiers and RFM)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.segment_contracts import (
        RECOMPUTE_CUSTOMER_SCORES,
        REFRESH_WINDOW_EDGES,
        MaintenanceInput,
        MaintenanceResult,
    )

ACTIVITIES = {"window_edges": REFRESH_WINDOW_EDGES, "customer_scores": RECOMPUTE_CUSTOMER_SCORES}


@workflow.defn(name="SegmentMaintenanceWorkflow")
class SegmentMaintenanceWorkflow:
    @workflow.run
    async def run(self, params: MaintenanceInput) -> MaintenanceResult:
        if params.task not in ACTIVITIES:
            raise workflow.ApplicationError(f"unknown maintenance task {params.task!r}", non_retryable=True)
        return await workflow.execute_activity(
            ACTIVITIES[params.task],
            activity_id=params.task,
            result_type=MaintenanceResult,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )
