"""Customer 360: find a customer, see everything about them, erase them on request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from temporalio.service import RPCError

from api.deps import Admin, Session, require
from api.temporal import TemporalUnavailable, temporal_client
from domain.auth.schemas import Principal, Role
from domain.cases import service as cases
from domain.customers import service as customers
from domain.customers.schemas import Customer360, CustomerPage, Erasure
from domain.customers.sections import Viewer
from domain.db import StoredInt
from runtime import forget

router = APIRouter(prefix="/api/customers", tags=["customers"])

# Marketers and support agents both look customers up.
Reader = Annotated[Principal, Depends(require(Role.marketer, Role.agent))]


@router.get("", response_model=CustomerPage, summary="Search customers by id, email or trait (paged)")
async def search_customers(
    session: Session,
    _: Reader,
    q: Annotated[
        str | None, Query(max_length=255, description="userId, anonymousId, email or customer id")
    ] = None,
    email: Annotated[str | None, Query(max_length=320, description="email, or its beginning")] = None,
    trait: Annotated[str | None, Query(max_length=400, description="key:value, e.g. plan:pro")] = None,
    after: Annotated[StoredInt | None, Query(ge=0, description="next_after of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CustomerPage:
    return await customers.search(session, q=q, email=email, trait=trait, after=after, limit=limit)


@router.get("/erasures", response_model=list[Erasure], summary="Was this userId erased? (audit)")
async def list_erasures(
    session: Session, _: Admin, user_id: Annotated[str, Query(min_length=1, max_length=255)]
) -> list[Erasure]:
    return await customers.erasures_of(session, user_id)


@router.get("/{customer_id}", response_model=Customer360, summary="Everything known about one customer")
async def get_customer(
    customer_id: StoredInt,
    session: Session,
    reader: Reader,
    recent: Annotated[int, Query(ge=1, le=500, description="How many recent events and messages")] = 50,
) -> Customer360:
    viewer = Viewer(case_teams=await cases.teams_visible_to(session, reader))
    return await customers.view(session, customer_id, recent=recent, viewer=viewer)


@router.delete("/{customer_id}", response_model=Erasure, summary="Erase the customer (right to be forgotten)")
async def erase_customer(
    customer_id: StoredInt,
    request: Request,
    session: Session,
    admin: Admin,
    reason: Annotated[
        str,
        Query(
            min_length=1,
            max_length=500,
            description="Why the person is erased (e.g. a request reference); kept in the erasure record.",
        ),
    ],
) -> Erasure:
    reason = customers.erasure_reason(reason, "query.reason")  # before anything is held or deleted
    # Temporal's copies go first: if they cannot, nothing is erased and the request can be repeated
    # (deleting is idempotent); a customer with no journey or case needs no Temporal at all.
    await customers.hold_for_erasure(session, customer_id)
    deleted = forget.Deletions(deleted=0, already_gone=0)
    if workflow_ids := await forget.workflow_ids(session, customer_id):
        try:
            deleted = await forget.delete_histories(await temporal_client(request), workflow_ids)
        except (TemporalUnavailable, RPCError) as exc:
            problem = exc.message if isinstance(exc, RPCError) else exc.detail
            raise TemporalUnavailable(
                f"could not delete the customer's workflow histories ({problem}); nothing was erased"
            ) from exc
    return await customers.erase(
        session,
        customer_id,
        by_key_id=admin.key_id,
        reason=reason,
        workflows_deleted=deleted.deleted,
        workflows_already_gone=deleted.already_gone,
    )
