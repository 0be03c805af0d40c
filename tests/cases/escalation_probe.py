"""A minimal journey step that escalates: open a case, wait for its update, branch on it.

It follows the contract the journey engine's `escalate` node uses (activities/contracts.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import CASE_REJECTED, CASE_UPDATE_SIGNAL, OPEN_CASE, CaseUpdate, OpenCaseRequest


@dataclass
class ProbeInput:
    customer_id: int
    team: str
    reason: str
    priority: str | None = None


@dataclass
class ProbeResult:
    case_id: int
    branch: str  # "breached" or "outcome:<code>"
    updates: int
    first: CaseUpdate | None = None  # the first update heard, as sent


@workflow.defn(name="EscalationProbeWorkflow")
class EscalationProbeWorkflow:
    def __init__(self) -> None:
        self._updates: list[CaseUpdate] = []

    @workflow.signal(name=CASE_UPDATE_SIGNAL)
    def case_update(self, update: CaseUpdate) -> None:
        self._updates.append(update)

    @workflow.run
    async def run(self, inp: ProbeInput) -> ProbeResult:
        wf_id = workflow.info().workflow_id
        case_id = await workflow.execute_activity(
            OPEN_CASE,
            OpenCaseRequest(
                idempotency_key=f"{wf_id}/escalate",
                customer_id=inp.customer_id,
                reason=inp.reason,
                team=inp.team,
                priority=inp.priority,
                journey_id="probe",
                node_id="escalate",
                waiting_workflow_id=wf_id,
            ),
            activity_id="escalate",
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(non_retryable_error_types=[CASE_REJECTED]),
            result_type=int,
        )
        await workflow.wait_condition(lambda: bool(self._updates))
        first = self._updates[0]
        branch = "breached" if first.breached else f"outcome:{first.outcome}"
        return ProbeResult(case_id=case_id, branch=branch, updates=len(self._updates), first=first)
