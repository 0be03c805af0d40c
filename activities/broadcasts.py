"""The broadcast batch activity: pages of the audience streamed through the SMTP pool.

One activity call takes pages of ``batch_size`` recipients, one after another, from the cursor it is
given, for up to ``RUN_SECONDS``; then it returns and the BroadcastWorkflow records progress and calls
it again. Within a call, work flows without a pause at page boundaries:

- the planner claims the next page's ledger rows and checks suppression while the current one is sent;
- the renderer renders messages ``RENDER_AHEAD`` at a time, ahead of the pool: a connection that
  finishes a send finds its next message ready, and rendering in a tight loop keeps the sandbox's code
  in the CPU cache (one message rendered between two sends costs about a third more). Before it
  renders them it holds their recipients (``_Hold``): an erasure since planning skips them, and one
  that starts waits until their outcome is recorded;
- one sender per pooled connection delivers the next rendered message;
- the recorder commits what the server accepted every ``RECORD_EVERY`` seconds (sooner when many
  wait), and closes each page, in order, once all of its messages are recorded: the broadcast's cursor
  and totals move on, and the activity heartbeats the new cursor.

Exactly once per recipient: every message has a ledger row keyed ``broadcast/{id}/customer/{cid}``
(unique), claimed before sending. A sender holds one of ``MAX_UNRECORDED`` slots from before it sends
until its message is recorded, so at most that many messages are ever accepted by the server but not in
the ledger. An attempt that dies (worker killed) is retried from the last closed page it heartbeated,
skipping everything recorded; what is left, at most ``MAX_UNRECORDED`` messages, is sent again with the
same Message-ID, which receiving mailboxes (and our capture server) treat as the same message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from dataclasses import dataclass
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
from activities.heartbeat import HEARTBEAT_EVERY_SECONDS
from activities.smtp import Mailer, NotABounce, PermanentFailure, TemporaryFailure
from config.settings import Settings
from domain.broadcasts import service as broadcasts
from domain.broadcasts.service import BatchPlan
from domain.db import transaction
from domain.email import compose, rendering
from domain.email import service as email
from domain.email.delivery import MessageFactory, Prepared, TemplateSpec
from domain.subscriptions import service as subscriptions

RUN_SECONDS = 20.0  # an activity call takes no new page after this long
RENDER_AHEAD = 32  # messages rendered in one go, ahead of the pool
RECORD_EVERY = 0.05  # seconds between ledger commits while messages are being accepted
MAX_UNRECORDED = 100  # sent or being sent, not yet recorded: the most a crash can send twice
HOLDS_OPEN = 4  # groups of recipients held against an erasure at once (one connection each)


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


@dataclass
class Progress:
    """Where an activity call has got to; heartbeated, so a retried attempt resumes there."""

    after_id: int
    sent: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass(eq=False)
class _Page:
    plan: BatchPlan
    template: TemplateSpec
    unrecorded: int  # messages of the page whose outcome is not in the ledger yet
    blocked: bool = False  # a message was not accepted yet (temporary failure): the page stays open


class _Hold:
    """A group of recipients re-checked right before their messages are rendered and sent, in a
    transaction that key-share locks their profiles (``broadcasts.hold_recipients``). On PostgreSQL
    it stays open until the last of their outcomes is recorded, so an erasure (which locks the
    profile first) waits for that: it never commits while one of its messages is on its way, and it
    then finds the ledger row complete and anonymises it. SQLite lets one writer in at a time, so
    there the check commits at once, and only an erasure committed before it is seen."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], room: asyncio.Semaphore, open_holds: set[_Hold]
    ):
        self._sessions = sessions
        self._room = room
        self._registry = open_holds  # the run's, which closes what a failure leaves open
        self._stack = contextlib.AsyncExitStack()
        self._open = False
        self.unrecorded = 0

    async def check(
        self, broadcast_id: str, planned: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        await self._room.acquire()
        self._open = True
        self._registry.add(self)
        try:
            session = await self._stack.enter_async_context(transaction(self._sessions))
            todo, erased = await broadcasts.hold_recipients(session, broadcast_id, planned)
        except BaseException:
            await self.close()
            raise
        self.unrecorded = len(todo)
        if not todo or session.bind.dialect.name != "postgresql":
            await self.close()
        return todo, erased

    async def recorded(self, n: int = 1) -> None:
        self.unrecorded -= n
        if self.unrecorded <= 0:
            await self.close()

    async def close(self) -> None:
        """Ends the transaction (it wrote nothing); once only."""
        if self._open:
            self._open = False
            self._registry.discard(self)
            try:
                await self._stack.aclose()
            finally:
                self._room.release()


@dataclass
class _Rendered:
    page: _Page
    customer: dict[str, Any]
    key: str
    message: Prepared | None
    error: str | None = None  # why it could not be rendered (this message fails, not the page)
    hold: _Hold | None = None  # its recipient's, released once its outcome is recorded


class _Run:
    """One activity call: plans, renders, sends and records pages until its time is up."""

    def __init__(self, sender: BroadcastSender, req: BroadcastBatchRequest, progress: Progress):
        self._sender = sender
        self._req = req
        self.progress = progress
        self.status = "running"  # what the planner last found: running | done | paused | cancelled ...
        self.temporary: list[str] = []  # messages the server did not take yet
        self._senders = sender.mailer.size
        self._limiter = RateLimit(None)  # the broadcast's own, once the first page is planned
        self._planned: asyncio.Queue[_Page | None] = asyncio.Queue()
        self._ahead = asyncio.Semaphore(1)  # pages planned and not yet taken by the renderer
        self._open: deque[_Page] = deque()  # planned and not closed yet, in audience order
        self._ready: asyncio.Queue[_Rendered | None] = asyncio.Queue()
        self._wanted = asyncio.Event()  # the pool is about to run out of rendered messages
        self._slots = asyncio.Semaphore(MAX_UNRECORDED)
        self._sent: list[_Rendered] = []
        self._failed: list[tuple[_Rendered, str, str | None]] = []
        self._erased: list[tuple[_Page, str]] = []  # recipients erased since their page was planned
        self._holds: set[_Hold] = set()
        self._room = asyncio.Semaphore(HOLDS_OPEN)
        self._bounced: list[tuple[str, str, str]] = []  # (ledger key, address, why)
        self._due = asyncio.Event()
        self._closing = False

    async def run(self) -> None:
        beating = asyncio.create_task(self._beat())
        try:
            async with asyncio.TaskGroup() as recording:
                recording.create_task(self._record())  # a failed commit cancels everything else too
                async with asyncio.TaskGroup() as work:
                    work.create_task(self._plan())
                    work.create_task(self._render())
                    for _ in range(self._senders):
                        work.create_task(self._send())
                self._closing = True
                self._due.set()
        finally:
            for hold in list(self._holds):  # a run that failed: nothing more is recorded
                await hold.close()
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    # -- planning ---------------------------------------------------------------------------------------

    async def _plan(self) -> None:
        deadline = time.monotonic() + RUN_SECONDS
        after = first = self.progress.after_id
        factory, req = self._sender.factory, self._req
        while True:
            await self._ahead.acquire()  # plan one page ahead of the renderer, no further
            if time.monotonic() > deadline or self.temporary:
                break
            async with transaction(self._sender.sessions) as session:
                plan = await broadcasts.plan_batch(
                    session, req.broadcast_id, after, factory.message_id, req.timezones
                )
            self.status = plan.status
            if plan.status != "running":
                break
            if after == first:
                self._limiter = RateLimit(plan.rate_per_second)
            page = _Page(plan, TemplateSpec.of(plan.version), unrecorded=len(plan.todo))
            self._open.append(page)
            self._planned.put_nowait(page)
            after = plan.last_id
        self._planned.put_nowait(None)

    # -- rendering and sending --------------------------------------------------------------------------

    async def _render(self) -> None:
        while (page := await self._planned.get()) is not None:
            self._ahead.release()
            todo = page.plan.todo
            # A rate-limited broadcast holds fewer at a time: an erasure waits about a second at most.
            step = min(RENDER_AHEAD, page.plan.rate_per_second or RENDER_AHEAD)
            for start in range(0, len(todo), step):
                while self._ready.qsize() >= self._senders:
                    self._wanted.clear()
                    await self._wanted.wait()
                planned = todo[start : start + step]
                hold = _Hold(self._sender.sessions, self._room, self._holds)
                ready, erased = await hold.check(self._req.broadcast_id, planned)
                if len(ready) + len(erased) < len(planned):  # settled by another attempt meanwhile
                    page.unrecorded -= len(planned) - len(ready) - len(erased)
                    self._due.set()
                if erased:
                    self._erased.extend((page, key) for key in erased)
                    self._due.set()
                for customer in ready:
                    item = self._sender.render(page, customer, self._req.broadcast_id)
                    item.hold = hold
                    self._ready.put_nowait(item)
            if not todo:
                self._due.set()  # nothing to send: the page can be closed now
        for _ in range(self._senders):
            self._ready.put_nowait(None)

    async def _send(self) -> None:
        mailer, envelope_from = self._sender.mailer, self._sender.factory.envelope_from
        while (item := await self._ready.get()) is not None:
            if self._ready.qsize() < self._senders:
                self._wanted.set()
            message = item.message
            if message is None:
                self._failed.append((item, item.error or "render failed", None))
                continue
            await self._slots.acquire()  # freed once the outcome is in the ledger
            try:
                await self._limiter.wait()
                await mailer.send(envelope_from, message.to, message.data)
            except PermanentFailure as exc:
                self._slots.release()
                self._failed.append((item, str(exc), message.subject))
                if not isinstance(exc, NotABounce):  # our relay's limit or setup, not a bounce
                    self._bounced.append((item.key, item.customer["email"], str(exc)[:500]))
            except TemporaryFailure as exc:  # left pending: the retried attempt sends it
                self._slots.release()
                self.temporary.append(str(exc))
                item.page.blocked = True
                if item.hold:
                    await item.hold.recorded()
            else:
                self._sent.append(item)
                if len(self._sent) >= MAX_UNRECORDED // 2:
                    self._due.set()

    # -- recording --------------------------------------------------------------------------------------

    async def _record(self) -> None:
        """Commit every ``RECORD_EVERY`` seconds (sooner when many wait) until the run is over."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECORD_EVERY):
                    await self._due.wait()
            self._due.clear()
            last = self._closing
            await self._commit()
            if last:
                return

    async def _commit(self) -> None:
        sent, failed, bounced, erased = self._sent, self._failed, self._bounced, self._erased
        self._sent, self._failed, self._bounced, self._erased = [], [], [], []
        for item in sent:
            item.page.unrecorded -= 1
        for item, _, _ in failed:
            item.page.unrecorded -= 1
        for page, _ in erased:
            page.unrecorded -= 1
        closing = []
        while self._open and self._open[0].unrecorded == 0 and not self._open[0].blocked:
            closing.append(self._open.popleft())
        if not (sent or failed or erased or closing):
            return
        req = self._req
        async with transaction(self._sender.sessions) as session:
            # The bounced addresses before the ledger rows: an erasure locks its addresses, then
            # rewrites its ledger rows; the other way round the two could each wait for the other.
            await subscriptions.hold_addresses(session, [address for _, address, _ in bounced])
            await broadcasts.record_results(
                session,
                {item.key: item.message.subject for item in sent},
                [
                    {"k": item.key, "s": "failed", "e": error[:2000], "subj": subject, "at": None}
                    for item, error, subject in failed
                ]
                + [
                    {"k": key, "s": "skipped", "e": broadcasts.ERASED, "subj": None, "at": None}
                    for _, key in erased
                ],
            )
            await email.record_bounces(session, bounced)  # shared with journey sends
            counts = [
                await broadcasts.finish_batch(
                    session, req.broadcast_id, req.slot, page.plan.last_id, page.plan.keys
                )
                for page in closing
            ]
        for _ in sent:
            self._slots.release()
        for item in [*sent, *(item for item, _, _ in failed)]:
            if item.hold:
                await item.hold.recorded()
        for page, count in zip(closing, counts, strict=True):
            self.progress.after_id = page.plan.last_id
            self.progress.sent += count.get("sent", 0)
            self.progress.skipped += count.get("skipped", 0)
            self.progress.failed += count.get("failed", 0)
        if closing:
            self._heartbeat()

    async def _beat(self) -> None:
        while True:
            self._heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_SECONDS)

    def _heartbeat(self) -> None:
        if activity.in_activity():
            activity.heartbeat(dataclasses.asdict(self.progress))


class BroadcastSender:
    """Runs the batch activity's calls; holds what they share (the pool, the message factory)."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], mailer: Mailer):
        self.sessions = sessions
        self.mailer = mailer
        self.factory = MessageFactory(settings)

    async def run_batch(self, req: BroadcastBatchRequest) -> BroadcastBatchResult:
        run = _Run(self, req, _resumed(req))
        try:
            await run.run()
        except BaseExceptionGroup as group:
            raise _first(group) from None
        if run.temporary:
            raise ApplicationError(
                f"{len(run.temporary)} messages were not accepted yet: {run.temporary[0]}",
                type="SmtpTemporaryFailure",
            )
        p = run.progress
        if p.after_id == req.after_id:  # no page was closed: the planner's news is the result
            return BroadcastBatchResult(status=run.status, last_id=req.after_id)
        return BroadcastBatchResult(
            status="running", last_id=p.after_id, sent=p.sent, skipped=p.skipped, failed=p.failed
        )

    def render(self, page: _Page, customer: dict[str, Any], broadcast_id: str) -> _Rendered:
        key = broadcasts.message_key(broadcast_id, customer["id"])
        try:
            message = self.factory.make(
                page.template,
                customer,
                idempotency_key=key,
                # a broadcast is marketing (unsubscribe link, header) unless created operational
                category=subscriptions.TRANSACTIONAL if page.plan.operational else subscriptions.MARKETING,
                group_id=page.plan.group_id,
                group_name=page.plan.group_name,
                journey={"broadcast_id": broadcast_id},
                default_timezone=page.plan.default_timezone,
            )
        except (rendering.RenderError, compose.InvalidRecipient) as exc:
            return _Rendered(page, customer, key, None, str(exc))
        return _Rendered(page, customer, key, message)


def _resumed(req: BroadcastBatchRequest) -> Progress:
    """Where this attempt starts: after the pages an earlier attempt of the same call closed."""
    if activity.in_activity() and activity.info().heartbeat_details:
        details = activity.info().heartbeat_details[0]
        if isinstance(details, dict) and details.get("after_id", 0) >= req.after_id:
            fields = [f.name for f in dataclasses.fields(Progress)]
            return Progress(**{name: int(details.get(name, 0)) for name in fields})
    return Progress(after_id=req.after_id)


def _first(group: BaseExceptionGroup) -> BaseException:
    """The error that stopped a batch, out of the task groups that carried it."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


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
            slots = await broadcasts.time_slots(session, req.broadcast_id, served=set(req.served or ()))
        return BroadcastSlots([BroadcastSlot(at=at.isoformat(), timezones=zones) for at, zones in slots])

    @activity.defn(name=FINISH_BROADCAST)
    async def finish_broadcast(self, req: FinishBroadcastRequest) -> None:
        async with transaction(self._sessions) as session:
            await broadcasts.finish(session, req.broadcast_id, req.status, req.error)
