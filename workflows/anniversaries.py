"""AnniversarySweepWorkflow: one pass of the birthday and anniversary enrollment sweep.

Its Temporal Schedule starts it (hourly by default, see runtime/anniversary_schedule.py). The pass
treats the workflow's start time as "now"; enrollment ids carry the year, so a pass that runs twice or
overlaps a retry enrolls nobody twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import ENROLL_DUE_ANNIVERSARIES, AnniversarySweepRequest, AnniversarySweepResult


@dataclass
class AnniversarySweepInput:
    """Nothing to choose yet: every published date-trait journey is swept."""


@dataclass
class AnniversarySweepOutput:
    as_of: str
    started: int


@workflow.defn(name="AnniversarySweepWorkflow")
class AnniversarySweepWorkflow:
    @workflow.run
    async def run(self, _: AnniversarySweepInput) -> AnniversarySweepOutput:
        as_of = workflow.now().isoformat()
        result = await workflow.execute_activity(
            ENROLL_DUE_ANNIVERSARIES,
            AnniversarySweepRequest(as_of=as_of),
            activity_id="enroll-due",
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5)
            ),
            result_type=AnniversarySweepResult,
        )
        return AnniversarySweepOutput(as_of=as_of, started=result.started)
