from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import Admin, Marketer, Session
from domain.db import StoredInt
from domain.subscriptions import service as subscriptions
from domain.subscriptions.schemas import (
    FeedbackBatch,
    FeedbackResult,
    GroupIn,
    GroupOut,
    GroupUpdate,
    Preferences,
    SuppressionIn,
    SuppressionOut,
)

router = APIRouter(tags=["subscriptions"])


@router.post("/api/subscription-groups", status_code=201, response_model=GroupOut)
async def create_group(spec: GroupIn, session: Session, _: Marketer) -> GroupOut:
    return await subscriptions.create_group(session, spec)


@router.get("/api/subscription-groups", response_model=list[GroupOut])
async def list_groups(session: Session, _: Marketer) -> list[GroupOut]:
    return await subscriptions.list_groups(session)


@router.put(
    "/api/subscription-groups/{group_id}",
    response_model=GroupOut,
    summary="Edit; a changed opt_in re-evaluates the segments on the group",
)
async def update_group(group_id: str, spec: GroupUpdate, session: Session, _: Marketer) -> GroupOut:
    return await subscriptions.update_group(session, group_id, spec)


@router.get("/api/customers/{customer_id}/subscriptions", response_model=Preferences)
async def customer_preferences(customer_id: StoredInt, session: Session, _: Marketer) -> Preferences:
    return await subscriptions.preferences(session, customer_id)


@router.get("/api/suppressions", response_model=list[SuppressionOut])
async def list_suppressions(
    session: Session,
    _: Marketer,
    limit: int = Query(100, ge=1, le=1000),
    after_id: StoredInt | None = Query(None, description="Page: only entries after this id"),
) -> list[SuppressionOut]:
    return await subscriptions.list_suppressions(session, limit, after_id)


@router.post("/api/suppressions", status_code=204, summary="Suppress an address by hand")
async def add_suppression(spec: SuppressionIn, session: Session, _: Marketer) -> None:
    await subscriptions.add_suppression(session, spec)


@router.delete("/api/suppressions/{address:path}", status_code=204, summary="Lift a suppression")
async def remove_suppression(address: str, session: Session, _: Admin) -> None:
    # ":path": a local part may hold a "/" (RFC 5322 atext), which the router decodes before matching
    await subscriptions.remove_suppression(session, address)


@router.post(
    "/api/webhooks/email-feedback",
    response_model=FeedbackResult,
    summary="Bounces and complaints from the mail provider (admin key)",
)
async def email_feedback(batch: FeedbackBatch, session: Session, _: Admin) -> FeedbackResult:
    return await subscriptions.record_feedback(session, batch)
