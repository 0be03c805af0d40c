from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import Session
from domain.db import utcnow
from domain.events import repository as events
from domain.segments import service as segments


class Health(BaseModel):
    status: str
    database: str
    routing_backlog: int
    routing_lag_seconds: float
    # Segments a background pass could not evaluate (GET /api/segments/{id} says why): stale.
    failing_segments: list[str]


router = APIRouter(tags=["health"])


@router.get(
    "/api/health", response_model=Health, summary="Liveness, database, event-routing lag and stale segments"
)
async def health(session: Session) -> Health:
    backlog, oldest = await events.backlog(session)
    lag = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    return Health(
        status="ok",
        database="ok",
        routing_backlog=backlog,
        routing_lag_seconds=max(lag, 0.0),
        failing_segments=await segments.failing(session),
    )
