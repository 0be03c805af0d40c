from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import Marketer, Session
from domain.db import StoredInt
from domain.email import service as email
from domain.email.schemas import MessageOut

router = APIRouter(prefix="/api/messages", tags=["messages"])


@router.get("", response_model=list[MessageOut], summary="The delivery ledger, newest first")
async def list_messages(
    session: Session,
    _: Marketer,
    customer_id: StoredInt | None = None,
    journey_id: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    before_id: StoredInt | None = Query(None, description="Page: only messages older than this id"),
) -> list[MessageOut]:
    return await email.list_messages(
        session, customer_id=customer_id, journey_id=journey_id, limit=limit, before_id=before_id
    )
