"""BroadcastWorkflow: one run per broadcast, paging through the audience in batches.

No workflow per recipient: each batch (hundreds of customers) is one activity that heartbeats. The
cursor (last customer id done) lives in the workflow's state and in the broadcasts table; a worker that
dies mid-batch loses nothing: the batch activity times out on its heartbeat and runs again on another
worker, skipping every recipient the ledger already records. Pause, resume and cancel are signals,
honoured between batches; a paused run also looks at the stored status every few minutes, so a
resume or cancel whose signal was lost still takes effect. Long broadcasts continue-as-new to keep the
history small.

A local-time broadcast ("9:00 in each recipient's timezone") first groups the audience's timezones by
the UTC instant their 9:00 falls on, then runs one pass of batches per instant, earliest first. After
each pass it reads the audience's timezones again: a zone that no send time serves (a customer joined,
or moved there, since the plan) gets its own send time, its 9:00 if still ahead, else at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        FINISH_BROADCAST,
        PLAN_BROADCAST_SLOTS,
        SEND_BROADCAST_BATCH,
        BroadcastBatchRequest,
        BroadcastBatchResult,
        BroadcastSlot,
        BroadcastSlots,
        BroadcastSlotsRequest,
        FinishBroadcastRequest,
    )

BATCHES_PER_RUN = 200
# Local-time broadcasts re-read the audience's timezones after each send time (histories recorded
# before did not).
LATE_ZONES_PATCH = "broadcast-plans-late-timezones"
# A batch that found the broadcast paused re-pauses the workflow only if no resume arrived meanwhile
# (histories recorded before re-paused regardless, and stayed paused while the database said running).
RESUME_DURING_BATCH_PATCH = "broadcast-resume-during-paused-batch"
# A paused workflow also wakes every PAUSED_RECHECK and runs its batch, which reads the stored status
# first: a resume (or cancel) committed whose signal never came (the API stopped between the two) is
# honoured within that time (histories recorded before waited for the signal alone).
PAUSED_RECHECK_PATCH = "broadcast-paused-rechecks-status"
PAUSED_RECHECK = timedelta(minutes=5)
BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=5)
)


@dataclass
class BroadcastInput:
    broadcast_id: str
    send_at: str | None = None  # ISO 8601; the workflow waits for it with a durable timer
    local_time: bool = False  # send at the broadcast's wall-clock time in each recipient's timezone
    # carried over continue-as-new:
    slots: list[BroadcastSlot] | None = None
    slot_index: int = 0
    after_id: int = 0
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
    slot: int = 0
    slots: list[str] = field(default_factory=list)  # the UTC send times, one per timezone group


@workflow.defn(name="BroadcastWorkflow")
class BroadcastWorkflow:
    def __init__(self) -> None:
        self._paused = False
        self._cancelled = False
        self._resumes = 0  # resume signals handled, so a batch can tell whether one came while it ran
        self._progress = BroadcastProgress("scheduled", 0, 0, 0, 0)

    @workflow.signal
    def pause(self) -> None:
        self._paused = True

    @workflow.signal
    def resume(self) -> None:
        self._paused = False
        self._resumes += 1

    @workflow.signal
    def cancel(self) -> None:
        self._cancelled = True

    @workflow.query
    def progress(self) -> BroadcastProgress:
        return self._progress

    @workflow.run
    async def run(self, inp: BroadcastInput) -> BroadcastProgress:
        self._paused = self._paused or inp.paused
        p = self._progress = BroadcastProgress(
            "scheduled", inp.after_id, inp.sent, inp.skipped, inp.failed, inp.slot_index
        )
        slots = inp.slots
        if slots is None and inp.local_time:
            planned: BroadcastSlots = await workflow.execute_activity(
                PLAN_BROADCAST_SLOTS,
                BroadcastSlotsRequest(broadcast_id=inp.broadcast_id),
                activity_id="plan-slots",
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=BATCH_RETRY,
                result_type=BroadcastSlots,
            )
            slots = planned.slots
        slots = slots if slots is not None else [BroadcastSlot(at=inp.send_at or "", timezones=None)]
        p.slots = [s.at for s in slots]
        batches = 0
        index = inp.slot_index
        while index < len(slots):
            slot = slots[index]
            p.slot = index
            if index != inp.slot_index:
                p.after_id = 0
            if slot.at:
                delay = datetime.fromisoformat(slot.at) - workflow.now()
                if delay > timedelta(0):
                    p.status = "scheduled"
                    with contextlib.suppress(asyncio.TimeoutError):  # a cancel ends the wait at once
                        await workflow.wait_condition(lambda: self._cancelled, timeout=delay)
            while True:
                if batches == BATCHES_PER_RUN:  # keep the history small
                    workflow.continue_as_new(
                        dataclasses.replace(
                            inp,
                            slots=slots,
                            slot_index=index,
                            after_id=p.after_id,
                            sent=p.sent,
                            skipped=p.skipped,
                            failed=p.failed,
                            paused=self._paused,
                        )
                    )
                p.status = "paused" if self._paused else "running"
                rechecking = await self._wait_while_paused()
                if self._cancelled:
                    return await self._finish(inp.broadcast_id, p, "cancelled")
                p.status = "paused" if rechecking else "running"
                resumes = self._resumes
                result: BroadcastBatchResult = await workflow.execute_activity(
                    SEND_BROADCAST_BATCH,
                    BroadcastBatchRequest(
                        broadcast_id=inp.broadcast_id,
                        after_id=p.after_id,
                        slot=index,
                        timezones=slot.timezones,
                    ),
                    activity_id=f"slot-{index}-after-{p.after_id}",
                    start_to_close_timeout=timedelta(hours=1),
                    heartbeat_timeout=timedelta(seconds=inp.heartbeat_seconds),
                    retry_policy=BATCH_RETRY,
                    result_type=BroadcastBatchResult,
                )
                batches += 1
                if result.status == "paused":  # paused through the database before the signal arrived
                    # ... unless the resume was handled too before this result: the database says
                    # running again, and nothing would ever resume the workflow.
                    if self._resumes == resumes or not workflow.patched(RESUME_DURING_BATCH_PATCH):
                        self._paused = True
                    continue
                if rechecking:  # the database says it goes on: no signal is coming to say so
                    self._paused = False
                if result.status in ("cancelled", "completed", "failed"):
                    return await self._finish(inp.broadcast_id, p, result.status)
                if result.status == "done":
                    break
                p.after_id = result.last_id
                p.sent += result.sent
                p.skipped += result.skipped
                p.failed += result.failed
            if inp.local_time and workflow.patched(LATE_ZONES_PATCH):
                slots = await self._plan_late_zones(inp.broadcast_id, slots, index)
                p.slots = [s.at for s in slots]
            index += 1
        return await self._finish(inp.broadcast_id, p, "completed")

    async def _wait_while_paused(self) -> bool:
        """Until resumed or cancelled by signal; True if, still paused, it is time to ask the database
        instead (the batch that follows reads the stored status first and says what it found)."""
        if not self._paused or not workflow.patched(PAUSED_RECHECK_PATCH):
            await workflow.wait_condition(lambda: not self._paused or self._cancelled)
            return False
        try:
            await workflow.wait_condition(lambda: not self._paused or self._cancelled, timeout=PAUSED_RECHECK)
        except TimeoutError:
            return True
        return False

    async def _plan_late_zones(
        self, broadcast_id: str, slots: list[BroadcastSlot], done: int
    ) -> list[BroadcastSlot]:
        """The send times after slot ``done``, with those of timezones no send time serves yet (their
        customers joined or moved there after the plan) merged in, earliest first."""
        served = sorted({zone for s in slots for zone in s.timezones or ()})
        late: BroadcastSlots = await workflow.execute_activity(
            PLAN_BROADCAST_SLOTS,
            BroadcastSlotsRequest(broadcast_id=broadcast_id, served=served),
            activity_id=f"plan-slots-after-{done}",
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=BATCH_RETRY,
            result_type=BroadcastSlots,
        )
        if not late.slots:
            return slots
        now = workflow.now()
        ahead: dict[datetime, list[str]] = {}
        for s in slots[done + 1 :]:
            ahead.setdefault(datetime.fromisoformat(s.at), []).extend(s.timezones or ())
        for s in late.slots:  # a zone whose time has passed is sent to now
            ahead.setdefault(max(datetime.fromisoformat(s.at), now), []).extend(s.timezones or ())
        merged = [BroadcastSlot(at=at.isoformat(), timezones=zones) for at, zones in sorted(ahead.items())]
        return [*slots[: done + 1], *merged]

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
