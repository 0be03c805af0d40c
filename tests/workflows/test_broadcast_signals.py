"""The BroadcastWorkflow's pause / resume signals against batches that find the broadcast paused in the
database, with the batch activity stubbed so the test decides what happens in which order."""

from __future__ import annotations

import asyncio
import uuid

from temporalio import activity
from temporalio.worker import Worker

from activities.contracts import (
    FINISH_BROADCAST,
    SEND_BROADCAST_BATCH,
    BroadcastBatchRequest,
    BroadcastBatchResult,
    FinishBroadcastRequest,
)
from workflows.broadcast import BroadcastInput, BroadcastWorkflow

QUEUE = "broadcast-signals"


class StubbedBatches:
    """The first batch holds until released and then reports the broadcast paused (it read the
    database between the pause and the resume); every later batch finds the audience done."""

    def __init__(self) -> None:
        self.first_started = asyncio.Event()
        self.release_first = asyncio.Event()
        self.calls: list[int] = []
        self.finished: list[str] = []

    @activity.defn(name=SEND_BROADCAST_BATCH)
    async def send_batch(self, req: BroadcastBatchRequest) -> BroadcastBatchResult:
        self.calls.append(req.after_id)
        if len(self.calls) == 1:
            self.first_started.set()
            await self.release_first.wait()
            return BroadcastBatchResult(status="paused")
        return BroadcastBatchResult(status="done")

    @activity.defn(name=FINISH_BROADCAST)
    async def finish(self, req: FinishBroadcastRequest) -> None:
        self.finished.append(req.status)


def _worker(env, stubs: StubbedBatches) -> Worker:
    activities = [stubs.send_batch, stubs.finish]
    return Worker(env.client, task_queue=QUEUE, workflows=[BroadcastWorkflow], activities=activities)


async def test_a_resume_handled_while_a_batch_found_the_broadcast_paused_lets_it_finish(env):
    # Pause and resume both reach the workflow while a batch runs that read 'paused' from the
    # database; the database says 'running' again, so the workflow must not stay paused on the
    # batch's word (nothing would resume it, and resuming again is a 409).
    stubs = StubbedBatches()
    async with _worker(env, stubs):
        handle = await env.client.start_workflow(
            BroadcastWorkflow.run,
            BroadcastInput(broadcast_id="b1"),
            id=f"broadcast/{uuid.uuid4()}",
            task_queue=QUEUE,
        )
        await stubs.first_started.wait()
        await handle.signal(BroadcastWorkflow.pause)
        await handle.signal(BroadcastWorkflow.resume)
        stubs.release_first.set()  # the batch's result lands after both signals in the history
        # The old workflow waited for a resume forever: the time-skipping server jumps to its timeout.
        progress = await asyncio.wait_for(handle.result(), timeout=30)

    assert progress.status == "completed"
    assert stubs.calls == [0, 0]  # the paused batch was tried again from where it stood
    assert stubs.finished == ["completed"]


async def test_a_batch_that_finds_the_broadcast_paused_before_the_signal_pauses_the_workflow(env):
    # No resume while the batch ran: the pause (signal still on its way) holds the broadcast.
    stubs = StubbedBatches()
    stubs.release_first.set()
    async with _worker(env, stubs):
        handle = await env.client.start_workflow(
            BroadcastWorkflow.run,
            BroadcastInput(broadcast_id="b2"),
            id=f"broadcast/{uuid.uuid4()}",
            task_queue=QUEUE,
        )
        await stubs.first_started.wait()
        deadline = asyncio.get_running_loop().time() + 30
        while (await handle.query(BroadcastWorkflow.progress)).status != "paused":
            assert asyncio.get_running_loop().time() < deadline, "the workflow never paused"
        assert stubs.calls == [0]  # held: no batch after the one that found it paused
        await handle.signal(BroadcastWorkflow.pause)
        await handle.signal(BroadcastWorkflow.resume)
        progress = await asyncio.wait_for(handle.result(), timeout=30)

    assert progress.status == "completed"
    assert stubs.calls == [0, 0]
