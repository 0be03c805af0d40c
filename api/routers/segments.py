from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import Marketer, Session
from domain.db import StoredInt
from domain.segments import service as segments
from domain.segments.schemas import (
    MembersPage,
    PreviewIn,
    PreviewOut,
    SegmentIn,
    SegmentOut,
    SegmentUpdate,
    SegmentVersionOut,
    TiersOut,
)

router = APIRouter(prefix="/api/segments", tags=["segments"])


@router.post(
    "", status_code=201, response_model=SegmentOut, summary="Create a segment and compute its members"
)
async def create_segment(spec: SegmentIn, session: Session, _: Marketer) -> SegmentOut:
    return await segments.create(session, spec)


@router.get("", response_model=list[SegmentOut])
async def list_segments(session: Session, _: Marketer) -> list[SegmentOut]:
    return await segments.list_all(session)


@router.post("/preview", response_model=PreviewOut, summary="Count and sample who a rule selects, unsaved")
async def preview_segment(spec: PreviewIn, session: Session, _: Marketer) -> PreviewOut:
    return await segments.preview(session, spec)


@router.get("/tiers", response_model=TiersOut, summary="Value tier boundaries and revenue share (Pareto)")
async def value_tiers(session: Session, _: Marketer) -> TiersOut:
    return await segments.tiers(session)


@router.get("/{segment_id}", response_model=SegmentOut)
async def get_segment(segment_id: str, session: Session, _: Marketer) -> SegmentOut:
    return await segments.get(session, segment_id)


@router.put("/{segment_id}", response_model=SegmentOut, summary="Edit; a new rule makes a new version")
async def update_segment(segment_id: str, spec: SegmentUpdate, session: Session, _: Marketer) -> SegmentOut:
    return await segments.update(session, segment_id, spec)


@router.delete("/{segment_id}", status_code=204, summary="Delete (refused while a published journey uses it)")
async def delete_segment(segment_id: str, session: Session, _: Marketer) -> Response:
    await segments.delete(session, segment_id)
    return Response(status_code=204)


@router.get("/{segment_id}/versions", response_model=list[SegmentVersionOut])
async def segment_versions(segment_id: str, session: Session, _: Marketer) -> list[SegmentVersionOut]:
    return await segments.versions(session, segment_id)


@router.get("/{segment_id}/members", response_model=MembersPage, summary="Current members, by customer id")
async def segment_members(
    segment_id: str,
    session: Session,
    _: Marketer,
    # The bounds go inside the Query: a Query's own ge/le replace those of StoredInt it is given with.
    after: Annotated[
        StoredInt, Query(ge=0, description="Customer id to continue after (next_after of the last page).")
    ] = 0,
    limit: int = Query(100, ge=1, le=1000),
) -> MembersPage:
    return await segments.members(session, segment_id, after=after, limit=limit)
