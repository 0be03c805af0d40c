"""Enrolling many customers at once by API (manual and segment journeys; segment journeys also enroll
by themselves as customers enter, through the event router's segment lane).

Starts run with bounded concurrency and are recorded a batch at a time, so enrolling thousands neither
floods the Temporal server nor holds a database transaction open. Ids follow the re-entry policy like
the event router's: a repeated call enrolls nobody twice.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.contracts import EventRef
from domain.db import transaction
from domain.journeys import service as journeys
from domain.journeys.schemas import JourneyVersionOut
from runtime.journey_start import record_started, start_enrollment, started_row

BATCH = 200


@dataclass
class EnrollmentCounts:
    enrolled: int = 0
    skipped: int = 0


async def enroll_customers(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    version: JourneyVersionOut,
    customer_ids: list[int],
    *,
    task_queue: str,
    properties: dict | None = None,
    key: str | None = None,
    concurrency: int = 32,
) -> EnrollmentCounts:
    reentry = journeys.reentry_of(version.definition)
    # A caller's key makes a repeated call idempotent; without one, "always" enrolls every call.
    run_key = key or uuid.uuid4().hex[:12]
    counts = EnrollmentCounts()
    gate = asyncio.Semaphore(concurrency)
    for start in range(0, len(customer_ids), BATCH):
        batch = customer_ids[start : start + BATCH]
        ids = {c: _workflow_id(version.journey_id, c, reentry, key, run_key) for c in batch}
        async with transaction(sessions) as session:
            if reentry in ("once", "once_per_key"):
                entry_key = key if reentry == "once_per_key" else None
                known = await journeys.enrolled_as_any_profile(
                    session, {ids[c]: (version.journey_id, c, entry_key) for c in batch}
                )
            else:
                known = await journeys.existing_enrollments(session, list(ids.values()))
            inside = (
                await journeys.customers_inside(session, {(version.journey_id, c) for c in batch})
                if reentry == "after_exit"
                else set()
            )
        todo = [c for c in batch if ids[c] not in known and (version.journey_id, c) not in inside]
        counts.skipped += len(batch) - len(todo)

        async def start_one(customer_id: int, workflow_id: str) -> bool:
            ref = EventRef(id=0, name="$manual", properties=dict(properties or {}))
            async with gate:
                return await start_enrollment(
                    client, version, customer_id, workflow_id, ref, task_queue=task_queue
                )

        started = await asyncio.gather(*(start_one(c, ids[c]) for c in todo))
        done = [c for c, ok in zip(todo, started, strict=True) if ok]
        recorded = await record_started(client, sessions, [started_row(version, ids[c], c) for c in done])
        counts.skipped += len(todo) - recorded
        counts.enrolled += recorded
    return counts


def _workflow_id(journey_id: str, customer_id: int, reentry: str, key: str | None, run_key: str) -> str:
    if reentry == "once":
        return journeys.workflow_id_for(journey_id, customer_id)
    if reentry == "once_per_key":
        return journeys.workflow_id_for(journey_id, customer_id, key)
    return journeys.workflow_id_for(journey_id, customer_id, f"m{run_key}")
