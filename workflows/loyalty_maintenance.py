"""LoyaltyMaintenanceWorkflow: one pass of expiry warnings, expiry and tier re-evaluation.

Temporal Schedules start it (daily by default, see runtime/loyalty_schedules.py). The pass treats the
workflow's start time as "now", and every step is idempotent, so a pass that runs twice, overlaps a
retry or catches up after downtime changes nothing the first did not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        LOYALTY_EXPIRE_POINTS,
        LOYALTY_REEVALUATE_TIERS,
        LOYALTY_WARN_EXPIRING,
        LoyaltyMaintenanceRequest,
        LoyaltyMaintenanceResult,
    )

EXPIRY = "expiry"
TIERS = "tiers"

RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5))


@dataclass
class LoyaltyMaintenanceInput:
    tasks: list[str] = field(default_factory=lambda: [EXPIRY, TIERS])
    page_size: int = 500


@dataclass
class LoyaltyMaintenanceOutput:
    as_of: str
    warned: int = 0
    expired: int = 0
    tier_changes: int = 0


@workflow.defn(name="LoyaltyMaintenanceWorkflow")
class LoyaltyMaintenanceWorkflow:
    @workflow.run
    async def run(self, inp: LoyaltyMaintenanceInput) -> LoyaltyMaintenanceOutput:
        as_of = workflow.now().isoformat()
        out = LoyaltyMaintenanceOutput(as_of=as_of)
        req = LoyaltyMaintenanceRequest(as_of=as_of, page_size=inp.page_size)
        if EXPIRY in inp.tasks:
            # Warn first: lots that are already due get their warning before they go.
            out.warned = (await self._step(LOYALTY_WARN_EXPIRING, req)).count
            out.expired = (await self._step(LOYALTY_EXPIRE_POINTS, req)).count
        if TIERS in inp.tasks:
            out.tier_changes = (await self._step(LOYALTY_REEVALUATE_TIERS, req)).count
        return out

    async def _step(self, name: str, req: LoyaltyMaintenanceRequest) -> LoyaltyMaintenanceResult:
        return await workflow.execute_activity(
            name,
            req,
            activity_id=name,
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RETRY,
            result_type=LoyaltyMaintenanceResult,
        )
