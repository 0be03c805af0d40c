"""What Temporal keeps of a person who asks to be forgotten, and deleting it.

A journey's history holds the events that drove it (their properties) and what its steps read and
wrote; a case's SLA clock holds the case. The database erasure cannot reach them, and a running journey
would otherwise wait out its timers for months. Erasure deletes them first (a running one stops).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.cases import service as cases
from domain.journeys import service as journeys
from workflows.case_sla import sla_workflow_id

# Deletions in flight at once: a customer in hundreds of journeys should not queue them one by one,
# nor flood the server.
PARALLEL_DELETES = 16


async def workflow_ids(session: AsyncSession, customer_id: int) -> list[str]:
    """The customer's journeys (running or finished, their merged visitor profiles' too) and the SLA
    clocks of their cases."""
    journey_ids = await journeys.workflow_ids_of_customer(session, customer_id)
    return journey_ids + [sla_workflow_id(c) for c in await cases.case_ids_of_customer(session, customer_id)]


@dataclass(frozen=True)
class Deletions:
    deleted: int  # histories this call deleted
    already_gone: int  # ids Temporal does not know: deleted by an earlier, interrupted erasure or by
    # its retention, or never started


async def delete_histories(client: Client, ids: list[str]) -> Deletions:
    """Delete these workflows' histories (terminating those still running). An id Temporal does not
    know is counted apart, so an erasure repeated after a partial failure still accounts for every
    history; any other refusal raises."""
    gate = asyncio.Semaphore(PARALLEL_DELETES)

    async def delete(workflow_id: str) -> bool:
        request = DeleteWorkflowExecutionRequest(
            namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id)
        )
        async with gate:
            try:
                await client.workflow_service.delete_workflow_execution(request)
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return False
                raise
        return True

    try:
        async with asyncio.TaskGroup() as group:  # a refusal cancels the deletions not yet sent
            deleted = [group.create_task(delete(i)) for i in ids]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    done = sum(task.result() for task in deleted)
    return Deletions(deleted=done, already_gone=len(ids) - done)
