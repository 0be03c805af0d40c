"""Recording scenarios (see record_histories.py) that take the new path of a `workflow.patched` branch
whose new path no other history covers. Each recorded history holds the patch marker and the commands
the patched branch issues, so a change to that branch fails the replay test with a nondeterminism
error. One small run each; customer and journey ids are their own (all scenarios share one database).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update
from temporalio.worker import Worker

from domain.broadcasts import service as broadcasts
from domain.broadcasts.schemas import BroadcastIn
from domain.cases import service as cases
from domain.cases.models import Case
from domain.cases.schemas import Outcome
from domain.customers import service as customers
from domain.db import transaction, utcnow
from tests.cases.helpers import make_agent, make_team
from tests.conftest import wait_for
from tests.workflows.test_broadcast_signals import StubbedBatches
from tests.workflows.test_entries_without_an_event import RENEWALS, _enroll_by_api, _manual
from tests.workflows.workflow_scenarios import _mail_for, _outcome, _start_broadcast, _steer
from workflows.broadcast import PAUSED_RECHECK, BroadcastInput, BroadcastWorkflow
from workflows.case_sla import CASE_CHANGED_SIGNAL, CaseSlaInput, CaseSlaWorkflow, CaseState, sla_workflow_id


def _journey(*nodes: dict, entry_event: str, rules: dict | None = None) -> dict:
    return {
        "nodes": [
            {"id": "start", "type": "entry", "event": entry_event, "next": nodes[0]["id"]},
            *nodes,
            {"id": "done", "type": "exit"},
        ],
        "rules": rules or {},
    }


async def _deduct_insufficient(e) -> list:
    """A deduction the balance does not cover goes to insufficient_next (deduct-insufficient-branches):
    the 'more' email, not the voucher."""
    await e.template("perk-voucher", "Your voucher")
    await e.template("perk-more", "Earn a few more points")
    await e.journey(
        "perk",
        _journey(
            {
                "id": "pay",
                "type": "deduct_points",
                "points": 500,
                "next": "voucher",
                "insufficient_next": "more",
            },
            {"id": "voucher", "type": "send_email", "template_id": "perk-voucher", "next": "done"},
            {"id": "more", "type": "send_email", "template_id": "perk-more", "next": "done"},
            entry_event="Asked For Voucher",
        ),
    )
    pia = await e.customer("pia")  # no points
    await e.track("pia", "Asked For Voucher")
    handle = e.handle("perk", pia)
    assert (await e.result(handle)).path == ["pay", "more", "done"]
    return [("deduct_insufficient_branches", handle)]


async def _booleans_not_numbers(e) -> list:
    """A trait of 1 is no `true` (conditions-tell-booleans-from-numbers): the default path's email,
    where Python's equality took the branch."""
    for name in ("flag-flagged", "flag-rest"):
        await e.template(name, name)
    branch = {
        "id": "b",
        "type": "branch",
        "branches": [{"when": [{"trait": "vip", "op": "eq", "value": True}], "next": "flagged"}],
        "default_next": "rest",
    }
    await e.journey(
        "flags",
        _journey(
            branch,
            {"id": "flagged", "type": "send_email", "template_id": "flag-flagged", "next": "done"},
            {"id": "rest", "type": "send_email", "template_id": "flag-rest", "next": "done"},
            entry_event="Flag Checked",
        ),
    )
    quin = await e.customer("quin", vip=1)
    await e.track("quin", "Flag Checked")
    handle = e.handle("flags", quin)
    assert (await e.result(handle)).path == ["b", "rest", "done"]
    return [("booleans_not_numbers", handle)]


async def _date_wait_revisit(e) -> list:
    """A loop back to a date wait with no date to wait for ends there (date-wait-revisit-ends) instead
    of sending again."""
    await e.template("renew", "Renew, {{ traits.name }}")
    await e.journey("renewals", RENEWALS)
    rosa = await e.customer("rosa")  # no renewal date
    await e.track("rosa", "Subscribed")
    handle = e.handle("renewals", rosa)
    assert (await e.result(handle)).path == ["until", "remind", "until"]
    return [("date_wait_revisit_ends", handle)]


async def _goal_segment_member(e) -> list:
    """A customer already in the goal segment converts at the first wait (segment-goal-membership):
    one segment evaluation, no three-day timer, no nudge."""
    await e.template("trial-nudge", "Still thinking?")
    await e.segment("trial-buyers", {"trait": "bought", "op": "equals", "value": True})
    await e.journey(
        "trial",
        _journey(
            {"id": "wait", "type": "wait", "duration": "3d", "next": "nudge"},
            {"id": "nudge", "type": "send_email", "template_id": "trial-nudge", "next": "done"},
            entry_event="Trial Started",
            rules={"goal": {"segment": "trial-buyers"}},
        ),
    )
    sam = await e.customer("sam")
    await e.move_into_segments([sam], bought=True)
    await e.track("sam", "Trial Started")
    handle = e.handle("trial", sam)
    result = await e.result(handle)
    assert (result.status, result.path) == ("converted", ["wait"]), result
    return [("goal_segment_member_converts", handle)]


async def _enrolled_by_api(e) -> list:
    """An enrollment by API does not count the order placed before it started
    (events-since-enrollment-start): its wait times out and the win-back email goes."""
    await e.template("winback", "We miss you, {{ traits.name }}")
    wait = {
        "id": "wait",
        "type": "wait_for_event",
        "event": "Order Completed",
        "timeout": "3d",
        "next": "done",
        "timeout_next": "mail",
    }
    await e.journey("winback", _manual({}, wait))
    tess = await e.customer("tess")
    await e.track("tess", "Order Completed", revenue=10)
    handle = e.client.get_workflow_handle(await _enroll_by_api(e, "winback", tess))
    async with e.env.time_skipping_unlocked():
        result = await asyncio.wait_for(handle.result(), 30)
    assert result["path"] == ["wait", "mail", "done"], result
    return [("enrolled_by_api_ignores_older_events", handle)]


async def _broadcast_resume_during_paused_batch(e) -> list:
    """Pause and resume both reach the workflow while a batch that read 'paused' from the database runs:
    the workflow goes on (broadcast-resume-during-paused-batch) and sends the batch again. The batch
    activity is the stub of test_broadcast_signals: no real batch can be held at that moment."""
    stubs = StubbedBatches()
    queue = f"{e.task_queue}-stubbed"
    async with Worker(
        e.client,
        task_queue=queue,
        workflows=[BroadcastWorkflow],
        activities=[stubs.send_batch, stubs.finish],
    ):
        handle = await e.client.start_workflow(
            BroadcastWorkflow.run,
            BroadcastInput(broadcast_id="resumed-mid-batch"),
            id="broadcast/resumed-mid-batch",
            task_queue=queue,
        )
        await stubs.first_started.wait()
        await handle.signal(BroadcastWorkflow.pause)
        await handle.signal(BroadcastWorkflow.resume)
        stubs.release_first.set()  # the batch's result lands after both signals
        progress = await asyncio.wait_for(handle.result(), timeout=30)
    assert (progress.status, stubs.calls) == ("completed", [0, 0]), (progress, stubs.calls)
    return [("broadcast_resume_during_paused_batch", handle)]


async def _broadcast_resume_signal_lost(e) -> list:
    """A paused broadcast resumed in the database whose signal never came (the API stopped between
    the two): the workflow wakes on its timer (broadcast-paused-rechecks-status), its batch reads
    'running', and it sends the rest."""
    await e.template("lost", "Still on for {{ traits.name }}")
    buyers = [await e.customer(f"lost{i}") for i in range(8)]
    handle = await _start_broadcast(
        e,
        BroadcastIn(
            id="lost-resume",
            name="Lost resume",
            template_id="lost",
            audience={"kind": "customers", "customer_ids": buyers},
            batch_size=4,
            rate_per_second=4,
        ),
    )
    await wait_for(lambda: _mail_for(e, "Still on for", 1))
    await _steer(e, handle, "lost-resume", "pause")
    await wait_for(lambda: _progress_is(handle, "paused"))
    async with transaction(e.sessions) as session:
        await broadcasts.change(session, "lost-resume", "resume")  # and no signal
    await e.env.sleep(PAUSED_RECHECK + timedelta(seconds=1))
    result = await _outcome(e, handle)
    assert (result.status, result.sent) == ("completed", 8), result
    return [("broadcast_resume_signal_lost", handle)]


async def _progress_is(handle, status: str) -> bool:
    return (await handle.query(BroadcastWorkflow.progress)).status == status


async def _case_sla_heard_late(e) -> list:
    """The clock's first-response timer fires for a case claimed in time, whose signal is late: the
    breach activity says no breach (breach-as-stored), so the clock waits for the change and then times
    the resolution target, instead of taking the breach and waiting only for the case to close."""
    await make_team(e.sessions, "late-leads")
    await make_team(e.sessions, "late-desk", supervisor="late-leads")
    agent = await make_agent(e.sessions, "uma", "late-desk")
    customer = await e.customer("vic")
    actor = cases.Actor(agent["id"], ["late-desk"])
    async with transaction(e.sessions) as session:
        case, _ = await cases.open_case(
            session, cases.OpenCase(customer_id=customer, reason="late news", team="late-desk")
        )
        opened = case.revision
        await cases.claim(session, actor, case.id)  # well within the first-response target
    # No dispatcher: the clock learns only what is signalled here, and late.
    handle = await e.client.start_workflow(
        CaseSlaWorkflow.run,
        CaseSlaInput(case.id, case.first_response_due.isoformat(), case.resolution_due.isoformat()),
        id=sla_workflow_id(case.id),
        task_queue=e.task_queue,
        start_signal=CASE_CHANGED_SIGNAL,
        start_signal_args=[CaseState(opened, "open", False)],
    )
    await e.env.sleep(case.first_response_due - utcnow() + timedelta(minutes=5))
    await wait_for(lambda: _has(handle, "activity_task_completed_event_attributes"))
    # The claim's late news: no breach, so the clock goes on to time the resolution (a timer).
    async with e.sessions() as session:
        stored = await session.get(Case, case.id)
    await handle.signal(CASE_CHANGED_SIGNAL, CaseState(stored.revision, stored.status, True))
    await wait_for(lambda: _has(handle, "timer_started_event_attributes", after_activity=True))
    async with transaction(e.sessions) as session:
        await cases.resolve(session, e.settings, actor, case.id, Outcome.solved, "done")
    async with e.sessions() as session:
        stored = await session.get(Case, case.id)
    await handle.signal(CASE_CHANGED_SIGNAL, CaseState(stored.revision, stored.status, True, stored.outcome))
    with e.env.auto_time_skipping_disabled():
        result = await asyncio.wait_for(handle.result(), 30)
    assert (result.status, result.breached, result.escalations) == ("resolved", False, 0), result
    return [("case_sla_target_met_heard_late", handle)]


async def _case_sla_case_gone(e) -> list:
    """The clock's target passes for a case erased with its customer: the breach activity says the
    case is gone (case-gone), and the clock ends there without signalling anyone."""
    await make_team(e.sessions, "gone-desk")
    customer = await e.customer("gil")
    async with transaction(e.sessions) as session:
        case, _ = await cases.open_case(
            session, cases.OpenCase(customer_id=customer, reason="gone soon", team="gone-desk")
        )
    handle = await e.client.start_workflow(
        CaseSlaWorkflow.run,
        CaseSlaInput(
            case.id, case.first_response_due.isoformat(), case.resolution_due.isoformat(), "journey/x"
        ),
        id=sla_workflow_id(case.id),
        task_queue=e.task_queue,
        start_signal=CASE_CHANGED_SIGNAL,
        start_signal_args=[CaseState(case.revision, "open", False)],
    )
    async with transaction(e.sessions) as session:
        await customers.hold_for_erasure(session, customer)
        await customers.erase(session, customer, by_key_id=None, reason="asked")
    await e.env.sleep(case.first_response_due - utcnow() + timedelta(minutes=5))
    await wait_for(lambda: _has(handle, "activity_task_completed_event_attributes"))
    with e.env.auto_time_skipping_disabled():
        result = await asyncio.wait_for(handle.result(), 30)
    assert (result.status, result.breached, result.escalations) == ("gone", False, 0), result
    return [("case_sla_case_gone", handle)]


async def _case_sla_breach_told_on_retry(e) -> list:
    """The clock's target passes for a case an earlier attempt of the breach activity escalated (its
    result lost): the activity says breached but not escalated now, and the clock still tells the
    waiting journey of the breach (breach-told-on-retry), then of the resolution."""
    await make_team(e.sessions, "retry-leads")
    await make_team(e.sessions, "retry-desk", supervisor="retry-leads")
    supervisor = await make_agent(e.sessions, "rey", "retry-leads")
    customer = await e.customer("rita")
    async with transaction(e.sessions) as session:
        case, _ = await cases.open_case(
            session, cases.OpenCase(customer_id=customer, reason="lost result", team="retry-desk")
        )
    handle = await e.client.start_workflow(
        CaseSlaWorkflow.run,
        CaseSlaInput(
            case.id, case.first_response_due.isoformat(), case.resolution_due.isoformat(), "journey/r"
        ),
        id=sla_workflow_id(case.id),
        task_queue=e.task_queue,
        start_signal=CASE_CHANGED_SIGNAL,
        start_signal_args=[CaseState(case.revision, "open", False)],
    )
    async with transaction(e.sessions) as session:  # what the lost attempt committed
        await cases.record_breach(session, case.id, "first_response")
    await e.env.sleep(case.first_response_due - utcnow() + timedelta(minutes=5))
    await wait_for(lambda: _has(handle, "signal_external_workflow_execution_initiated_event_attributes"))
    actor = cases.Actor(supervisor["id"], ["retry-leads"])
    async with transaction(e.sessions) as session:
        await cases.claim(session, actor, case.id)
        await cases.resolve(session, e.settings, actor, case.id, Outcome.solved, "done")
    async with e.sessions() as session:
        stored = await session.get(Case, case.id)
    state = CaseState(stored.revision, stored.status, True, stored.outcome, True)
    await handle.signal(CASE_CHANGED_SIGNAL, state)
    with e.env.auto_time_skipping_disabled():
        result = await asyncio.wait_for(handle.result(), 30)
    assert (result.status, result.breached, result.escalations) == ("resolved", True, 1), result
    return [("case_sla_breach_told_on_retry", handle)]


async def _case_sla_breach_recorded_by_case(e) -> list:
    """An agent claims a case after its first-response deadline, before the clock's timer fired: the
    case records the breach, and the clock tells the waiting journey at once (breach-recorded-by-case),
    escalating nothing, then waits for the resolution."""
    await make_team(e.sessions, "tardy-desk")
    agent = await make_agent(e.sessions, "tod", "tardy-desk")
    customer = await e.customer("tess")
    async with transaction(e.sessions) as session:
        case, _ = await cases.open_case(
            session, cases.OpenCase(customer_id=customer, reason="late answer", team="tardy-desk")
        )
    handle = await e.client.start_workflow(
        CaseSlaWorkflow.run,
        CaseSlaInput(
            case.id, case.first_response_due.isoformat(), case.resolution_due.isoformat(), "journey/t"
        ),
        id=sla_workflow_id(case.id),
        task_queue=e.task_queue,
        start_signal=CASE_CHANGED_SIGNAL,
        start_signal_args=[CaseState(case.revision, "open", False)],
    )
    past = utcnow() - timedelta(minutes=1)  # the deadline passed; the clock's timer has not fired
    async with transaction(e.sessions) as session:
        await session.execute(
            update(Case).where(Case.id == case.id).values(first_response_due=past, due_at=past)
        )
    actor = cases.Actor(agent["id"], ["tardy-desk"])
    async with transaction(e.sessions) as session:
        await cases.claim(session, actor, case.id)
    async with e.sessions() as session:
        stored = await session.get(Case, case.id)
    await handle.signal(CASE_CHANGED_SIGNAL, CaseState(stored.revision, stored.status, True, None, True))
    await wait_for(lambda: _has(handle, "signal_external_workflow_execution_initiated_event_attributes"))
    async with transaction(e.sessions) as session:
        await cases.resolve(session, e.settings, actor, case.id, Outcome.solved, "done")
    async with e.sessions() as session:
        stored = await session.get(Case, case.id)
    state = CaseState(stored.revision, stored.status, True, stored.outcome, True)
    await handle.signal(CASE_CHANGED_SIGNAL, state)
    with e.env.auto_time_skipping_disabled():
        result = await asyncio.wait_for(handle.result(), 30)
    assert (result.status, result.breached, result.escalations) == ("resolved", True, 0), result
    return [("case_sla_breach_recorded_by_case", handle)]


async def _has(handle, attributes: str, *, after_activity: bool = False) -> bool:
    """Whether the history has an event of that kind (after the first completed activity)."""
    events = (await handle.fetch_history()).events
    if after_activity:
        done = [i for i, ev in enumerate(events) if ev.HasField("activity_task_completed_event_attributes")]
        events = events[done[0] + 1 :] if done else []
    return any(ev.HasField(attributes) for ev in events)


PATCH_SCENARIOS = (
    _deduct_insufficient,
    _booleans_not_numbers,
    _date_wait_revisit,
    _goal_segment_member,
    _enrolled_by_api,
    _broadcast_resume_during_paused_batch,
    _broadcast_resume_signal_lost,
    _case_sla_heard_late,
    _case_sla_case_gone,
    _case_sla_breach_told_on_retry,
    _case_sla_breach_recorded_by_case,
)
