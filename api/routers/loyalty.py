from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response

from api.deps import Admin, Marketer, Session, require
from domain.auth.schemas import Principal, Role
from domain.db import StoredInt, utcnow
from domain.errors import InvalidInput
from domain.loyalty import service as loyalty
from domain.loyalty.schemas import (
    AccountOut,
    AdjustIn,
    AuditOut,
    EntryOut,
    MovementOut,
    ProgramIn,
    ProgramOut,
    RedeemIn,
)

router = APIRouter(prefix="/api/loyalty", tags=["loyalty"])

Reader = Annotated[Principal, Depends(require(Role.marketer, Role.agent))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Any unique string (e.g. the order id). Repeating a request with the same key "
        "returns the first result and moves no points.",
    ),
]


def _key(value: str | None, *, required: bool) -> str | None:
    if value is None or not value.strip():
        if required:
            raise InvalidInput(
                {
                    "field": "Idempotency-Key",
                    "problem": "this header is required so a retry never spends twice",
                },
                code="idempotency_key_required",
            )
        return None
    value = value.strip()
    if len(value) > 255:
        raise InvalidInput({"field": "Idempotency-Key", "problem": "at most 255 characters"})
    return value


@router.get("/program", response_model=ProgramOut, summary="The programme: earning rules, tiers, expiry")
async def get_program(session: Session, _: Reader) -> ProgramOut:
    return await loyalty.get_program(session)


@router.put("/program", response_model=ProgramOut, summary="Replace the programme (admin)")
async def put_program(spec: ProgramIn, session: Session, _: Admin) -> ProgramOut:
    """The whole programme: every field is required (422 names each one missing). Dropping or renaming
    a tier a segment rule names is a 409 ``tier_in_use`` naming those segments and journeys."""
    return await loyalty.put_program(session, spec.config(), utcnow())


@router.get("/{customer_id}", response_model=AccountOut, summary="Balance, tier and points about to expire")
async def get_account(
    customer_id: StoredInt,
    session: Session,
    _: Reader,
    expiring_within_days: int = Query(30, ge=1, le=3650),
) -> AccountOut:
    return await loyalty.account(session, customer_id, utcnow(), expiring_within_days=expiring_within_days)


@router.get("/{customer_id}/history", response_model=list[EntryOut], summary="Ledger entries, newest first")
async def get_history(
    customer_id: StoredInt,
    session: Session,
    _: Reader,
    limit: int = Query(50, ge=1, le=500),
    before_id: StoredInt | None = Query(None, description="Page: only entries older than this id"),
) -> list[EntryOut]:
    return await loyalty.history(session, customer_id, limit=limit, before_id=before_id)


@router.get(
    "/{customer_id}/audit",
    response_model=AuditOut,
    summary="Recompute balance, lots and tier from the ledger alone and compare with the stored ones",
)
async def get_audit(customer_id: StoredInt, session: Session, _: Admin) -> AuditOut:
    return await loyalty.audit(session, customer_id)


@router.post(
    "/{customer_id}/redeem",
    response_model=MovementOut,
    status_code=201,
    summary="Spend points (oldest first); 409 when the balance does not cover them",
)
async def redeem(
    customer_id: StoredInt,
    spec: RedeemIn,
    session: Session,
    response: Response,
    _: Marketer,
    idempotency_key: IdempotencyKey = None,
) -> MovementOut:
    key = _key(idempotency_key, required=True)
    result = await loyalty.redeem(session, customer_id, key, spec, utcnow())
    if result.replayed:
        response.status_code = 200
    return result


@router.post(
    "/{customer_id}/adjust",
    response_model=MovementOut,
    status_code=201,
    summary="Credit or debit points with a reason (admin)",
)
async def adjust(
    customer_id: StoredInt,
    spec: AdjustIn,
    session: Session,
    response: Response,
    principal: Admin,
    idempotency_key: IdempotencyKey = None,
) -> MovementOut:
    now = utcnow()
    # Without a key an adjustment is its own request; with one, a retry is recognised.
    key = _key(idempotency_key, required=False) or f"auto-{uuid.uuid4()}"
    result = await loyalty.adjust(session, customer_id, key, spec, now, by=principal.name)
    if result.replayed:
        response.status_code = 200
    return result
