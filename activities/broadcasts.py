"""The broadcast batch: one page of the audience rendered and sent over the SMTP pool.

Exactly once per recipient: every message has a ledger row keyed ``broadcast/{id}/customer/{cid}``
(unique), claimed before sending. Rows are marked sent in small groups as the server accepts them, so
an attempt that dies (worker killed) and is retried skips everything already recorded. What is left is
the unavoidable SMTP window, a message accepted by the server but not yet recorded: it is sent again
with the same Message-ID, which receiving mailboxes (and our capture server) treat as the same message.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

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
from activities.smtp import Mailer, PermanentFailure, TemporaryFailure
from config.settings import Settings
from domain.broadcasts import service as broadcasts
from domain.db import transaction
from domain.email import compose, rendering
from domain.email.delivery import MessageFactory
from domain.subscriptions import service as subscriptions

FLUSH_EVERY = 100  # sent rows recorded per transaction: bounds what a crash can send twice


class RateLimit:
    """Spaces sends to at most ``per_second`` (None: as fast as the pool goes)."""

    def __init__(self, per_second: int | None):
        self._gap = 1.0 / per_second if per_second else 0.0
        self._next = time.monotonic()

    async def wait(self) -> None:
        if not self._gap:
            return
        now = time.monotonic()
        at = max(now, self._next)
        self._next = at + self._gap
        if at > now:
            await asyncio.sleep(at - now)


def _heartbeat(*details: Any) -> None:
    if activity.in_activity():
        activity.heartbeat(*details)


class BroadcastSender:
    """Runs batches; used by the activity and directly by the benchmark."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], mailer: Mailer):
        self._sessions = sessions
        self._mailer = mailer
        self._factory = MessageFactory(settings)

    async def run_batch(self, req: BroadcastBatchRequest) -> BroadcastBatchResult:
        async with transaction(self._sessions) as session:
            plan = await broadcasts.plan_batch(
                session, req.broadcast_id, req.after_id, self._factory.message_id, req.timezones
            )
            rate = (await broadcasts.get(session, req.broadcast_id)).rate_per_second
        if plan.status != "running":
            return BroadcastBatchResult(status=plan.status, last_id=req.after_id)

        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for customer in plan.todo:
            queue.put_nowait(customer)
        sent: list[str] = []
        changes: list[dict[str, Any]] = []  # failures, one row each (rare)
        bounced: list[tuple[str, str]] = []
        temporary: list[str] = []
        limiter = RateLimit(rate)
        flush_lock = asyncio.Lock()
        done = 0

        async def flush(force: bool = False) -> None:
            nonlocal sent, changes, bounced
            if not force and len(sent) + len(changes) < FLUSH_EVERY:
                return
            async with flush_lock:
                if not force and len(sent) + len(changes) < FLUSH_EVERY:  # flushed while we waited
                    return
                keys, failures, hard = sent, changes, bounced
                sent, changes, bounced = [], [], []
                if keys or failures or hard:
                    async with transaction(self._sessions) as session:
                        await broadcasts.record_results(session, keys, failures)
                        for address, why in hard:
                            await subscriptions.suppress_address(session, address, "bounced", why[:500])
                _heartbeat(req.after_id, done)

        async def worker() -> None:
            nonlocal done
            while not queue.empty():
                customer = queue.get_nowait()
                key = broadcasts.message_key(req.broadcast_id, customer["id"])
                change = {"k": key, "s": "failed", "e": None, "subj": None, "at": None}
                try:
                    prepared = self._factory.make(
                        plan.version,
                        customer,
                        idempotency_key=key,
                        group_id=plan.group_id,
                        group_name=plan.group_name,
                        journey={"broadcast_id": req.broadcast_id},
                    )
                    change["subj"] = prepared.subject
                    await limiter.wait()
                    await self._mailer.send(self._factory.envelope_from, prepared.to, prepared.data)
                    sent.append(key)
                    done += 1
                    await flush()
                    continue
                except (rendering.RenderError, compose.InvalidRecipient) as exc:
                    change["e"] = str(exc)[:2000]
                except PermanentFailure as exc:
                    change["e"] = str(exc)[:2000]
                    bounced.append((customer["email"], str(exc)))
                except TemporaryFailure as exc:
                    temporary.append(str(exc))  # left pending: the retried attempt sends it
                    continue
                changes.append(change)
                done += 1
                await flush()

        await asyncio.gather(*(worker() for _ in range(min(self._mailer.size, len(plan.todo)) or 1)))
        await flush(force=True)
        if temporary:
            raise ApplicationError(
                f"{len(temporary)} messages were not accepted yet: {temporary[0]}",
                type="SmtpTemporaryFailure",
            )
        async with transaction(self._sessions) as session:
            counts = await broadcasts.finish_batch(
                session, req.broadcast_id, req.slot, plan.last_id, plan.keys
            )
        return BroadcastBatchResult(
            status="running",
            last_id=plan.last_id,
            sent=counts.get("sent", 0),
            skipped=counts.get("skipped", 0),
            failed=counts.get("failed", 0),
        )


class BroadcastActivities:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], mailer: Mailer):
        self._sessions = sessions
        self._sender = BroadcastSender(settings, sessions, mailer)

    @activity.defn(name=SEND_BROADCAST_BATCH)
    async def send_broadcast_batch(self, req: BroadcastBatchRequest) -> BroadcastBatchResult:
        return await self._sender.run_batch(req)

    @activity.defn(name=PLAN_BROADCAST_SLOTS)
    async def plan_broadcast_slots(self, req: BroadcastSlotsRequest) -> BroadcastSlots:
        async with transaction(self._sessions) as session:
            slots = await broadcasts.time_slots(session, req.broadcast_id)
        return BroadcastSlots([BroadcastSlot(at=at.isoformat(), timezones=zones) for at, zones in slots])

    @activity.defn(name=FINISH_BROADCAST)
    async def finish_broadcast(self, req: FinishBroadcastRequest) -> None:
        async with transaction(self._sessions) as session:
            await broadcasts.finish(session, req.broadcast_id, req.status, req.error)
