"""CaseSlaWorkflow: one run per case, keeping its SLA clock.

The worker's case dispatcher starts it (signal-with-start, id ``case/{id}/sla``) when a case is opened
and signals every later change. While the case is active the workflow waits for the deadline that
counts (first response until an agent claims the case, then resolution); when it passes, the case is
escalated once and the waiting journey is told. Resolution stops the clock and tells the journey the
outcome. A case that no longer exists (erased with its customer) stops the clock silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        CASE_SLA_BREACH,
        CASE_UPDATE_SIGNAL,
        CaseSlaBreachRequest,
        CaseSlaBreachResult,
        CaseUpdate,
    )

CASE_CHANGED_SIGNAL = "case_changed"
FINAL = ("resolved", "closed")
# Runs started before it took any passed deadline as a breach, even when the case met it and only
# its signal was late; from it on, the breach is what the case recorded.
BREACH_AS_STORED_PATCH = "breach-as-stored"
# Runs started before it retried the breach of a case erased with its customer forever; from it on,
# the clock stops there without a word to anyone.
CASE_GONE_PATCH = "case-gone"
# Runs started before it told the journey of a breach only when this call escalated; a retry after an
# attempt that escalated but whose result was lost found it breached already and told no one.
BREACH_TOLD_ON_RETRY_PATCH = "breach-told-on-retry"
# Runs started before it heard nothing of a breach the case recorded itself (an agent answered after
# the deadline, before the timer fired) until the next deadline; and told a finished case's breach on
# its own, which the journey took for a breach of an unresolved case. From it on, the journey hears an
# active case's recorded breach at once, and a finished case's with its resolution only.
BREACH_RECORDED_PATCH = "breach-recorded-by-case"


def sla_workflow_id(case_id: int) -> str:
    return f"case/{case_id}/sla"


@dataclass
class CaseSlaInput:
    case_id: int
    first_response_due: str  # ISO 8601, UTC
    resolution_due: str
    waiting_workflow_id: str | None = None


@dataclass
class CaseState:
    """The case as stored after a change; ``revision`` orders states delivered out of order."""

    revision: int
    status: str
    first_responded: bool
    outcome: str | None = None
    breached: bool = False


@dataclass
class CaseSlaResult:
    status: str
    outcome: str | None
    breached: bool
    escalations: int


@workflow.defn(name="CaseSlaWorkflow")
class CaseSlaWorkflow:
    def __init__(self) -> None:
        self._state: CaseState | None = None
        self._escalations = 0

    @workflow.signal(name=CASE_CHANGED_SIGNAL)
    def changed(self, state: CaseState) -> None:
        if self._state is None or state.revision > self._state.revision:
            self._state = state

    @workflow.query(name="state")
    def state(self) -> CaseState | None:
        return self._state

    def _revision(self) -> int:
        return self._state.revision if self._state else 0

    def _final(self) -> bool:
        return self._state is not None and self._state.status in FINAL

    @workflow.run
    async def run(self, inp: CaseSlaInput) -> CaseSlaResult:
        first_due = datetime.fromisoformat(inp.first_response_due)
        resolution_due = datetime.fromisoformat(inp.resolution_due)
        breached = bool(self._state and self._state.breached)
        while not self._final():
            recorded = self._state is not None and self._state.breached
            if not breached and recorded and workflow.patched(BREACH_RECORDED_PATCH):
                breached = True  # an agent's late answer recorded it: no escalation, the news only
                await self._tell(inp, CaseUpdate(inp.case_id, self._state.status, None, True))
                continue
            if breached:
                # Escalated once; from here only the resolution matters.
                await workflow.wait_condition(self._final)
                break
            responded = self._state is not None and self._state.first_responded
            target, due = ("resolution", resolution_due) if responded else ("first_response", first_due)
            remaining = due - workflow.now()
            seen = self._revision()
            if remaining > timedelta(0):
                try:
                    await workflow.wait_condition(
                        lambda seen=seen: self._revision() != seen, timeout=remaining
                    )
                    continue  # the case changed: re-evaluate which deadline counts
                except TimeoutError:
                    pass
            result = await workflow.execute_activity(
                CASE_SLA_BREACH,
                CaseSlaBreachRequest(case_id=inp.case_id, target=target),
                activity_id=f"breach/{target}",
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
                result_type=CaseSlaBreachResult,
            )
            if result.gone and workflow.patched(CASE_GONE_PATCH):
                return CaseSlaResult("gone", None, False, self._escalations)
            breached = result.breached if workflow.patched(BREACH_AS_STORED_PATCH) else True
            if not breached:
                # The case met the target or finished, and the change that says so is on its way.
                await workflow.wait_condition(lambda seen=seen: self._revision() != seen)
                continue
            # Not escalated by this call yet breached: an earlier attempt of it escalated the case.
            told = result.escalated or (result.breached and workflow.patched(BREACH_TOLD_ON_RETRY_PATCH))
            if told and result.status in FINAL and workflow.patched(BREACH_RECORDED_PATCH):
                told = False  # resolved late meanwhile: the resolution, next, carries the breach
            if told:
                self._escalations += 1
                await self._tell(inp, CaseUpdate(inp.case_id, result.status, None, True))
        final = self._state
        await self._tell(
            inp, CaseUpdate(inp.case_id, final.status, final.outcome, breached or final.breached)
        )
        return CaseSlaResult(final.status, final.outcome, breached or final.breached, self._escalations)

    async def _tell(self, inp: CaseSlaInput, update: CaseUpdate) -> None:
        if not inp.waiting_workflow_id:
            return
        try:
            await workflow.get_external_workflow_handle(inp.waiting_workflow_id).signal(
                CASE_UPDATE_SIGNAL, update
            )
        except (ApplicationError, FailureError) as err:
            # The journey has finished or was cancelled meanwhile: the case itself stays as it is.
            workflow.logger.info("case %s: waiting workflow not signalled: %s", inp.case_id, err)
