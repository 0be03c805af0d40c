"""Segment maintenance: the window-edge pass and the value tier / RFM recompute."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.segment_contracts import (
    CUSTOMER_IN_SEGMENT,
    RECOMPUTE_CUSTOMER_SCORES,
    REFRESH_WINDOW_EDGES,
    MaintenanceResult,
    SegmentCheck,
)
from config.settings import Settings
from domain.db import transaction
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
            return await segments.matches(session, check.segment_id, check.customer_id)
