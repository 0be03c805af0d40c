"""The birthday sweep runs from a Temporal Schedule the worker creates when it starts: a customer whose
birthday is due is enrolled by the scheduled pass, once, however often the worker starts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.service import RPCError

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.email import service as email
from domain.email.schemas import TemplateIn
from domain.journeys import service as journeys
from domain.journeys.schemas import JourneyIn
from runtime.anniversary_schedule import SCHEDULE_ID, ensure_schedule
from runtime.worker import run_worker
from tests.conftest import wait_for
from tests.temporal_env import local
from tests.workflows.test_timing_rules import BIRTHDAY
from workflows.anniversaries import AnniversarySweepOutput


async def _customer(sessions, user_id: str, birthday: str) -> int:
    async with transaction(sessions) as session:
        row = Customer(
            user_id=user_id,
            email=f"{user_id}@example.com",
            timezone="Europe/Berlin",
            traits={"name": user_id.title(), "birthday": birthday},
            first_seen_at=utcnow(),
            last_seen_at=utcnow(),
        )
        session.add(row)
        await session.flush()
        return row.id


async def _enrolled(sessions) -> list[tuple[int, str]]:
    async with transaction(sessions) as session:
        return sorted((e.customer_id, e.workflow_id) for e in await journeys.enrollments(session, "birthday"))


async def _latest_pass(client, after: int = 0) -> AnniversarySweepOutput | None:
    """The result of the schedule's newest pass once it finished, if it is the ``after``+1-th."""
    try:
        actions = (await client.get_schedule_handle(SCHEDULE_ID).describe()).info.recent_actions
    except RPCError:  # the worker has not created it yet
        return None
    if len(actions) <= after:
        return None
    handle = client.get_workflow_handle(actions[-1].action.workflow_id, result_type=AnniversarySweepOutput)
    return await handle.result()


async def test_the_scheduled_sweep_enrolls_customers_whose_birthday_is_due(sessions, settings):
    async with transaction(sessions) as session:
        await email.create_template(
            session, TemplateIn(id="birthday", name="Birthday", subject="Happy birthday", html="<p>!</p>")
        )
        await journeys.create(session, JourneyIn(id="birthday", name="Birthday", definition=BIRTHDAY))
        await journeys.publish(session, "birthday")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    born = tomorrow.replace(year=1990).isoformat()
    far_off = (tomorrow + timedelta(days=100)).replace(year=1985).isoformat()
    ada = await _customer(sessions, "ada", born)
    await _customer(sessions, "otto", far_off)  # not due for months: left alone
    settings = settings.model_copy(
        update={"temporal_task_queue": f"birthdays-{uuid.uuid4().hex[:8]}", "anniversary_sweep_seconds": 7200}
    )

    env = await local()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(env.client, settings, sessions, stop))
    try:
        # The worker's start created the schedule and ran its first pass at once.
        first = await wait_for(lambda: _latest_pass(env.client))
        assert first.started == 1
        year = str(tomorrow.year)
        assert await _enrolled(sessions) == [(ada, journeys.workflow_id_for("birthday", ada, year))]
        described = await env.client.get_schedule_handle(SCHEDULE_ID).describe()
        assert described.schedule.spec.intervals[0].every == timedelta(hours=2)

        # Another worker start updates the schedule rather than adding one.
        assert await ensure_schedule(env.client, settings) is False

        async def listed_once() -> bool:  # the list is eventually consistent
            return [s.id async for s in await env.client.list_schedules()].count(SCHEDULE_ID) == 1

        await wait_for(listed_once)

        # A customer whose birthday becomes due is enrolled by the next pass; Ada is not enrolled again.
        bea = await _customer(sessions, "bea", born)
        await env.client.get_schedule_handle(SCHEDULE_ID).trigger()
        second = await wait_for(lambda: _latest_pass(env.client, after=1))
        assert second.started == 1
        assert [c for c, _ in await _enrolled(sessions)] == sorted([ada, bea])
    finally:
        stop.set()
        await worker
        await env.shutdown()
