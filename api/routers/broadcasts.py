from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import APIRouter, Query, Request
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.deps import Marketer, Session
from api.temporal import TemporalUnavailable, temporal_client
from config.settings import Settings
from domain.broadcasts import service as broadcasts
from domain.broadcasts.schemas import BroadcastIn, BroadcastOut
from domain.db import transaction
from domain.errors import Conflict
from runtime import broadcast_start

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/broadcasts", tags=["broadcasts"])
# A create's attempt at starting the workflow ends well within its grace (broadcasts.CREATE_GRACE), past
# which the start sweep would start it instead.
START_TIMEOUT = timedelta(seconds=30)


@router.post("", status_code=201, response_model=BroadcastOut, summary="Send a template to an audience")
async def create_broadcast(spec: BroadcastIn, session: Session, principal: Marketer, request: Request):
    # validated first: a bad request is a 422 even if Temporal is down
    row = await broadcasts.create(session, spec, by=principal)  # stored as starting
    # Committed before Temporal is reached (and its client fetched): the request's transaction holds
    # SQLite's write lock (on PostgreSQL the new id), which every other writer would wait on.
    await session.commit()
    try:
        temporal = await temporal_client(request)
        settings: Settings = request.app.state.settings
        await broadcast_start.start(
            temporal,
            row.id,
            row.send_at,
            row.local_send_at is not None,
            task_queue=settings.temporal_task_queue,
            rpc_timeout=START_TIMEOUT,
        )
    except Exception as exc:
        async with transaction(request.app.state.sessions) as undo:
            withdrawn = await broadcasts.withdraw(undo, row.id)
        if withdrawn:
            if (refusal := _not_started(row.id, exc)) is None:
                raise
            raise refusal from exc
        # Its workflow took the broadcast on (the start failed only as seen from here), or this create
        # outlasted its grace and the start sweep starts it: either way it is answered as it stands.
        async with transaction(request.app.state.sessions) as look:
            return broadcasts.out(await broadcasts.get(look, row.id))
    async with transaction(request.app.state.sessions) as confirm:  # the request's was committed
        return broadcasts.out(await broadcasts.started(confirm, row.id))


def _not_started(broadcast_id: str, exc: Exception) -> Exception | None:
    """What a create whose workflow did not start answers (its row withdrawn); None: the error itself."""
    if isinstance(exc, WorkflowAlreadyStartedError):  # a withdrawn broadcast's workflow kept the id
        problem = f"a broadcast with id {broadcast_id!r} was started before; use another id"
        return Conflict({"field": "id", "problem": problem})
    if isinstance(exc, RPCError | TemporalUnavailable):
        return TemporalUnavailable(f"could not start the broadcast (nothing was stored): {exc}")
    return None


@router.get("", response_model=list[BroadcastOut])
async def list_broadcasts(session: Session, _: Marketer, limit: int = Query(50, ge=1, le=500)):
    return await broadcasts.list_broadcasts(session, limit)


@router.get("/{broadcast_id}", response_model=BroadcastOut, summary="Status and progress")
async def get_broadcast(broadcast_id: str, session: Session, _: Marketer) -> BroadcastOut:
    return broadcasts.out(await broadcasts.get(session, broadcast_id))


async def _steer(broadcast_id: str, action: str, request: Request, session, principal) -> BroadcastOut:
    answer = broadcasts.out(await broadcasts.change(session, broadcast_id, action, by=principal))
    # Committed before Temporal is reached (and its client fetched): the request's transaction holds
    # SQLite's write lock, which every other writer would wait on for as long as Temporal takes.
    await session.commit()
    try:
        temporal = await temporal_client(request)
        await temporal.get_workflow_handle(broadcasts.workflow_id(broadcast_id)).signal(action)
    except (RPCError, TemporalUnavailable) as exc:
        if action != "resume":  # stored, and honoured by the workflow before its next batch
            log.warning(
                "broadcast %s: %s stored, but the workflow was not signalled: %s", broadcast_id, action, exc
            )
            return answer
        async with transaction(request.app.state.sessions) as undo:
            await broadcasts.resume_not_delivered(undo, broadcast_id, answer.status)
        raise TemporalUnavailable(f"could not resume the broadcast (it stays paused): {exc}") from exc
    return answer


@router.post("/{broadcast_id}/pause", response_model=BroadcastOut, summary="Pause after the current batch")
async def pause(broadcast_id: str, request: Request, session: Session, principal: Marketer):
    return await _steer(broadcast_id, "pause", request, session, principal)


@router.post("/{broadcast_id}/resume", response_model=BroadcastOut)
async def resume(broadcast_id: str, request: Request, session: Session, principal: Marketer):
    return await _steer(broadcast_id, "resume", request, session, principal)


@router.post("/{broadcast_id}/cancel", response_model=BroadcastOut, summary="Stop; nothing more is sent")
async def cancel(broadcast_id: str, request: Request, session: Session, principal: Marketer):
    return await _steer(broadcast_id, "cancel", request, session, principal)
