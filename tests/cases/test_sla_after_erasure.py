"""A case's SLA clock whose case was erased with its customer, on Temporal's time-skipping server.

The erasure deletes the clocks of the person's cases from Temporal, but the case dispatcher can start
one just after: it read the case's change before the erasure and signal-with-starts the clock after
it (the id is free again once deleted). That clock must stop at its deadline without escalating
anything or telling anyone, instead of retrying a breach of a case that no longer exists.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import Worker

from activities.cases import CaseActivities
from domain.cases.models import Case, CaseNote
from domain.customers import service as customers
from domain.db import transaction, utcnow
from domain.events.models import Event
from runtime.case_dispatcher import CaseDispatcher
from tests.cases.escalation_probe import EscalationProbeWorkflow, ProbeInput
from tests.cases.helpers import make_customer, make_team
from tests.conftest import wait_for
from tests.temporal_env import time_skipping
from workflows.case_sla import CaseSlaWorkflow, sla_workflow_id

QUEUE = "cases-erased-test"


class ErasingDispatcher(CaseDispatcher):
    """A dispatcher whose pass is overtaken by an erasure between its read and its start."""

    def __init__(self, *args, customer_id: int, **kw):
        super().__init__(*args, **kw)
        self._customer_id = customer_id
        self.erased = asyncio.Event()

    async def _signal(self, change) -> None:
        if not self.erased.is_set():
            # What DELETE /api/customers/{id} does once Temporal had no clock of the case to delete.
            async with transaction(self._sessions) as session:
                await customers.hold_for_erasure(session, self._customer_id)
                await customers.erase(session, self._customer_id, by_key_id=None, reason="asked")
            self.erased.set()
        await super()._signal(change)


async def _status(handle):
    return (await handle.describe()).status


async def _completed(handle) -> bool:
    # Waited for in real time: awaiting the result would let the server skip to the run timeout.
    return await _status(handle) == WorkflowExecutionStatus.COMPLETED


async def test_a_clock_started_for_a_case_erased_meanwhile_stops_at_its_deadline_saying_nothing(sessions):
    await make_team(sessions, "leads")
    await make_team(sessions, "care", supervisor="leads")
    customer = await make_customer(sessions, "vip-erased", value_tier="major")
    env = await time_skipping()
    activities = CaseActivities(sessions)
    try:
        async with Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[EscalationProbeWorkflow, CaseSlaWorkflow],
            activities=[activities.open_case, activities.case_sla_breach],
        ):
            journey = await env.client.start_workflow(
                EscalationProbeWorkflow.run,
                ProbeInput(customer_id=customer, team="care", reason="order failed twice"),
                id=f"journey-{uuid.uuid4().hex[:8]}",
                task_queue=QUEUE,
            )

            async def opened():
                async with sessions() as session:
                    return await session.scalar(select(Case).where(Case.customer_id == customer))

            case = await wait_for(opened)
            dispatcher = ErasingDispatcher(env.client, sessions, task_queue=QUEUE, customer_id=customer)
            assert await dispatcher.dispatch_once() == 1
            assert dispatcher.erased.is_set()
            clock = env.client.get_workflow_handle_for(CaseSlaWorkflow.run, sla_workflow_id(case.id))
            async with sessions() as session:
                assert await session.get(Case, case.id) is None  # the case went with its customer

            # Both targets pass (first response and resolution of a `high` case).
            await env.sleep(case.resolution_due - utcnow() + timedelta(hours=1))

            await wait_for(lambda: _completed(clock), within=30)
            with env.auto_time_skipping_disabled():
                result = await clock.result()
            assert (result.status, result.breached, result.escalations) == ("gone", False, 0)
            # The waiting journey heard nothing, and nothing was recorded of the case or the person.
            signals = [
                e
                async for e in journey.fetch_history_events()
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            ]
            assert signals == []
            assert await _status(journey) == WorkflowExecutionStatus.RUNNING
            async with sessions() as session:
                assert await session.scalar(select(func.count()).select_from(CaseNote)) == 0
                named = select(func.count()).select_from(Event).where(Event.customer_id == customer)
                assert await session.scalar(named) == 0
                breaches = select(func.count()).select_from(Event).where(Event.name == "Case SLA Breached")
                assert await session.scalar(breaches) == 0
            await journey.terminate()
    finally:
        await env.shutdown()
