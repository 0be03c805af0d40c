"""An SLA breach reaches the waiting journey even when the breach activity is retried after an attempt
that escalated the case but whose result never reached the clock (a worker lost mid-report)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.cases import CaseActivities
from activities.contracts import CASE_SLA_BREACH, CaseSlaBreachRequest, CaseSlaBreachResult
from domain.cases.models import Case
from domain.events.models import Event
from runtime.case_dispatcher import CaseDispatcher
from tests.cases.escalation_probe import EscalationProbeWorkflow, ProbeInput
from tests.cases.helpers import make_customer, make_team
from tests.conftest import wait_for
from tests.temporal_env import time_skipping
from workflows.case_sla import CaseSlaWorkflow, sla_workflow_id

QUEUE = "cases-breach-retry"


class LosesFirstResult:
    """The real breach activity, whose first attempt commits and then fails as a lost worker would."""

    def __init__(self, sessions):
        self._real = CaseActivities(sessions)
        self.attempts = 0

    @activity.defn(name=CASE_SLA_BREACH)
    async def case_sla_breach(self, req: CaseSlaBreachRequest) -> CaseSlaBreachResult:
        self.attempts += 1
        result = await self._real.case_sla_breach(req)
        if activity.info().attempt == 1:
            raise ApplicationError("the worker was lost before reporting")
        return result


async def _running(env, workflow_id: str) -> bool:
    try:
        described = await env.client.get_workflow_handle(workflow_id).describe()
    except Exception:
        return False
    return described.status == WorkflowExecutionStatus.RUNNING


async def _completed(handle) -> bool:
    return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_a_breach_escalated_by_a_lost_attempt_still_reaches_the_waiting_journey(sessions):
    await make_team(sessions, "leads")
    await make_team(sessions, "care", supervisor="leads")
    customer = await make_customer(sessions, "lost-1", value_tier="major")  # high: first response 1 h
    env = await time_skipping()
    stop = asyncio.Event()
    breach = LosesFirstResult(sessions)
    real = CaseActivities(sessions)
    try:
        async with Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[EscalationProbeWorkflow, CaseSlaWorkflow],
            activities=[real.open_case, breach.case_sla_breach],
        ):
            dispatcher = CaseDispatcher(env.client, sessions, task_queue=QUEUE, poll_seconds=0.05)
            task = asyncio.create_task(dispatcher.run(stop))
            try:
                journey_id = f"journey-{uuid.uuid4().hex[:8]}"
                handle = await env.client.start_workflow(
                    EscalationProbeWorkflow.run,
                    ProbeInput(customer_id=customer, team="care", reason="order failed twice"),
                    id=journey_id,
                    task_queue=QUEUE,
                )

                async def case_id():
                    async with sessions() as session:
                        key = f"{journey_id}/escalate"
                        return await session.scalar(select(Case.id).where(Case.idempotency_key == key))

                case = await wait_for(case_id)
                await wait_for(lambda: _running(env, sla_workflow_id(case)))
                await env.sleep(timedelta(hours=2))

                # Nobody resolves the case: the journey hears of the breach, not of an outcome later.
                await wait_for(lambda: _completed(handle))
                with env.auto_time_skipping_disabled():
                    result = await handle.result()
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await env.shutdown()

    assert breach.attempts == 2
    assert (result.case_id, result.branch, result.updates) == (case, "breached", 1)
    async with sessions() as session:
        stored = await session.get(Case, case)
        breaches = await session.scalar(
            select(func.count()).select_from(Event).where(Event.name == "Case SLA Breached")
        )
    assert (stored.status, stored.team_id, stored.breached_at is not None) == ("open", "leads", True)
    assert breaches == 1
