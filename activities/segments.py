"""Segment maintenance: the window-edge pass and the value tier / RFM recompute."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import EVALUATE_SEGMENT, SegmentMembership, SegmentMembershipRequest
from activities.segment_contracts import (
    CUSTOMER_IN_SEGMENT,
    RECOMPUTE_CUSTOMER_SCORES,
    REFRESH_WINDOW_EDGES,
    MaintenanceResult,
    SegmentCheck,
)
from config.settings import Settings
from domain.customers import service as customers
from domain.db import transaction
from domain.errors import NotFound
from domain.segments import service as segments


class SegmentActivities:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]):
        self._settings = settings
        self._sessions = sessions

    @activity.defn(name=REFRESH_WINDOW_EDGES)
    async def refresh_window_edges(self) -> MaintenanceResult:
        # One transaction: the pass time advances only with the membership changes it made.
        async with transaction(self._sessions) as session:
            stats = await segments.refresh_window_edges(session)
        return MaintenanceResult("window_edges", stats.customers, stats.entered, stats.exited)

    @activity.defn(name=RECOMPUTE_CUSTOMER_SCORES)
    async def recompute_customer_scores(self) -> MaintenanceResult:
        async with transaction(self._sessions) as session:
            stats = await segments.recompute_scores(
                session, self._settings.purchase_event, self._settings.revenue_property
            )
        return MaintenanceResult("customer_scores", stats.customers, stats.entered, stats.exited)

    @activity.defn(name=CUSTOMER_IN_SEGMENT)
    async def customer_in_segment(self, check: SegmentCheck) -> bool:
        """Live answer from the customer's current data, not the last stored membership."""
        async with self._sessions() as session:
            customer_id = await customers.current_id(session, check.customer_id)
            return customer_id is not None and await segments.matches(session, check.segment_id, customer_id)

    @activity.defn(name=EVALUATE_SEGMENT)
    async def evaluate_segment(self, req: SegmentMembershipRequest) -> SegmentMembership:
        """Which of these segments the customer is in right now (journey branches)."""
        async with self._sessions() as session:
            customer_id = await customers.current_id(session, req.customer_id)
            if customer_id is None:  # erased: in no segment
                return SegmentMembership(member_of=[])
            try:
                member_of = [s for s in req.segment_ids if await segments.matches(session, s, customer_id)]
            except NotFound as exc:
                # A segment deleted after the journey was published: retrying cannot bring it back.
                raise ApplicationError(str(exc.detail), type="UnknownSegment", non_retryable=True) from exc
        return SegmentMembership(member_of=member_of)
