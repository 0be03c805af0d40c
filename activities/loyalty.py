"""Loyalty activities: journey steps (award, deduct, status) and the scheduled expiry and tier passes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

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
from activities.enrollment import calling_workflow_id, refuse_if_superseded
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
        entry_id=moved.entry.id if moved.entry else None,
        replayed=moved.replayed,
    )


T = TypeVar("T")


def _unknown(exc: NotFound) -> ApplicationError:
    return ApplicationError(str(exc.detail), type=UNKNOWN_CUSTOMER, non_retryable=True)


class LoyaltyActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], writes: GroupCommit | None = None):
        self._sessions = sessions
        self._writes = writes or GroupCommit(sessions)

    async def _for_current(self, customer_id: int, attempt: Callable[[int], Awaitable[T]]) -> T:
        """``attempt(customer_id)``; when that customer is gone, once more for the profile it was merged
        into (a journey started for a visitor who has logged in since). Looked up only on a miss."""
        try:
            return await attempt(customer_id)
        except NotFound as exc:
            async with self._sessions() as session:
                current = await customers.current_id(session, customer_id)
            if current is None or current == customer_id:
                raise _unknown(exc) from exc
        try:
            return await attempt(current)
        except NotFound as exc:
            raise _unknown(exc) from exc

    @activity.defn(name=AWARD_POINTS)
    async def award_points(self, req: PointsRequest) -> PointsResult:
        now = _checked(req)
        enrollment = calling_workflow_id()  # here: the group-committed write runs in another task

        async def write(session: AsyncSession, customer_id: int) -> MovementOut:
            await refuse_if_superseded(session, enrollment, req.customer_id)
            return await loyalty.award(
                session,
                customer_id,
                req.idempotency_key,
                req.points,
                _reason(req),
                now,
                enrolled_as=req.customer_id,
            )

        async def award(customer_id: int) -> MovementOut:
            # Concurrent enrollments' awards share one commit; each still waits for its own.
            return await self._writes.run(lambda session: write(session, customer_id))

        return _result(await self._for_current(req.customer_id, award))

    @activity.defn(name=DEDUCT_POINTS)
    async def deduct_points(self, req: PointsRequest) -> PointsResult:
        """Takes the points, or reports ``insufficient`` (taking nothing) so the journey can branch."""
        now = _checked(req)

        async def deduct(customer_id: int) -> MovementOut:
            async with transaction(self._sessions) as session:
                await refuse_if_superseded(session, calling_workflow_id(), req.customer_id)
                return await loyalty.deduct(
                    session,
                    customer_id,
                    req.idempotency_key,
                    req.points,
                    _reason(req),
                    now,
                    enrolled_as=req.customer_id,
                )

        try:
            moved = await self._for_current(req.customer_id, deduct)
        except loyalty.InsufficientPoints:
            status = await self.loyalty_status(LoyaltyStatusRequest(req.customer_id))
            return PointsResult(balance=status.balance, tier=status.tier, status="insufficient")
        return _result(moved)

    @activity.defn(name=LOYALTY_STATUS)
    async def loyalty_status(self, req: LoyaltyStatusRequest) -> LoyaltyStatusResult:
        async def status(customer_id: int) -> loyalty.Status:
            async with transaction(self._sessions) as session:
                return await loyalty.status(session, customer_id)

        found = await self._for_current(req.customer_id, status)
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
