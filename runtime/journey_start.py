"""Starting one enrollment's JourneyWorkflow: the router, the anniversary sweep and bulk enrollment
all start workflows the same way."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.contracts import EventRef
from domain.db import transaction
from domain.journeys import service as journeys
from runtime import forget
from workflows.journey import JourneyInput, JourneyWorkflow


async def start_enrollment(
    client: Client,
    version,
    customer_id: int,
    workflow_id: str,
    entry: EventRef,
    *,
    task_queue: str,
    signal_entry: bool = False,
) -> bool:
    """Start the workflow on ``version``; False when this id has run before (REJECT_DUPLICATE).

    ``signal_entry`` delivers the entry event as a signal-with-start, so a retried trigger that finds
    the workflow running signals it (the workflow ignores an event id it has seen) instead of failing.
    """
    signal = {"start_signal": "event", "start_signal_args": [entry]} if signal_entry else {}
    try:
        await client.start_workflow(
            JourneyWorkflow.run,
            JourneyInput(
                journey_id=version.journey_id,
                version=version.version,
                customer_id=customer_id,
                definition=version.definition,
                entry_event=entry,
            ),
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            **signal,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


def started_row(version, workflow_id: str, customer_id: int, event_id: int | None = None) -> dict:
    """One enrollment just started on ``version``, as ``record_started`` takes it (``event_id``: the
    event that enrolled the customer, None for the API and the anniversary sweep)."""
    return {
        "workflow_id": workflow_id,
        "journey_id": version.journey_id,
        "version": version.version,
        "customer_id": customer_id,
        "event_id": event_id,
    }


async def record_started(client: Client, sessions: async_sessionmaker[AsyncSession], rows: list[dict]) -> int:
    """Record enrollments just started (``started_row``s); returns how many.

    A customer erased between the start and this record had their enrollments deleted from Temporal
    by the erasure, which could not see these: they are deleted here, so a journey that started
    while its customer was being forgotten keeps nothing of them.
    """
    async with transaction(sessions) as session:
        orphans = await journeys.record_enrollments(session, rows)
    if orphans:
        await forget.delete_histories(client, orphans)
    return len(rows) - len(orphans)
