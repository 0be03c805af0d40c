"""Segment maintenance runs from Temporal Schedules: a customer whose window expires leaves on the next
scheduled pass; value tiers are recomputed by the other schedule."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.events import service as events
from domain.events.schemas import TrackCall
from domain.segments import repository
from domain.segments import service as segments
from domain.segments.models import SegmentMembership
from domain.segments.schemas import SegmentIn
from runtime.segment_schedules import ensure_schedules
from runtime.worker import build_worker
from tests import temporal_env
from tests.conftest import wait_for


async def _member_ids(sessions) -> set[str]:
    async with sessions() as session:
        rows = await session.execute(
            select(Customer.user_id)
            .join(SegmentMembership, SegmentMembership.customer_id == Customer.id)
            .where(SegmentMembership.exited_at.is_(None))
        )
        return {row[0] for row in rows}


async def test_the_scheduled_pass_moves_expired_customers_out(settings, sessions):
    now = utcnow()
    async with transaction(sessions) as session:
        # Ada's only order leaves the 30-day window two seconds from now; Bob's stays inside.
        for user, age in (("ada", timedelta(days=30, seconds=-2)), ("bob", timedelta(days=3))):
            call = TrackCall(
                userId=user, event="Order Completed", properties={"revenue": 5}, timestamp=now - age
            )
            await events.ingest(session, [call], source_key_id=None)
        rule = {"event": "Order Completed", "within_days": 30}
        await segments.create(session, SegmentIn(id="recent", name="Recent buyers", rule=rule), now=now)
        (await repository.state(session, segments.WINDOW_EDGES)).ran_at = now
    assert await _member_ids(sessions) == {"ada", "bob"}

    env = await temporal_env.local()
    try:
        settings = settings.model_copy(
            update={"segment_window_edge_seconds": 3600, "customer_scores_seconds": 3600}
        )
        assert sorted(await ensure_schedules(env.client, settings)) == [
            "segments-customer-scores",
            "segments-window-edges",
        ]
        assert await ensure_schedules(env.client, settings) == []  # idempotent on every worker start
        async with build_worker(env.client, settings, sessions):
            await wait_for(lambda: _past(now + timedelta(seconds=2)), within=5)
            await env.client.get_schedule_handle("segments-window-edges").trigger()
            await wait_for(lambda: _member_ids_without(sessions, "ada"), within=30)
            assert await _member_ids(sessions) == {"bob"}

            await env.client.get_schedule_handle("segments-customer-scores").trigger()

            async def scored():
                async with sessions() as session:
                    bob = await session.scalar(select(Customer.id).where(Customer.user_id == "bob"))
                    return await segments.scores_for(session, bob)

            bob = await wait_for(scored, within=30)
            assert (bob.ltv, bob.order_count) == (5.0, 1)
    finally:
        await env.shutdown()


async def _past(moment) -> bool:
    return utcnow() > moment


async def _member_ids_without(sessions, user) -> bool:
    return user not in await _member_ids(sessions)
