"""BroadcastWorkflow: one run per broadcast, paging through the audience in batches.

No workflow per recipient: each batch (hundreds of customers) is one activity that heartbeats. The
cursor (last customer id done) lives in the workflow's state and in the broadcasts table; a worker that
dies mid-batch loses nothing: the batch activity times out on its heartbeat and runs again on another
worker, skipping every recipient the ledger already records. Pause, resume and cancel are signals,
honoured between batches. Long broadcasts continue-as-new to keep the history small.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        FINISH_BROADCAST,
        SEND_BROADCAST_BATCH,
        BroadcastBatchRequest,
        BroadcastBatchResult,
        FinishBroadcastRequest,
    )

BATCHES_PER_RUN = 200
BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=5)
)


@dataclass
class BroadcastInput:
    broadcast_id: str
    send_at: str | None = None  # ISO 8601; the workflow waits for it with a durable timer
    after_id: int = 0  # carried over continue-as-new
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    paused: bool = False
    heartbeat_seconds: int = 30


@dataclass
class BroadcastProgress:
    status: str
    after_id: int
    sent: int
    skipped: int
    failed: int


@workflow.defn(name="BroadcastWorkflow")
class BroadcastWorkflow:
    def __init__(self) -> None:
        self._paused = False
        self._cancelled = False
        self._status = "scheduled"
        self._progress = BroadcastProgress("scheduled", 0, 0, 0, 0)

    @workflow.signal
    def pause(self) -> None:
        self._paused = True

    @workflow.signal
    def resume(self) -> None:
        self._paused = False

    @workflow.signal
    def cancel(self) -> None:
        self._cancelled = True

    @workflow.query
    def progress(self) -> BroadcastProgress:
        return self._progress

    @workflow.run
    async def run(self, inp: BroadcastInput) -> BroadcastProgress:
        self._paused = self._paused or inp.paused
        p = self._progress = BroadcastProgress("scheduled", inp.after_id, inp.sent, inp.skipped, inp.failed)
        if inp.send_at:
            delay = datetime.fromisoformat(inp.send_at) - workflow.now()
            if delay > timedelta(0):
                # a cancel during the wait ends it at once
                with contextlib.suppress(asyncio.TimeoutError):
                    await workflow.wait_condition(lambda: self._cancelled, timeout=delay)
        for _ in range(BATCHES_PER_RUN):
            p.status = "paused" if self._paused else "running"
            await workflow.wait_condition(lambda: not self._paused or self._cancelled)
            if self._cancelled:
                return await self._finish(inp.broadcast_id, p, "cancelled")
            p.status = "running"
            result: BroadcastBatchResult = await workflow.execute_activity(
                SEND_BROADCAST_BATCH,
                BroadcastBatchRequest(broadcast_id=inp.broadcast_id, after_id=p.after_id),
                activity_id=f"batch-after-{p.after_id}",
                start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=timedelta(seconds=inp.heartbeat_seconds),
                retry_policy=BATCH_RETRY,
                result_type=BroadcastBatchResult,
            )
            if result.status == "paused":  # paused through the database before the signal arrived
                self._paused = True
                continue
            if result.status in ("cancelled", "completed", "failed"):
                return await self._finish(inp.broadcast_id, p, result.status)
            if result.status == "done":
                return await self._finish(inp.broadcast_id, p, "completed")
            p.after_id = result.last_id
            p.sent += result.sent
            p.skipped += result.skipped
            p.failed += result.failed
        workflow.continue_as_new(
            BroadcastInput(
                broadcast_id=inp.broadcast_id,
                after_id=p.after_id,
                sent=p.sent,
                skipped=p.skipped,
                failed=p.failed,
                paused=self._paused,
                heartbeat_seconds=inp.heartbeat_seconds,
            )
        )

    async def _finish(self, broadcast_id: str, p: BroadcastProgress, status: str) -> BroadcastProgress:
        await workflow.execute_activity(
            FINISH_BROADCAST,
            FinishBroadcastRequest(broadcast_id=broadcast_id, status=status),
            activity_id="finish",
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=BATCH_RETRY,
        )
        p.status = status
        return p
