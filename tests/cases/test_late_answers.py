"""A first response or resolution made after its deadline is a breach, though the SLA clock (whose
timer may act seconds, or minutes during a worker deploy, late) has not fired yet: the case records it
when the agent acts, once, and the clock firing later adds nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from temporalio.worker import Worker

from activities.cases import CaseActivities
from domain.cases import service as cases
from domain.cases.models import Case, CaseNote
from domain.cases.schemas import Outcome
from domain.db import transaction, utcnow
from domain.events.models import Event
from tests.cases.escalation_probe import EscalationProbeWorkflow, ProbeInput
from tests.cases.helpers import make_agent, make_customer, make_team, open_case
from tests.cases.test_sla_workflow import QUEUE, _case_of, _result, _sla_result, _sla_running, temporal
from tests.conftest import wait_for
from tests.temporal_env import time_skipping
from workflows.case_sla import CASE_CHANGED_SIGNAL, CaseSlaInput, CaseSlaWorkflow, CaseState, sla_workflow_id

__all__ = ["temporal"]  # the fixture, shared with the SLA workflow tests


async def _events(sessions, name: str) -> list[Event]:
    async with sessions() as session:
        return list(await session.scalars(select(Event).where(Event.name == name).order_by(Event.id)))


async def _setup(sessions) -> tuple[cases.Actor, int]:
    await make_team(sessions, "leads")
    await make_team(sessions, "care", supervisor="leads")
    ann = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, f"late-{uuid.uuid4().hex[:6]}")
    return cases.Actor(ann["id"], ["care"]), customer


async def test_a_resolution_after_its_deadline_is_recorded_as_breached_once(sessions, settings):
    actor, customer = await _setup(sessions)
    # Opened 25 hours ago: the `normal` targets (4 h, 24 h) have both passed.
    case_id = await open_case(sessions, customer, "care", now=utcnow() - timedelta(hours=25))
    async with transaction(sessions) as session:
        await cases.claim(session, actor, case_id)
        resolved = await cases.resolve(session, settings, actor, case_id, Outcome.solved, "late")
    assert resolved.breached_at is not None and resolved.breached_at == resolved.first_response_due
    async with sessions() as session:
        stored = await session.get(Case, case_id)
    assert (stored.status, stored.team_id, stored.assignee_id, stored.priority) == (
        "resolved",
        "care",
        actor.agent_id,
        "normal",
    )
    [breach] = await _events(sessions, "Case SLA Breached")
    assert breach.properties["target"] == "first_response"
    [resolution] = await _events(sessions, "Case Resolved")
    assert resolution.properties["breached"] is True

    # The clock fires late, for either target: nothing more is recorded or emitted.
    for target in ("first_response", "resolution"):
        async with transaction(sessions) as session:
            outcome = await cases.record_breach(session, case_id, target)
        assert (outcome.escalated, outcome.breached, outcome.status) == (False, True, "resolved")
    assert len(await _events(sessions, "Case SLA Breached")) == 1
    async with sessions() as session:
        after = await session.get(Case, case_id)
        notes = await session.scalar(
            select(func.count())
            .select_from(CaseNote)
            .where(CaseNote.case_id == case_id, CaseNote.kind == "breached")
        )
    assert (after.breached_at, after.team_id, after.status) == (stored.breached_at, "care", "resolved")
    assert notes == 1


async def test_a_resolution_after_only_the_resolution_deadline_names_that_target(sessions, settings):
    actor, customer = await _setup(sessions)
    case_id = await open_case(sessions, customer, "care", now=utcnow() - timedelta(hours=25))
    async with transaction(sessions) as session:  # answered in time, three hours after opening
        await session.execute(
            update(Case).where(Case.id == case_id).values(first_responded_at=utcnow() - timedelta(hours=22))
        )
    async with transaction(sessions) as session:
        await cases.claim(session, actor, case_id)
        resolved = await cases.resolve(session, settings, actor, case_id, Outcome.solved, "late")
    assert resolved.breached_at == resolved.resolution_due
    [breach] = await _events(sessions, "Case SLA Breached")
    assert breach.properties["target"] == "resolution"


@pytest.mark.parametrize("action", ["claim", "next", "note"])
async def test_a_first_response_after_its_deadline_is_recorded_as_breached(sessions, action):
    actor, customer = await _setup(sessions)
    case_id = await open_case(sessions, customer, "care", now=utcnow() - timedelta(hours=5))
    async with transaction(sessions) as session:
        if action == "claim":
            await cases.claim(session, actor, case_id)
        elif action == "next":
            assert (await cases.claim_next(session, actor)).case.id == case_id
        else:
            await cases.add_note(session, actor, case_id, "looking into it")
    async with transaction(sessions) as session:  # the clock, late
        outcome = await cases.record_breach(session, case_id, "first_response")
    assert (outcome.escalated, outcome.breached) == (False, True)
    async with sessions() as session:
        stored = await session.get(Case, case_id)
    assert stored.breached_at == stored.first_response_due
    assert (stored.team_id, stored.priority) == ("care", "normal")  # the agent who answered keeps it
    assert stored.assignee_id == (None if action == "note" else actor.agent_id)
    assert len(await _events(sessions, "Case SLA Breached")) == 1


async def test_a_first_response_in_time_records_no_breach(sessions, settings):
    actor, customer = await _setup(sessions)
    case_id = await open_case(sessions, customer, "care", now=utcnow() - timedelta(hours=3))
    async with transaction(sessions) as session:
        await cases.claim(session, actor, case_id)
        resolved = await cases.resolve(session, settings, actor, case_id, Outcome.solved, "")
    assert resolved.breached_at is None
    assert await _events(sessions, "Case SLA Breached") == []


async def _deadlines_passed(sessions, case_id: int, *, resolution: bool) -> None:
    """The case's deadlines as if they had passed a minute ago, while the clock's timer (set for the
    ones it started with) has not fired: a clock acting late."""
    past = utcnow() - timedelta(minutes=1)
    values = {"first_response_due": past, "due_at": past}
    if resolution:
        values["resolution_due"] = past
    async with transaction(sessions) as session:
        await session.execute(update(Case).where(Case.id == case_id).values(**values))


async def _probe(temporal, sessions):
    await make_team(sessions, "leads")
    await make_team(sessions, "care", supervisor="leads")
    ann = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, f"late-{uuid.uuid4().hex[:6]}")
    journey_id = f"journey-{uuid.uuid4().hex[:8]}"
    handle = await temporal.client.start_workflow(
        EscalationProbeWorkflow.run,
        ProbeInput(customer_id=customer, team="care", reason="late answer"),
        id=journey_id,
        task_queue=QUEUE,
    )
    case = await wait_for(lambda: _case_of(sessions, journey_id))
    await wait_for(lambda: _sla_running(temporal, case.id))
    return handle, case, cases.Actor(ann["id"], ["care"])


async def test_a_late_resolution_reaches_the_journey_as_resolved_and_breached(temporal, sessions, settings):
    handle, case, actor = await _probe(temporal, sessions)
    await _deadlines_passed(sessions, case.id, resolution=True)
    async with transaction(sessions) as session:
        await cases.claim(session, actor, case.id)
        await cases.resolve(session, settings, actor, case.id, Outcome.refunded, "late")
    result = await _result(temporal, handle)
    # One update: the resolution, which says it was late; no breach notice of its own.
    assert result.updates == 1
    first = result.first
    assert (first.status, first.outcome, first.breached) == ("resolved", "refunded", True)
    sla = await _sla_result(temporal, case.id)
    assert (sla.status, sla.outcome, sla.breached, sla.escalations) == ("resolved", "refunded", True, 0)
    assert len(await _events(sessions, "Case SLA Breached")) == 1


async def test_a_late_first_response_tells_the_journey_of_the_breach_at_once(temporal, sessions, settings):
    handle, case, actor = await _probe(temporal, sessions)
    await _deadlines_passed(sessions, case.id, resolution=False)
    async with transaction(sessions) as session:
        await cases.claim(session, actor, case.id)
    result = await _result(temporal, handle)  # no time passes: the clock's timer has not fired
    assert (result.branch, result.first.status, result.first.outcome) == ("breached", "assigned", None)
    # The resolution deadline passes too: still one breach, and the agent keeps the case.
    await temporal.sleep(case.resolution_due - utcnow() + timedelta(minutes=5))
    async with sessions() as session:
        stored = await session.get(Case, case.id)
    assert (stored.team_id, stored.assignee_id, stored.status) == ("care", actor.agent_id, "assigned")
    async with transaction(sessions) as session:
        await cases.resolve(session, settings, actor, case.id, Outcome.solved, "")
    sla = await _sla_result(temporal, case.id)
    assert (sla.status, sla.breached) == ("resolved", True)
    assert len(await _events(sessions, "Case SLA Breached")) == 1


async def test_a_late_resolution_the_clock_fires_on_before_hearing_of_it_reaches_the_journey_once(
    sessions, settings
):
    """The timer fires after the late resolution committed but before its change reached the clock:
    the breach activity finds the case resolved and breached, and the journey still hears only the
    resolution, not a breach notice it would take for a breach of an unresolved case."""
    actor, customer = await _setup(sessions)
    env = await time_skipping()
    activities = CaseActivities(sessions)
    try:
        async with Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[EscalationProbeWorkflow, CaseSlaWorkflow],
            activities=[activities.open_case, activities.case_sla_breach],
        ):
            journey_id = f"journey-{uuid.uuid4().hex[:8]}"
            probe = await env.client.start_workflow(
                EscalationProbeWorkflow.run,
                ProbeInput(customer_id=customer, team="care", reason="late answer"),
                id=journey_id,
                task_queue=QUEUE,
            )
            case = await wait_for(lambda: _case_of(sessions, journey_id))
            # No dispatcher: the clock learns only what the test signals.
            clock = await env.client.start_workflow(
                CaseSlaWorkflow.run,
                CaseSlaInput(
                    case.id, case.first_response_due.isoformat(), case.resolution_due.isoformat(), journey_id
                ),
                id=sla_workflow_id(case.id),
                task_queue=QUEUE,
                start_signal=CASE_CHANGED_SIGNAL,
                start_signal_args=[CaseState(case.revision, "open", False)],
            )
            await _deadlines_passed(sessions, case.id, resolution=True)
            async with transaction(sessions) as session:
                await cases.claim(session, actor, case.id)
                await cases.resolve(session, settings, actor, case.id, Outcome.solved, "late")
            await env.sleep(case.first_response_due - utcnow() + timedelta(minutes=5))
            await wait_for(lambda: _activity_done(clock))
            async with sessions() as session:
                stored = await session.get(Case, case.id)
            await clock.signal(
                CASE_CHANGED_SIGNAL, CaseState(stored.revision, stored.status, True, stored.outcome, True)
            )
            result = await _result(env, probe)
            sla = await _result(env, clock)
    finally:
        await env.shutdown()
    first = result.first
    assert (first.status, first.outcome, first.breached) == ("resolved", "solved", True)
    assert (sla.status, sla.breached, sla.escalations) == ("resolved", True, 0)


async def _activity_done(handle) -> bool:
    events = (await handle.fetch_history()).events
    return any(ev.HasField("activity_task_completed_event_attributes") for ev in events)
