"""The broadcast start sweep: a broadcast the API stored as starting and then stopped before starting
its workflow is started by a worker (once, whatever the number of workers), and sent; one whose create
is still under way, or that was cancelled, is left alone."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from sqlalchemy import update

from domain.broadcasts import service as broadcasts
from domain.broadcasts.models import Broadcast
from domain.broadcasts.schemas import BroadcastIn
from domain.db import transaction, utcnow
from runtime.broadcast_start import BroadcastStartSweep
from runtime.worker import run_worker
from tests.conftest import wait_for
from tests.email.helpers import add_customer, add_template
from tests.temporal_env import gone, result, time_skipping
from workflows.broadcast import BroadcastInput, BroadcastProgress, BroadcastWorkflow

BODY = {"id": "spring", "name": "Spring", "template_id": "welcome", "audience": {"kind": "all"}}
LATER = timedelta(minutes=3)  # past the create's grace


async def _left_starting(sessions, *, age: timedelta = timedelta(0), **spec) -> None:
    """What the API leaves when it stops between storing the broadcast and starting its workflow."""
    await add_template(sessions)
    await add_customer(sessions, email="ann@example.com", traits={})
    async with transaction(sessions) as session:
        await broadcasts.create(session, BroadcastIn.model_validate(BODY | spec))
        await session.execute(
            update(Broadcast).where(Broadcast.id == "spring").values(created_at=utcnow() - age)
        )


async def _started(handle) -> bool:
    return not await gone(handle)


async def _row(sessions) -> Broadcast:
    async with sessions() as session:
        return await broadcasts.get(session, "spring")


async def test_a_broadcast_left_starting_is_started_by_the_worker_and_sent_once(sessions, settings, capture):
    await _left_starting(sessions, age=LATER)
    env = await time_skipping()
    stop = asyncio.Event()
    quick = settings.model_copy(update={"broadcast_start_sweep_seconds": 0.1})
    worker = asyncio.create_task(run_worker(env.client, quick, sessions, stop, schedules=False))
    try:
        handle = env.client.get_workflow_handle("broadcast/spring")
        await wait_for(lambda: _started(handle))
        # several passes, once the workflow ran: it is not started again
        progress = await asyncio.wait_for(result(env, "broadcast/spring", BroadcastProgress), 60)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await env.shutdown()
    assert (progress.status, progress.sent) == ("completed", 1)
    messages = await capture.wait_for_count(1)
    assert [m["envelope_to"] for m in messages] == [["ann@example.com"]]
    assert (capture.handler.received, (await _row(sessions)).status) == (1, "completed")


async def test_a_broadcast_whose_create_is_under_way_is_left_to_it(sessions, settings, temporal):
    await _left_starting(sessions, age=timedelta(seconds=30))  # the API is still at Temporal
    sweep = BroadcastStartSweep(temporal.client, sessions, task_queue=settings.temporal_task_queue)

    assert await sweep.sweep_once() == 0

    assert await gone(temporal.client.get_workflow_handle("broadcast/spring"))
    assert (await _row(sessions)).status == "starting"
    async with transaction(sessions) as session:  # so its create may still withdraw it
        assert await broadcasts.withdraw(session, "spring")


async def test_a_create_that_outlasts_its_grace_leaves_its_broadcast_to_the_sweep(sessions):
    await _left_starting(sessions)
    async with transaction(sessions) as session:  # its start failed, but the sweep may have started it
        assert not await broadcasts.withdraw(session, "spring", now=utcnow() + LATER)
    assert (await _row(sessions)).status == "starting"


async def test_two_sweeps_at_once_start_a_broadcast_once_and_send_it_once(
    sessions, settings, capture, temporal
):
    await _left_starting(sessions)
    both_read = asyncio.Barrier(2)  # each sweep has read the row as starting before either starts it
    starts = _CountingStarts(temporal.client, before=both_read.wait)
    sweeps = [BroadcastStartSweep(starts, sessions, task_queue=settings.temporal_task_queue) for _ in "ab"]

    marked = await asyncio.gather(*(s.sweep_once(now=utcnow() + LATER) for s in sweeps))

    assert (sorted(marked), starts.started, starts.refused) == ([0, 1], 1, 1)
    assert (await _row(sessions)).status in ("scheduled", "running", "completed")
    progress = await result(temporal, "broadcast/spring", BroadcastProgress)
    assert (progress.status, progress.sent) == ("completed", 1)
    await capture.wait_for_count(1)
    starts.before = None
    assert await sweeps[0].sweep_once(now=utcnow() + LATER) == 0
    assert (starts.started, capture.handler.received) == (1, 1)


async def test_a_cancelled_broadcast_left_starting_is_not_started(sessions, settings, temporal):
    await _left_starting(sessions)
    async with transaction(sessions) as session:
        await broadcasts.change(session, "spring", "cancel")
    sweep = BroadcastStartSweep(temporal.client, sessions, task_queue=settings.temporal_task_queue)

    assert await sweep.sweep_once(now=utcnow() + LATER) == 0

    assert await gone(temporal.client.get_workflow_handle("broadcast/spring"))


async def test_a_broadcast_cancelled_while_the_sweep_starts_it_sends_nothing_and_its_workflow_ends(
    sessions, settings, capture, temporal
):
    # planned for tomorrow: without being told, its workflow would wait until then to find it cancelled
    await _left_starting(sessions, send_at=(utcnow() + timedelta(days=1)).isoformat())

    async def cancel() -> None:  # the marketer, between the sweep's read and its start
        async with transaction(sessions) as session:
            await broadcasts.change(session, "spring", "cancel")

    sweep = BroadcastStartSweep(
        _CountingStarts(temporal.client, before=cancel), sessions, task_queue=settings.temporal_task_queue
    )

    assert await sweep.sweep_once(now=utcnow() + LATER) == 0

    handle = temporal.client.get_workflow_handle("broadcast/spring", result_type=BroadcastProgress)
    with temporal.auto_time_skipping_disabled():
        progress = await asyncio.wait_for(handle.result(), 30)
    assert (progress.status, progress.sent) == ("cancelled", 0)
    assert (await _row(sessions)).status == "cancelled" and capture.handler.received == 0


async def test_a_broadcast_whose_id_an_ended_workflow_kept_is_failed_saying_so(sessions, settings, temporal):
    # An earlier broadcast "spring" was taken back after its start failed as the API saw it; its
    # workflow ran, found no broadcast, and ended. A new "spring" was then stored, and the API stopped.
    ended = await temporal.client.start_workflow(
        BroadcastWorkflow.run,
        BroadcastInput(broadcast_id="spring"),
        id="broadcast/spring",
        task_queue=settings.temporal_task_queue,
    )
    assert (await ended.result()).status == "cancelled"
    await _left_starting(sessions)
    sweep = BroadcastStartSweep(temporal.client, sessions, task_queue=settings.temporal_task_queue)

    assert await sweep.sweep_once(now=utcnow() + LATER) == 0

    row = await _row(sessions)
    assert row.status == "failed" and "create it again under another id" in row.error


class _CountingStarts:
    """The worker's Temporal client, counting the broadcast starts it made and was refused; ``before``
    runs ahead of each start (what happened meanwhile)."""

    def __init__(self, client, *, before=None) -> None:
        self._client, self.before = client, before
        self.started = self.refused = 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    async def start_workflow(self, *args, **kwargs):
        if self.before is not None:
            await self.before()
        try:
            handle = await self._client.start_workflow(*args, **kwargs)
        except Exception:
            self.refused += 1
            raise
        self.started += 1
        return handle
