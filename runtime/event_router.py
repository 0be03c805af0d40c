"""The event router: reads the outbox of stored track events and enrolls customers into journeys.

Ingestion only writes (event + outbox row, one transaction). This loop leases a batch of outbox rows,
turns each into signal-with-start calls on deterministic workflow ids, then deletes the rows it routed.
A crash anywhere in between leaves the rows leased until the lease runs out; then this or another
router routes them again: Temporal refuses a second start of the same id and the workflow ignores an
event id it has seen, so a trigger is neither lost nor doubled. Several routers can run at once:
each claims rows no other router holds (FOR UPDATE SKIP LOCKED on PostgreSQL).

Rows come in lanes. ``Segment Entered``/``Exited`` events, which a segment refresh can queue by the
thousand, have their own lane, routed by a router of their own (its own batch size and concurrency,
``routers()``), so ordinary events never wait behind a segment that admitted everyone at once.
Segment-entry journeys are matched there: a ``Segment Entered`` event enrolls its customer into every
live journey whose entry is that segment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import EventRef
from domain.db import transaction
from domain.events import repository as outbox
from domain.events.models import LANE_EVENTS, LANE_SEGMENTS
from domain.journeys import conditions
from domain.journeys import definition as graph
from domain.journeys import service as journeys
from runtime.journey_start import record_started, start_enrollment, started_row
from runtime.polling import poll_until_stopped

log = logging.getLogger(__name__)


@dataclass
class RouterStats:
    routed_events: int = 0
    enrollments_started: int = 0
    signals_sent: int = 0


class EventRouter:
    def __init__(
        self,
        client: Client,
        sessions: async_sessionmaker[AsyncSession],
        *,
        task_queue: str,
        poll_seconds: float = 0.2,
        batch_size: int = 500,
        concurrency: int = 32,
        lease_seconds: float = 60.0,
        lane: str = LANE_EVENTS,
    ):
        self._client = client
        self._lane = lane
        self._sessions = sessions
        self._task_queue = task_queue
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._gate = asyncio.Semaphore(concurrency)
        self._lease = timedelta(seconds=lease_seconds)
        self.router_id = f"{socket.gethostname()[:40]}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.stats = RouterStats()

    async def run(self, stop: asyncio.Event) -> None:
        async def step() -> bool:
            return await self.route_once() > 0

        await poll_until_stopped(step, stop, self._poll_seconds, "routing pass")

    async def route_once(self) -> int:
        """Route one batch of pending events; returns how many were handled."""
        async with transaction(self._sessions) as session:
            events = await outbox.claim(session, self.router_id, self._batch_size, self._lease, self._lane)
            if not events:
                return 0
            versions = await journeys.live_versions_for(session, {e.name for e in events if e.name})
            entered = {
                (e.properties or {}).get("segment_id") for e in events if e.name == conditions.SEGMENT_ENTERED
            }
            if entered:
                versions += await journeys.live_segment_versions(session, entered)
            listeners = await journeys.listeners_for(
                session, {(e.customer_id, e.name) for e in events if e.name}
            )
        try:
            await self._route(events, versions, listeners)
            routed, failed = [e.id for e in events], []
        except Exception:
            # Find the event that fails, so one that can never be routed does not hold up the others:
            # route one at a time (starts and signals are idempotent, so what went through is not doubled).
            log.warning("routing a batch of %d events failed; routing them one by one", len(events))
            routed, failed = [], []
            for event in events:
                try:
                    await self._route([event], versions, listeners)
                    routed.append(event.id)
                except Exception:
                    log.exception("routing event %s failed; it stays queued for the next pass", event.id)
                    failed.append(event.id)
        async with transaction(self._sessions) as session:
            await outbox.dequeue(session, routed, self.router_id)
            await outbox.release(session, failed, self.router_id)
        self.stats.routed_events += len(routed)
        return len(routed)

    async def _route(self, events, versions, listeners) -> None:
        await asyncio.gather(self._enroll_all(events, versions), self._signal_listeners(events, listeners))

    async def _enroll_all(self, events, versions) -> None:
        """Apply each matching journey's re-entry policy to the batch, start the enrollments that pass,
        and record them: two database transactions per batch, not per event."""
        candidates: list[_Candidate] = []
        for event in events:
            for version in versions:
                entry = next(n for n in version.definition["nodes"] if n["type"] == "entry")
                if graph.matches_entry(entry, event.name, event.properties or {}):
                    candidate = _candidate(version, entry, event)
                    if candidate is not None:
                        candidates.append(candidate)
        if not candidates:
            return
        async with transaction(self._sessions) as session:
            once = {
                c.workflow_id: (c.version.journey_id, c.event.customer_id, c.key)
                for c in candidates
                if c.reentry in ("once", "once_per_key")
            }
            known = await journeys.existing_enrollments(
                session, [c.workflow_id for c in candidates if c.reentry == "always"]
            )
            known |= await journeys.enrolled_as_any_profile(session, once)
            lanes = await journeys.lanes(
                session,
                {
                    (c.version.journey_id, c.event.customer_id)
                    for c in candidates
                    if c.reentry == "after_exit"
                },
            )
        chosen: dict[str, _Candidate] = {}
        entering: set[tuple[str, int]] = set()
        for c in candidates:  # in event order
            lane = (c.version.journey_id, c.event.customer_id)
            if c.reentry == "after_exit":
                if lane in entering or not lanes[lane].admits(c.event.received_at):
                    continue  # inside, entering on an earlier trigger of this batch, or came while inside
                c.workflow_id = lanes[lane].next_workflow_id(*lane)
                entering.add(lane)
            if c.workflow_id in chosen or c.workflow_id in known:
                continue  # the same trigger again, or the once/once-per-key enrollment already made
            chosen[c.workflow_id] = c
        started = await asyncio.gather(*(self._start(c) for c in chosen.values()))
        rows = [c for c, ok in zip(chosen.values(), started, strict=True) if ok]
        if rows:
            self.stats.enrollments_started += await record_started(
                self._client,
                self._sessions,
                [started_row(c.version, c.workflow_id, c.event.customer_id, c.event.id) for c in rows],
            )

    async def _start(self, c: _Candidate) -> bool:
        """Start the enrollment; True when it is to be recorded."""
        segment_lane = self._lane == LANE_SEGMENTS
        async with self._gate:
            started = await start_enrollment(
                self._client,
                c.version,
                c.event.customer_id,
                c.workflow_id,
                _ref(c.event),
                task_queue=self._task_queue,
                signal_entry=not segment_lane,
            )
        # The segment lane starts without the entry signal, which costs the server about a quarter
        # more per start (the input carries the entry event anyway). An id Temporal already knows was
        # then started by a pass that died before recording it, or finished and recorded itself:
        # recording it (conflicts ignored) is right either way.
        return started or segment_lane

    async def _signal_listeners(self, events, listeners) -> None:
        """Deliver each event to the enrollments that registered for it (a wait or a goal)."""
        by_pair: dict[tuple[int, str], list[str]] = defaultdict(list)
        for customer_id, name, workflow_id in listeners:
            by_pair[(customer_id, name)].append(workflow_id)
        work = [
            self._signal(workflow_id, _ref(event))
            for event in events
            for workflow_id in by_pair.get((event.customer_id, event.name), [])
        ]
        await asyncio.gather(*work)

    async def _signal(self, workflow_id: str, ref: EventRef) -> None:
        async with self._gate:
            try:
                await self._client.get_workflow_handle(workflow_id).signal("event", ref)
                self.stats.signals_sent += 1
            except RPCError as exc:
                # Finished meanwhile: its listener rows go with it; nothing waits for this event.
                if exc.status is not RPCStatusCode.NOT_FOUND:
                    raise


def routers(client: Client, sessions: async_sessionmaker[AsyncSession], settings) -> list[EventRouter]:
    """The routers a worker (or ``journeys router``) runs: ordinary events, and segment changes in a
    lane of their own."""
    common = {
        "task_queue": settings.temporal_task_queue,
        "poll_seconds": settings.router_poll_seconds,
        "lease_seconds": settings.router_lease_seconds,
    }
    return [
        EventRouter(
            client,
            sessions,
            batch_size=settings.router_batch_size,
            concurrency=settings.router_concurrency,
            **common,
        ),
        EventRouter(
            client,
            sessions,
            batch_size=settings.router_segment_batch_size,
            concurrency=settings.router_segment_concurrency,
            lane=LANE_SEGMENTS,
            **common,
        ),
    ]


@dataclass
class _Candidate:
    version: object
    event: object
    workflow_id: str
    reentry: str
    key: str | None = None


def _candidate(version, entry: dict, event) -> _Candidate | None:
    """The enrollment a trigger would make, its id carrying what the re-entry policy needs
    (``after_exit`` ids are numbered once the customer's enrollments are read, see ``journeys.Lane``)."""
    reentry = entry.get("reentry", "once")
    key = None
    if reentry == "once_per_key":
        value = (event.properties or {}).get(entry["entry_key"])
        if value is None or value == "":
            log.info("event %s lacks entry key %r; not enrolled", event.id, entry["entry_key"])
            return None
        key = str(value)[:128]
    elif reentry == "always":
        key = f"e{event.id}"  # one enrollment per trigger: a re-delivered trigger finds the same id
    workflow_id = journeys.workflow_id_for(version.journey_id, event.customer_id, key)
    return _Candidate(version=version, event=event, workflow_id=workflow_id, reentry=reentry, key=key)


def _ref(event) -> EventRef:
    return EventRef(
        id=event.id,
        name=event.name,
        properties=event.properties or {},
        timestamp=event.timestamp.isoformat(),
    )
