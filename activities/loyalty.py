"""Loyalty activities: journey steps (award, deduct, status) and the scheduled expiry and tier passes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    AWARD_POINTS,
    DEDUCT_POINTS,
    INVALID_POINTS,
    LOYALTY_EXPIRE_POINTS,
    LOYALTY_REEVALUATE_TIERS,
    LOYALTY_STATUS,
    LOYALTY_WARN_EXPIRING,
    UNKNOWN_CUSTOMER,
    LoyaltyMaintenanceRequest,
    LoyaltyMaintenanceResult,
    LoyaltyStatusRequest,
    LoyaltyStatusResult,
    PointsRequest,
    PointsResult,
)
from activities.group_commit import GroupCommit
from domain.customers import service as customers
from domain.db import transaction, utcnow
from domain.errors import NotFound
from domain.loyalty import maintenance
from domain.loyalty import service as loyalty
from domain.loyalty.schemas import MAX_POINTS, MovementOut


def _checked(req: PointsRequest) -> datetime:
    if isinstance(req.points, bool) or not isinstance(req.points, int) or not 0 < req.points <= MAX_POINTS:
        raise ApplicationError(
            f"points must be a whole number from 1 to {MAX_POINTS}, got {req.points!r}",
            type=INVALID_POINTS,
            non_retryable=True,
        )
    if not req.idempotency_key:
        raise ApplicationError("idempotency_key is required", type=INVALID_POINTS, non_retryable=True)
    if req.occurred_at is None:
        return utcnow()
    return datetime.fromisoformat(req.occurred_at)


def _reason(req: PointsRequest) -> str:
    if req.reason:
        return req.reason
    return f"journey {req.journey_id}, step {req.node_id}" if req.journey_id else "journey step"


def _result(moved: MovementOut) -> PointsResult:
    return PointsResult(
        balance=moved.balance,
        tier=moved.tier,
        status="applied",
        entry_id=moved.entry.id,
        replayed=moved.replayed,
    )


async def _current(session: AsyncSession, customer_id: int) -> int:
    """The profile a journey's customer id names now (merges followed); NotFound once erased."""
    current = await customers.current_id(session, customer_id)
    if current is None:
        raise NotFound(f"no customer {customer_id}")
    return current


def _unknown(exc: NotFound) -> ApplicationError:
    return ApplicationError(str(exc.detail), type=UNKNOWN_CUSTOMER, non_retryable=True)


class LoyaltyActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], writes: GroupCommit | None = None):
        self._sessions = sessions
        self._writes = writes or GroupCommit(sessions)

    @activity.defn(name=AWARD_POINTS)
    async def award_points(self, req: PointsRequest) -> PointsResult:
        now = _checked(req)
        try:

            async def award(session: AsyncSession):
                customer_id = await _current(session, req.customer_id)
                return await loyalty.award(
                    session, customer_id, req.idempotency_key, req.points, _reason(req), now
                )

            # Concurrent enrollments' awards share one commit; each still waits for its own.
            moved = await self._writes.run(award)
        except NotFound as exc:
            raise _unknown(exc) from exc
        return _result(moved)

    @activity.defn(name=DEDUCT_POINTS)
    async def deduct_points(self, req: PointsRequest) -> PointsResult:
        """Takes the points, or reports ``insufficient`` (taking nothing) so the journey can branch."""
        now = _checked(req)
        try:
            async with transaction(self._sessions) as session:
                customer_id = await _current(session, req.customer_id)
                moved = await loyalty.deduct(
                    session, customer_id, req.idempotency_key, req.points, _reason(req), now
                )
        except loyalty.InsufficientPoints:
            status = await self.loyalty_status(LoyaltyStatusRequest(req.customer_id))
            return PointsResult(balance=status.balance, tier=status.tier, status="insufficient")
        except NotFound as exc:
            raise _unknown(exc) from exc
        return _result(moved)

    @activity.defn(name=LOYALTY_STATUS)
    async def loyalty_status(self, req: LoyaltyStatusRequest) -> LoyaltyStatusResult:
        try:
            async with transaction(self._sessions) as session:
                found = await loyalty.status(session, await _current(session, req.customer_id))
        except NotFound as exc:
            raise _unknown(exc) from exc
        return LoyaltyStatusResult(balance=found.balance, tier=found.tier, tier_points=found.tier_points)

    @activity.defn(name=LOYALTY_WARN_EXPIRING)
    async def warn_expiring(self, req: LoyaltyMaintenanceRequest) -> LoyaltyMaintenanceResult:
        as_of, total = datetime.fromisoformat(req.as_of), 0
        while True:  # each page commits on its own; warned lots drop out of the next page's query
            async with transaction(self._sessions) as session:
                done = await maintenance.warn_expiring(session, as_of, req.page_size)
            total += done
            activity.heartbeat(total)
            if done < req.page_size:
                return LoyaltyMaintenanceResult(total)

    @activity.defn(name=LOYALTY_EXPIRE_POINTS)
    async def expire_points(self, req: LoyaltyMaintenanceRequest) -> LoyaltyMaintenanceResult:
        as_of, total = datetime.fromisoformat(req.as_of), 0
        while True:
            async with transaction(self._sessions) as session:
                expired = await maintenance.expire_due(session, as_of, req.page_size)
            total += expired
            activity.heartbeat(total)
            if expired == 0:
                return LoyaltyMaintenanceResult(total)

    @activity.defn(name=LOYALTY_REEVALUATE_TIERS)
    async def reevaluate_tiers(self, req: LoyaltyMaintenanceRequest) -> LoyaltyMaintenanceResult:
        as_of, total = datetime.fromisoformat(req.as_of), 0
        details = activity.info().heartbeat_details
        after = int(details[0]) if details else 0  # resume where a crashed attempt stopped
        while True:
            async with transaction(self._sessions) as session:
                changed, last = await maintenance.reevaluate_tiers(
                    session, as_of, after_customer_id=after, limit=req.page_size
                )
            total += changed
            if last is None:
                return LoyaltyMaintenanceResult(total)
            after = last
            activity.heartbeat(after)
