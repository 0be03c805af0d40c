"""Loyalty under Temporal: expiry over simulated months, and journey steps retried after a crash."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from activities.contracts import (
    AWARD_POINTS,
    DEDUCT_POINTS,
    LOYALTY_STATUS,
    LoyaltyStatusRequest,
    LoyaltyStatusResult,
    PointsRequest,
    PointsResult,
)

# The sandbox re-imports this module for PointsSteps: what only the test body uses passes through.
with workflow.unsafe.imports_passed_through():
    from activities.loyalty import LoyaltyActivities
    from domain.db import transaction
    from domain.loyalty import service as loyalty
    from domain.loyalty.models import LoyaltyEntry, LoyaltyLot
    from tests.loyalty.helpers import audit, emitted, entries, make_customer, set_program
    from tests.temporal_env import time_skipping
from workflows.loyalty_maintenance import (
    LoyaltyMaintenanceInput,
    LoyaltyMaintenanceOutput,
    LoyaltyMaintenanceWorkflow,
)

QUEUE = "loyalty-test"


async def scheduled_passes(env, every: timedelta, runs: int) -> list[LoyaltyMaintenanceOutput]:
    """Start the maintenance pass at a fixed interval, as the Temporal Schedule does in production
    (the time-skipping test server has no Schedules API). Time jumps between passes only: a pass
    itself runs in real time, as its activities do."""
    outputs = []
    for _ in range(runs):
        await env.sleep(every)
        with env.auto_time_skipping_disabled():
            outputs.append(
                await env.client.execute_workflow(
                    LoyaltyMaintenanceWorkflow.run,
                    LoyaltyMaintenanceInput(),
                    id=f"loyalty/expiry/{uuid.uuid4()}",
                    task_queue=QUEUE,
                )
            )
    return outputs


@dataclass
class Steps:
    customer_id: int
    award: int
    deduct: int


@dataclass
class StepsResult:
    awarded: PointsResult
    deducted: PointsResult
    too_much: PointsResult
    status: LoyaltyStatusResult


@workflow.defn(name="PointsSteps")
class PointsSteps:
    """What a journey does at award_points / deduct_points nodes and a branch on balance."""

    @workflow.run
    async def run(self, steps: Steps) -> StepsResult:
        wid = workflow.info().workflow_id
        retry = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=5)

        async def call(name: str, node: str, points: int) -> PointsResult:
            return await workflow.execute_activity(
                name,
                PointsRequest(
                    idempotency_key=f"{wid}/{node}/1",
                    customer_id=steps.customer_id,
                    points=points,
                    reason=f"journey node {node}",
                    occurred_at=workflow.now().isoformat(),
                ),
                activity_id=f"{node}/1",
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=retry,
                result_type=PointsResult,
            )

        awarded = await call(AWARD_POINTS, "welcome-bonus", steps.award)
        deducted = await call(DEDUCT_POINTS, "buy-perk", steps.deduct)
        too_much = await call(DEDUCT_POINTS, "buy-big-perk", 10_000)
        status = await workflow.execute_activity(
            LOYALTY_STATUS,
            LoyaltyStatusRequest(steps.customer_id),
            start_to_close_timeout=timedelta(seconds=30),
            result_type=LoyaltyStatusResult,
        )
        return StepsResult(awarded, deducted, too_much, status)


async def test_points_expire_after_a_warning_and_newer_points_stay(sessions):
    await set_program(
        sessions,
        {
            "tiers": [{"name": "member", "threshold": 0}, {"name": "silver", "threshold": 100}],
            "tier_window_months": 12,
            "expiry_months": 12,
            "expiry_warning_days": 30,
        },
    )
    customer = await make_customer(sessions, "exp")
    acts = LoyaltyActivities(sessions)
    env = await time_skipping()
    try:
        start = await env.get_current_time()
        async with transaction(sessions) as session:
            old = await loyalty.award(session, customer, "old", 100, "first purchase", start)
        async with Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[LoyaltyMaintenanceWorkflow],
            activities=[acts.warn_expiring, acts.expire_points, acts.reevaluate_tiers],
        ):
            # Six months on, newer points; then weekly passes until 13 months after the first.
            await scheduled_passes(env, timedelta(days=183), 1)
            half_year = await env.get_current_time()
            async with transaction(sessions) as session:
                newer = await loyalty.award(session, customer, "newer", 40, "second purchase", half_year)
            outputs = await scheduled_passes(env, timedelta(days=7), 31)
        end = await env.get_current_time()
    finally:
        await env.shutdown()
    assert end - start >= timedelta(days=395)

    warnings = await emitted(sessions, "Points Expiring Soon")
    assert len(warnings) == 1 and warnings[0].properties["points"] == 100
    expired = [e for e in await entries(sessions, customer) if e.kind == "expire"]
    assert [(e.points, e.lot_entry_id) for e in expired] == [(-100, old.entry.id)]
    # The warning came weeks before the points went, on the pass that first saw them within 30 days.
    assert timedelta(days=21) <= expired[0].created_at - warnings[0].timestamp <= timedelta(days=30)
    assert expired[0].created_at >= old.entry.expires_at
    assert sum(o.warned for o in outputs) == 1 and sum(o.expired for o in outputs) == 1

    async with sessions() as session:
        lot = await session.get(LoyaltyLot, newer.entry.id)
        assert (lot.remaining, lot.warned_at) == (40, None)
        assert len(list(await session.scalars(select(LoyaltyEntry)))) == 3
    state = await audit(sessions, customer)
    assert state.consistent, state.problems
    assert state.stored.balance == 40
    # 100 of the 140 earned left the 12-month window: silver (100) dropped back to member.
    assert state.stored.tier == "member"
    tiers = await emitted(sessions, "Tier Changed")
    assert [(t.properties["from_tier"], t.properties["to_tier"]) for t in tiers] == [
        ("member", "silver"),
        ("silver", "member"),
    ]


async def test_journey_steps_retried_after_a_crash_move_points_once(sessions):
    customer = await make_customer(sessions, "journey")
    acts = LoyaltyActivities(sessions)
    crashed: set[str] = set()

    @activity.defn(name=AWARD_POINTS)
    async def award_then_crash(req: PointsRequest) -> PointsResult:
        # The award commits, then the worker dies before Temporal hears of it: the retry must not
        # award again.
        result = await acts.award_points(req)
        if req.idempotency_key not in crashed:
            crashed.add(req.idempotency_key)
            raise RuntimeError("worker lost after the commit")
        return result

    env = await time_skipping()
    try:
        async with Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[PointsSteps],
            activities=[award_then_crash, acts.deduct_points, acts.loyalty_status],
        ):
            result = await env.client.execute_workflow(
                PointsSteps.run,
                Steps(customer, award=100, deduct=30),
                id=f"j-{uuid.uuid4()}",
                task_queue=QUEUE,
            )
    finally:
        await env.shutdown()

    assert crashed, "the crash was simulated"
    assert result.awarded.status == "applied" and result.awarded.replayed is True
    assert (result.awarded.balance, result.deducted.balance) == (100, 70)
    assert (result.too_much.status, result.too_much.balance) == ("insufficient", 70)
    assert (result.status.balance, result.status.tier) == (70, "member")
    ledger_rows = await entries(sessions, customer)
    assert [(e.kind, e.points, e.source) for e in ledger_rows] == [
        ("earn", 100, "journey"),
        ("redeem", -30, "journey"),
    ]
    assert len(await emitted(sessions, "Points Earned")) == 1
    assert (await audit(sessions, customer)).consistent
