"""The event router: reads the outbox of stored track events and enrolls customers into journeys.

Ingestion only writes (event + outbox row, one transaction). This loop leases a batch of outbox rows,
turns each into signal-with-start calls on deterministic workflow ids, then deletes the rows it routed.
A crash anywhere in between leaves the rows leased until the lease runs out; then this or another
router routes them again: Temporal refuses a second start of the same id and the workflow ignores an
event id it has seen, so a trigger is neither lost nor doubled. Several routers can run at once:
each claims rows no other router holds (FOR UPDATE SKIP LOCKED on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.contracts import EventRef
from domain.db import transaction
from domain.events import repository as outbox
from domain.journeys import definition as graph
from domain.journeys import service as journeys
from workflows.journey import JourneyInput, JourneyWorkflow

log = logging.getLogger(__name__)


@dataclass
class RouterStats:
    routed_events: int = 0
    enrollments_started: int = 0


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
    ):
        self._client = client
        self._sessions = sessions
        self._task_queue = task_queue
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._gate = asyncio.Semaphore(concurrency)
        self._lease = timedelta(seconds=lease_seconds)
        self.router_id = f"{socket.gethostname()[:40]}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.stats = RouterStats()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                handled = await self.route_once()
            except Exception:
                log.exception("routing pass failed; retrying")
                handled = 0
            if handled == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_seconds)

    async def route_once(self) -> int:
        """Route one batch of pending events; returns how many were handled."""
        async with transaction(self._sessions) as session:
            events = await outbox.claim(session, self.router_id, self._batch_size, self._lease)
            if not events:
                return 0
            versions = await journeys.live_versions_for(session, {e.name for e in events if e.name})
        work, owners = [], []
        for event in events:
            for version in versions:
                entry = next(n for n in version.definition["nodes"] if n["type"] == "entry")
                if graph.matches_entry(entry, event.name, event.properties or {}):
                    work.append(self._enroll(version, event))
                    owners.append(event.id)
        results = await asyncio.gather(*work, return_exceptions=True)
        failed = {
            event_id for event_id, r in zip(owners, results, strict=True) if isinstance(r, BaseException)
        }
        for event_id, result in zip(owners, results, strict=True):
            if isinstance(result, BaseException):
                log.error("routing event %s failed; it stays queued", event_id, exc_info=result)
        routed = [e.id for e in events if e.id not in failed]
        async with transaction(self._sessions) as session:
            await outbox.dequeue(session, routed, self.router_id)
            await outbox.release(session, sorted(failed), self.router_id)
        self.stats.routed_events += len(routed)
        return len(routed)

    async def _enroll(self, version, event) -> None:
        workflow_id = journeys.workflow_id_for(version.journey_id, event.customer_id)
        async with transaction(self._sessions) as session:
            if await journeys.enrollment_finished(session, workflow_id):
                return  # re-entry policy "once": this customer has been through the journey
        ref = EventRef(
            id=event.id,
            name=event.name,
            properties=event.properties or {},
            timestamp=event.timestamp.isoformat(),
        )
        async with self._gate:
            try:
                await self._client.start_workflow(
                    JourneyWorkflow.run,
                    JourneyInput(
                        journey_id=version.journey_id,
                        version=version.version,
                        customer_id=event.customer_id,
                        definition=version.definition,
                        entry_event=ref,
                    ),
                    id=workflow_id,
                    task_queue=self._task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    start_signal="event",
                    start_signal_args=[ref],
                )
            except WorkflowAlreadyStartedError:
                return  # closed earlier under this id: enrolled once already
        async with transaction(self._sessions) as session:
            await journeys.record_enrollment(
                session,
                workflow_id=workflow_id,
                journey_id=version.journey_id,
                version=version.version,
                customer_id=event.customer_id,
                event_id=event.id,
            )
        self.stats.enrollments_started += 1
