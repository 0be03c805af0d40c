"""Recording scenarios for the workflow types other than JourneyWorkflow (see record_histories.py).

Each scenario drives its workflow the way production does (the same workflow ids, the real activities,
the case dispatcher for SLA clocks) and returns (history name, workflow handle) pairs to record.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus

from activities.segment_contracts import MaintenanceInput
from domain.broadcasts import service as broadcasts
from domain.broadcasts.schemas import BroadcastIn
from domain.cases import service as cases
from domain.cases.models import Case
from domain.cases.schemas import Outcome
from domain.db import transaction, utcnow
from domain.events import service as events
from domain.events.schemas import TrackCall
from domain.loyalty import service as loyalty
from domain.loyalty.schemas import ProgramConfig
from domain.segments import repository as segment_repository
from domain.segments import service as segments
from domain.segments.schemas import SegmentIn
from runtime.case_dispatcher import CaseDispatcher
from tests.cases.helpers import make_agent, make_team
from tests.conftest import wait_for
from tests.workflows.test_timing_rules import BIRTHDAY
from workflows.anniversaries import AnniversarySweepInput, AnniversarySweepWorkflow
from workflows.broadcast import BroadcastInput, BroadcastWorkflow
from workflows.case_sla import CaseSlaWorkflow, sla_workflow_id
from workflows.loyalty_maintenance import EXPIRY, TIERS, LoyaltyMaintenanceInput, LoyaltyMaintenanceWorkflow
from workflows.segments import SegmentMaintenanceWorkflow


async def _status(handle) -> WorkflowExecutionStatus | None:
    with contextlib.suppress(Exception):
        return (await handle.describe()).status
    return None


async def _finished(handle) -> bool:
    return await _status(handle) == WorkflowExecutionStatus.COMPLETED


async def _outcome(e, handle):
    """The workflow's result once it finished in real time. Awaiting it with time skipping on would let
    the test server jump past the heartbeat timeout of an activity that is still running."""
    await wait_for(lambda: _finished(handle), within=60)
    with e.env.auto_time_skipping_disabled():
        return await handle.result()


async def _start_broadcast(e, spec: BroadcastIn):
    async with transaction(e.sessions) as session:
        row = await broadcasts.create(session, spec)
    return await e.client.start_workflow(
        BroadcastWorkflow.run,
        BroadcastInput(
            broadcast_id=row.id,
            send_at=row.send_at.isoformat() if row.send_at else None,
            local_time=row.local_send_at is not None,
        ),
        id=broadcasts.workflow_id(row.id),
        task_queue=e.task_queue,
    )


async def _steer(e, handle, broadcast_id: str, action: str) -> None:
    """What the API does: the database records the marketer's wish, then the workflow is signalled."""
    async with transaction(e.sessions) as session:
        await broadcasts.change(session, broadcast_id, action)
    await handle.signal(action)


async def _broadcast(e) -> list:
    await e.template("sale", "A sale for {{ traits.name }}")
    shoppers = [await e.customer(f"shopper{i}") for i in range(12)]
    # Rate-limited batches of four take a second each: the pause lands between two of them.
    handle = await _start_broadcast(
        e,
        BroadcastIn(
            id="spring-sale",
            name="Spring sale",
            template_id="sale",
            audience={"kind": "customers", "customer_ids": shoppers},
            batch_size=4,
            rate_per_second=4,
        ),
    )
    await wait_for(lambda: _mail_for(e, "A sale for", 1))
    await _steer(e, handle, "spring-sale", "pause")

    async def paused() -> bool:
        return (await handle.query(BroadcastWorkflow.progress)).status == "paused"

    await wait_for(paused)
    await _steer(e, handle, "spring-sale", "resume")
    result = await _outcome(e, handle)
    assert (result.status, result.sent) == ("completed", 12), result

    # 9:00 tomorrow in each recipient's timezone: planned slots, then one durable timer per slot.
    travellers = [
        await e.customer("kenji", timezone="Asia/Tokyo"),
        await e.customer("lima", timezone="America/Lima"),
    ]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    local = await _start_broadcast(
        e,
        BroadcastIn(
            id="good-morning",
            name="Good morning",
            template_id="sale",
            audience={"kind": "customers", "customer_ids": travellers},
            local_send_at=datetime(tomorrow.year, tomorrow.month, tomorrow.day, 9, 0),
        ),
    )
    # Past 9:00 in Lima, the later of the two: both slot timers fire, then the batches run.
    lima_nine = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 9, 0, tzinfo=ZoneInfo("America/Lima"))
    await wait_for(lambda: _planned(local))
    await e.env.sleep(lima_nine - await e.env.get_current_time() + timedelta(minutes=1))
    result = await _outcome(e, local)
    assert (result.status, result.sent, len(result.slots)) == ("completed", 2, 2), result
    return [("broadcast_paused_and_resumed", handle), ("broadcast_local_time", local)]


async def _planned(handle) -> bool:
    return len((await handle.query(BroadcastWorkflow.progress)).slots) == 2


async def _mail_for(e, subject: str, at_least: int) -> bool:
    return sum(m["subject"].startswith(subject) for m in e.mailbox()) >= at_least


COMPLAINT = {
    "nodes": [
        {"id": "start", "type": "entry", "event": "Complained", "next": "esc"},
        {
            "id": "esc",
            "type": "escalate",
            "subject": "Complaint",
            "team": "desk",
            "sla": "3d",
            "resolved_next": "done",
            "breached_next": "done",
        },
        {"id": "done", "type": "exit"},
    ]
}


async def _case_of(e, customer_id: int) -> Case | None:
    async with e.sessions() as session:
        return await session.scalar(select(Case).where(Case.customer_id == customer_id))


async def _sla_clock(e, customer_id: int):
    case = await wait_for(lambda: _case_of(e, customer_id))
    clock = e.client.get_workflow_handle_for(CaseSlaWorkflow.run, sla_workflow_id(case.id))
    await wait_for(lambda: _running(clock))
    return case, clock


async def _running(handle) -> bool:
    return await _status(handle) == WorkflowExecutionStatus.RUNNING


async def _case_sla(e) -> list:
    """Two complaints escalated by a journey: one misses its first-response target and is escalated to
    the supervisors, who resolve it later; the other is claimed and resolved in time."""
    await make_team(e.sessions, "leads")
    await make_team(e.sessions, "desk", supervisor="leads")
    agent = await make_agent(e.sessions, "ann", "desk")
    lead = await make_agent(e.sessions, "sue", "leads")
    await e.journey("complaints", COMPLAINT)
    stop = asyncio.Event()
    dispatcher = CaseDispatcher(e.client, e.sessions, task_queue=e.task_queue, poll_seconds=0.05)
    dispatching = asyncio.create_task(dispatcher.run(stop))
    try:
        vip = await e.customer("vera", value_tier="major")  # high priority: first response within 1h
        await e.track("vera", "Complained")
        case, breached = await _sla_clock(e, vip)
        await e.env.sleep(timedelta(hours=2))
        await wait_for(lambda: _finished(e.handle("complaints", vip)))
        async with transaction(e.sessions) as session:
            actor = cases.Actor(lead["id"], ["leads"])
            assert (await cases.claim_next(session, actor)).case.id == case.id
            await cases.resolve(session, e.settings, actor, case.id, Outcome.compensated, "voucher sent")
        result = await _outcome(e, breached)
        assert (result.status, result.breached, result.escalations) == ("resolved", True, 1), result

        walt = await e.customer("walt", value_tier="ordinary")
        await e.track("walt", "Complained")
        case, in_time = await _sla_clock(e, walt)
        actor = cases.Actor(agent["id"], ["desk"])
        async with transaction(e.sessions) as session:
            await cases.claim(session, actor, case.id)
        await wait_for(lambda: _claimed(in_time))
        async with transaction(e.sessions) as session:
            await cases.resolve(session, e.settings, actor, case.id, Outcome.solved, "refund issued")
        result = await _outcome(e, in_time)
        assert (result.status, result.outcome, result.breached) == ("resolved", "solved", False), result
    finally:
        stop.set()
        await dispatching
    return [("case_sla_breached_then_resolved", breached), ("case_sla_resolved_in_time", in_time)]


async def _claimed(clock) -> bool:
    state = await clock.query(CaseSlaWorkflow.state)
    return state is not None and state.first_responded


async def _loyalty_maintenance(e) -> list:
    """A year on, one pass warns about the points about to go, expires the lapsed ones and lowers the
    tier their loss takes the customer out of."""
    start = await e.env.get_current_time()
    async with transaction(e.sessions) as session:
        config = {
            "tiers": [{"name": "member", "threshold": 0}, {"name": "silver", "threshold": 100}],
            "expiry_months": 12,
        }
        await loyalty.put_program(session, ProgramConfig.model_validate(config), start)
    olga = await e.customer("olga")
    async with transaction(e.sessions) as session:
        await loyalty.award(session, olga, "first-order", 150, "first order", start)
        await loyalty.award(session, olga, "review", 20, "review", start + timedelta(days=20))
    await e.env.sleep(timedelta(days=370))
    handle = await e.client.start_workflow(
        LoyaltyMaintenanceWorkflow.run,
        LoyaltyMaintenanceInput(tasks=[EXPIRY, TIERS]),
        id="loyalty/loyalty-expiry",
        task_queue=e.task_queue,
    )
    result = await _outcome(e, handle)
    assert (result.warned, result.expired, result.tier_changes) == (1, 1, 1), result
    return [("loyalty_maintenance_expiry_and_tiers", handle)]


async def _segment_maintenance(e) -> list:
    """The window-edge pass moves out a customer whose only order left the 30-day window; the scores
    pass computes value tiers and RFM."""
    now = utcnow()
    async with transaction(e.sessions) as session:
        for user, age in (("wanda", timedelta(days=30, seconds=-2)), ("xavi", timedelta(days=3))):
            call = TrackCall(
                userId=user, event="Order Completed", properties={"revenue": 5}, timestamp=now - age
            )
            await events.ingest(session, [call], source_key_id=None)
        rule = {"event": "Order Completed", "within_days": 30}
        await segments.create(session, SegmentIn(id="recent", name="Recent buyers", rule=rule), now=now)
        (await segment_repository.state(session, segments.WINDOW_EDGES)).ran_at = now
    await asyncio.sleep(max(0.0, (now + timedelta(seconds=2.5) - utcnow()).total_seconds()))
    recorded = []
    for task in ("window_edges", "customer_scores"):
        handle = await e.client.start_workflow(
            SegmentMaintenanceWorkflow.run,
            MaintenanceInput(task=task),
            id=f"segments/{task}",
            task_queue=e.task_queue,
        )
        result = await _outcome(e, handle)
        assert result.customers > 0, result
        recorded.append((f"segment_maintenance_{task}", handle))
    return recorded


async def _anniversary_sweep(e) -> list:
    """The scheduled sweep enrolls two customers whose birthday is tomorrow, in two timezones."""
    await e.template("birthday", "Happy birthday, {{ traits.name }}!")
    await e.journey("birthday", BIRTHDAY)
    born = (datetime.now(UTC) + timedelta(days=1)).date().replace(year=1990).isoformat()
    await e.customer("yuki", birthday=born, timezone="Asia/Tokyo")
    await e.customer("zoe", birthday=born, timezone="America/New_York")
    handle = await e.client.start_workflow(
        AnniversarySweepWorkflow.run,
        AnniversarySweepInput(),
        id="anniversaries/sweep",
        task_queue=e.task_queue,
    )
    result = await _outcome(e, handle)
    assert result.started == 2, result
    return [("anniversary_sweep", handle)]


NON_JOURNEY_SCENARIOS = (
    _broadcast,
    _case_sla,
    _loyalty_maintenance,
    _segment_maintenance,
    _anniversary_sweep,
)
