"""The SLA clock and the hand-off back to the journey, on Temporal's time-skipping server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import Worker

from activities.cases import CaseActivities
from domain.cases import service as cases
from domain.cases.models import Case, CaseOutbox
from domain.cases.schemas import BusinessHoursIn, Outcome, Priority, SlaPolicyIn
from domain.db import transaction, utcnow
from domain.events.models import Event
from runtime.case_dispatcher import CaseDispatcher
from tests.cases.escalation_probe import EscalationProbeWorkflow, ProbeInput
from tests.cases.helpers import make_agent, make_customer, make_team, open_case
from tests.conftest import wait_for
from tests.temporal_env import time_skipping
from workflows.case_sla import CASE_CHANGED_SIGNAL, CaseSlaInput, CaseSlaWorkflow, CaseState, sla_workflow_id

QUEUE = "cases-test"


@pytest.fixture
async def temporal(sessions):
    """A time-skipping Temporal, a worker with the case activities and the case dispatcher running."""
    env = await time_skipping()
    stop = asyncio.Event()
    dispatcher = CaseDispatcher(env.client, sessions, task_queue=QUEUE, poll_seconds=0.05)
    activities = CaseActivities(sessions)
    async with Worker(
        env.client,
        task_queue=QUEUE,
        workflows=[EscalationProbeWorkflow, CaseSlaWorkflow],
        activities=[activities.open_case, activities.case_sla_breach],
    ):
        task = asyncio.create_task(dispatcher.run(stop))
        try:
            yield env
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await env.shutdown()


async def _case_of(sessions, journey_id: str) -> Case | None:
    async with sessions() as session:
        return await session.scalar(select(Case).where(Case.idempotency_key == f"{journey_id}/escalate"))


async def _dispatched(sessions) -> bool:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(CaseOutbox)) == 0


async def _sla_running(env, case_id: int) -> bool:
    try:
        described = await env.client.get_workflow_handle(sla_workflow_id(case_id)).describe()
    except Exception:
        return False
    return described.status == WorkflowExecutionStatus.RUNNING


async def _finished(handle) -> bool:
    # Waited for in real time: asking for a result early would let the test server skip time ahead.
    return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def _result(env, handle):
    """A finished workflow's result. Time moves only through env.sleep in these tests: left to skip on
    its own while a result is awaited, the test server would race an escalated case's clock (which has
    no timer left) to its 10-year run timeout."""
    await wait_for(lambda: _finished(handle))
    with env.auto_time_skipping_disabled():
        return await handle.result()


async def _sla_result(env, case_id: int):
    return await _result(
        env, env.client.get_workflow_handle_for(CaseSlaWorkflow.run, sla_workflow_id(case_id))
    )


async def test_a_case_missing_its_sla_is_escalated_once_and_the_journey_takes_the_breach_branch(
    temporal, sessions, settings
):
    await make_team(sessions, "supervisors")
    await make_team(sessions, "care", supervisor="supervisors")
    customer = await make_customer(sessions, "vip-1", value_tier="major")
    journey_id = f"journey-{uuid.uuid4().hex[:8]}"
    handle = await temporal.client.start_workflow(
        EscalationProbeWorkflow.run,
        ProbeInput(customer_id=customer, team="care", reason="order failed twice"),
        id=journey_id,
        task_queue=QUEUE,
    )
    case = await wait_for(lambda: _case_of(sessions, journey_id))
    await wait_for(lambda: _sla_running(temporal, case.id))

    # Two hours pass: the first-response target of a `high` case is one hour.
    await temporal.sleep(timedelta(hours=2))
    result = await _result(temporal, handle)

    assert result.case_id == case.id
    assert result.branch == "breached"
    async with sessions() as session:
        stored = await session.get(Case, case.id)
        breaches = await session.scalar(
            select(func.count()).select_from(Event).where(Event.name == "Case SLA Breached")
        )
    assert stored.priority == "urgent"  # raised from the major tier's `high`
    assert (stored.team_id, stored.escalated_from_team_id) == ("supervisors", "care")
    assert stored.status == "open" and stored.assignee_id is None
    assert breaches == 1

    # Days pass with nobody resolving it: the resolution target passes too, but no second escalation.
    await temporal.sleep(timedelta(days=5))
    async with sessions() as session:
        assert (await session.get(Case, case.id)).breached_at == stored.breached_at
    supervisor = await make_agent(sessions, "sue", "supervisors")
    actor = cases.Actor(supervisor["id"], ["supervisors"])
    async with transaction(sessions) as session:
        claimed = await cases.claim_next(session, actor)
        assert claimed.case.id == case.id
        await cases.resolve(session, settings, actor, case.id, Outcome.compensated, "")
    sla = await _sla_result(temporal, case.id)
    assert sla.escalations == 1
    assert (sla.status, sla.outcome, sla.breached) == ("resolved", "compensated", True)
    async with sessions() as session:
        assert (
            await session.scalar(
                select(func.count()).select_from(Event).where(Event.name == "Case SLA Breached")
            )
            == 1
        )


async def test_a_case_resolved_in_time_lets_the_journey_continue_on_the_outcome(temporal, sessions, settings):
    await make_team(sessions, "care")
    agent = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, "u-2")
    journey_id = f"journey-{uuid.uuid4().hex[:8]}"
    handle = await temporal.client.start_workflow(
        EscalationProbeWorkflow.run,
        ProbeInput(customer_id=customer, team="care", reason="refund request"),
        id=journey_id,
        task_queue=QUEUE,
    )
    case = await wait_for(lambda: _case_of(sessions, journey_id))
    await wait_for(lambda: _sla_running(temporal, case.id))
    actor = cases.Actor(agent["id"], ["care"])
    async with transaction(sessions) as session:
        await cases.claim(session, actor, case.id)
        await cases.resolve(session, settings, actor, case.id, Outcome.refunded, "done")

    result = await _result(temporal, handle)
    assert result.branch == "outcome:refunded"
    assert result.updates == 1
    sla = await _sla_result(temporal, case.id)
    assert (sla.status, sla.outcome, sla.breached, sla.escalations) == ("resolved", "refunded", False, 0)
    async with sessions() as session:
        assert (await session.get(Case, case.id)).breached_at is None

    # Closing comes after the clock stopped: the change is dropped, the finished clock is not restarted.
    clock = temporal.client.get_workflow_handle(sla_workflow_id(case.id))
    finished_run = (await clock.describe()).run_id
    async with transaction(sessions) as session:
        await cases.close(session, actor, case.id)
    await wait_for(lambda: _dispatched(sessions))
    latest = await clock.describe()
    assert (latest.run_id, latest.status) == (finished_run, WorkflowExecutionStatus.COMPLETED)


async def test_a_target_met_in_time_is_no_breach_however_late_the_clock_hears_of_it(sessions, settings):
    """The dispatcher's signals can lag (a backlog, a worker restart): the clock's timer then fires
    for a first response the agent gave in time, or a resolution already made. Neither escalates,
    and the journey is told no breach."""
    await make_team(sessions, "leads")
    await make_team(sessions, "care", supervisor="leads")
    ann = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, "u-3")
    actor = cases.Actor(ann["id"], ["care"])
    async with transaction(sessions) as session:
        case, _ = await cases.open_case(
            session, cases.OpenCase(customer_id=customer, reason="late news", team="care")
        )
        await cases.claim(session, actor, case.id)  # well within the first-response target
    env = await time_skipping()
    activities = CaseActivities(sessions)
    try:
        async with Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[CaseSlaWorkflow],
            activities=[activities.case_sla_breach],
        ):
            # No dispatcher: the clock learns only what the test signals, and late.
            handle = await env.client.start_workflow(
                CaseSlaWorkflow.run,
                CaseSlaInput(case.id, case.first_response_due.isoformat(), case.resolution_due.isoformat()),
                id=sla_workflow_id(case.id),
                task_queue=QUEUE,
                start_signal=CASE_CHANGED_SIGNAL,
                start_signal_args=[CaseState(case.revision, "open", False)],
            )
            await env.sleep(case.first_response_due - utcnow() + timedelta(minutes=5))
            async with sessions() as session:
                stored = await session.get(Case, case.id)
                assert (stored.assignee_id, stored.team_id, stored.breached_at) == (ann["id"], "care", None)
            await handle.signal(CASE_CHANGED_SIGNAL, CaseState(stored.revision, stored.status, True))
            async with transaction(sessions) as session:
                await cases.resolve(session, settings, actor, case.id, Outcome.solved, "done")
            await env.sleep(case.resolution_due - case.first_response_due)  # the resolution target passes too
            async with sessions() as session:
                stored = await session.get(Case, case.id)
            await handle.signal(
                CASE_CHANGED_SIGNAL, CaseState(stored.revision, stored.status, True, stored.outcome)
            )
            result = await _result(env, handle)
    finally:
        await env.shutdown()
    assert (result.status, result.breached, result.escalations) == ("resolved", False, 0)
    async with sessions() as session:
        stored = await session.get(Case, case.id)
        breaches = await session.scalar(
            select(func.count()).select_from(Event).where(Event.name == "Case SLA Breached")
        )
    assert (stored.breached_at, stored.priority, breaches) == (None, case.priority, 0)


async def _auto_assigned_case_in_business_hours(temporal, sessions) -> tuple[Case, dict]:
    """A `normal` case (30 min first response, Paris office hours) that the team hands to ann."""
    async with transaction(sessions) as session:
        hours = BusinessHoursIn(timezone="Europe/Paris", start="09:00", end="17:00")
        await cases.set_policy(
            session,
            Priority.normal,
            SlaPolicyIn(first_response_minutes=30, resolution_minutes=600, business_hours=hours),
        )
    await make_team(sessions, "leads")
    await make_team(sessions, "care", supervisor="leads", auto_assign=True)
    ann = await make_agent(sessions, "ann", "care")
    case_id = await open_case(sessions, await make_customer(sessions, "u-4"), "care")
    async with sessions() as session:
        case = await session.get(Case, case_id)
    assert (case.status, case.assignee_id) == ("assigned", ann["id"])
    await wait_for(lambda: _sla_running(temporal, case.id))
    return case, ann


async def test_an_auto_assigned_case_nobody_acts_on_misses_its_first_response_target(temporal, sessions):
    case, _ = await _auto_assigned_case_in_business_hours(temporal, sessions)

    await temporal.sleep(case.first_response_due - utcnow() + timedelta(minutes=5))

    async def breached():
        async with sessions() as session:
            return (await session.get(Case, case.id, populate_existing=True)).breached_at is not None

    await wait_for(breached)
    async with sessions() as session:
        stored = await session.get(Case, case.id)
        missed = await session.scalar(select(Event).where(Event.name == "Case SLA Breached"))
    assert (stored.team_id, stored.assignee_id, stored.priority) == ("leads", None, "high")
    assert missed.properties["target"] == "first_response"
    assert stored.first_responded_at is None  # being handed the case was no response


async def test_an_auto_assigned_case_the_agent_notes_in_time_meets_its_first_response_target(
    temporal, sessions, settings
):
    case, ann = await _auto_assigned_case_in_business_hours(temporal, sessions)
    actor = cases.Actor(ann["id"], ["care"])
    async with transaction(sessions) as session:
        await cases.add_note(session, actor, case.id, "Called, no answer")
    async with sessions() as session:
        noted = await session.get(Case, case.id)
    assert noted.first_responded_at is not None and noted.due_at == noted.resolution_due

    await temporal.sleep(case.first_response_due - utcnow() + timedelta(minutes=5))
    async with sessions() as session:
        stored = await session.get(Case, case.id)
    assert (stored.breached_at, stored.team_id, stored.assignee_id) == (None, "care", ann["id"])
    async with transaction(sessions) as session:
        await cases.resolve(session, settings, actor, case.id, Outcome.solved, "called back")
    sla = await _sla_result(temporal, case.id)
    assert (sla.status, sla.breached, sla.escalations) == ("resolved", False, 0)
