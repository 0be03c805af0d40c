"""The case dispatcher: tells each case's CaseSlaWorkflow what changed.

Case changes are written to ``case_outbox`` in the same transaction as the change. This loop reads
them, signal-with-starts ``case/{id}/sla`` with the case's current state, then deletes the rows. A crash
in between repeats the pass: the workflow keeps only the newest revision, so a repeat changes nothing.

A case erased with its customer between the read and the start had its clock deleted by the erasure
before this start recreated it, as a journey started during an erasure is (runtime/journey_start.py):
the pass deletes it again once the erasure has committed.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from domain.cases import service as cases
from domain.db import transaction
from runtime import forget
from runtime.polling import poll_until_stopped
from workflows.case_sla import CASE_CHANGED_SIGNAL, CaseSlaInput, CaseSlaWorkflow, CaseState, sla_workflow_id

log = logging.getLogger(__name__)


class CaseDispatcher:
    def __init__(
        self,
        client: Client,
        sessions: async_sessionmaker[AsyncSession],
        *,
        task_queue: str,
        poll_seconds: float = 0.2,
        batch_size: int = 200,
    ):
        self._client = client
        self._sessions = sessions
        self._task_queue = task_queue
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size

    async def run(self, stop: asyncio.Event) -> None:
        async def step() -> bool:
            return await self.dispatch_once() > 0

        await poll_until_stopped(step, stop, self._poll_seconds, "case dispatch pass")

    async def dispatch_once(self) -> int:
        async with transaction(self._sessions) as session:
            changes = await cases.pending_sla_changes(session, self._batch_size)
        if not changes:
            return 0
        # The state is read fresh from the case, so one signal per case carries every change.
        latest = {c.case_id: c for c in changes}
        await asyncio.gather(*(self._signal(c) for c in latest.values()))
        async with transaction(self._sessions) as session:
            # The customers are held before the rows go, the order an erasure takes them in.
            erased = await cases.erased_since(session, {c.case_id: c.customer_id for c in latest.values()})
            await cases.sla_changes_done(session, [c.outbox_id for c in changes])
        if erased:
            await self._forget(erased)
        return len(changes)

    async def _forget(self, case_ids: list[int]) -> None:
        try:
            await forget.delete_histories(self._client, [sla_workflow_id(c) for c in case_ids])
        except RPCError:  # the clock, finding its case gone at its deadline, stops by itself anyway
            log.warning("SLA clocks of erased cases %s not deleted", case_ids, exc_info=True)

    async def _signal(self, change: cases.SlaState) -> None:
        try:
            await self._client.start_workflow(
                CaseSlaWorkflow.run,
                CaseSlaInput(
                    case_id=change.case_id,
                    first_response_due=change.first_response_due.isoformat(),
                    resolution_due=change.resolution_due.isoformat(),
                    waiting_workflow_id=change.waiting_workflow_id,
                ),
                id=sla_workflow_id(change.case_id),
                task_queue=self._task_queue,
                start_signal=CASE_CHANGED_SIGNAL,
                start_signal_args=[
                    CaseState(
                        revision=change.revision,
                        status=change.status,
                        first_responded=change.first_responded,
                        outcome=change.outcome,
                        breached=change.breached,
                    )
                ],
                # One clock per case, ever: a finished clock is not restarted by a late change.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            log.debug("case %s: SLA workflow already finished; change dropped", change.case_id)
