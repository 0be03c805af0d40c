"""Starting a broadcast's workflow: the API does it when the broadcast is created; the start sweep does
it for one the API stored but stopped before starting (its row left ``starting`` past the create's
grace, ``broadcasts.CREATE_GRACE``).

The sweep runs in every worker. The workflow id is the broadcast's and a duplicate start is refused, so
two sweeps at once (or a sweep and a late API) start it once; marking it scheduled is a compare-and-set
on ``starting``. A broadcast cancelled between the sweep's read and its start has a workflow that finds
it cancelled before its first batch and sends nothing; the sweep tells it at once, so it ends now.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from domain.broadcasts import service as broadcasts
from domain.db import transaction
from runtime.polling import poll_until_stopped
from workflows.broadcast import BroadcastInput, BroadcastWorkflow

log = logging.getLogger(__name__)

PAGE = 100


async def start(
    client: Client,
    broadcast_id: str,
    send_at: datetime | None,
    local_time: bool,
    *,
    task_queue: str,
    rpc_timeout: timedelta | None = None,
) -> None:
    """Raises WorkflowAlreadyStartedError when the id has a workflow (running, or kept after it ended)."""
    await client.start_workflow(
        BroadcastWorkflow.run,
        BroadcastInput(
            broadcast_id=broadcast_id,
            send_at=send_at.isoformat() if send_at else None,
            local_time=local_time,
        ),
        id=broadcasts.workflow_id(broadcast_id),
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        rpc_timeout=rpc_timeout,
    )


class BroadcastStartSweep:
    def __init__(
        self,
        client: Client,
        sessions: async_sessionmaker[AsyncSession],
        *,
        task_queue: str,
        poll_seconds: float = 30.0,
    ):
        self._client = client
        self._sessions = sessions
        self._task_queue = task_queue
        self._poll_seconds = poll_seconds

    async def run(self, stop: asyncio.Event) -> None:
        async def step() -> bool:
            return await self.sweep_once() == PAGE

        await poll_until_stopped(step, stop, self._poll_seconds, "broadcast start sweep")

    async def sweep_once(self, *, now: datetime | None = None) -> int:
        """Start the workflow of every broadcast left starting; returns how many it marked scheduled."""
        async with transaction(self._sessions) as session:
            left = await broadcasts.left_starting(session, now=now, limit=PAGE)
        marked = 0
        for broadcast in left:
            try:
                marked += await self._start(broadcast)
            except RPCError:  # Temporal unreachable: the next pass tries again
                log.warning("broadcast %s: workflow not started", broadcast.id, exc_info=True)
        return marked

    async def _start(self, b: broadcasts.Unstarted) -> bool:
        try:
            await start(self._client, b.id, b.send_at, b.local_time, task_queue=self._task_queue)
        except WorkflowAlreadyStartedError:  # by the API, or another worker's sweep, or an earlier broadcast
            if await self._ended_before_taking_it_on(b.id):
                return False
        async with transaction(self._sessions) as session:
            if await broadcasts.scheduled(session, b.id):
                log.info("broadcast %s: left starting by its create; workflow started", b.id)
                return True
            status = await broadcasts.status_of(session, b.id)
        if status in (None, "cancelled"):  # cancelled since it was read: end its workflow now
            try:
                await self._client.get_workflow_handle(broadcasts.workflow_id(b.id)).signal("cancel")
            except RPCError:  # it finds the status before its first batch anyway
                log.warning("broadcast %s: cancelled, its workflow not told", b.id, exc_info=True)
        return False

    async def _ended_before_taking_it_on(self, broadcast_id: str) -> bool:
        """The id's workflow has ended and the broadcast is still starting: it was an earlier
        broadcast's (one that ran took its row on): this one is failed, saying why."""
        handle = self._client.get_workflow_handle(broadcasts.workflow_id(broadcast_id))
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            return False
        async with transaction(self._sessions) as session:
            return await broadcasts.refused_id(session, broadcast_id)
