from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import Marketer, Session
from domain.journeys import service as journeys
from domain.journeys.schemas import EnrollmentOut, JourneyIn, JourneyOut, JourneyUpdate, JourneyVersionOut

router = APIRouter(prefix="/api/journeys", tags=["journeys"])


@router.post("", status_code=201, response_model=JourneyOut, summary="Create a journey (draft)")
async def create_journey(spec: JourneyIn, session: Session, _: Marketer) -> JourneyOut:
    return await journeys.create(session, spec)


@router.get("", response_model=list[JourneyOut])
async def list_journeys(session: Session, _: Marketer) -> list[JourneyOut]:
    return await journeys.list_all(session)


@router.get("/{journey_id}", response_model=JourneyOut)
async def get_journey(journey_id: str, session: Session, _: Marketer) -> JourneyOut:
    return await journeys.get(session, journey_id)


@router.put("/{journey_id}", response_model=JourneyOut, summary="Edit the draft")
async def update_journey(journey_id: str, spec: JourneyUpdate, session: Session, _: Marketer) -> JourneyOut:
    return await journeys.update(session, journey_id, spec)


@router.post(
    "/{journey_id}/publish",
    status_code=201,
    response_model=JourneyVersionOut,
    summary="Publish the draft as a new immutable version; new entries use it",
)
async def publish_journey(journey_id: str, session: Session, _: Marketer) -> JourneyVersionOut:
    return await journeys.publish(session, journey_id)


@router.get("/{journey_id}/versions/{version}", response_model=JourneyVersionOut)
async def get_version(journey_id: str, version: int, session: Session, _: Marketer) -> JourneyVersionOut:
    return await journeys.get_version(session, journey_id, version)


@router.get("/{journey_id}/enrollments", response_model=list[EnrollmentOut])
async def list_enrollments(
    journey_id: str, session: Session, _: Marketer, limit: int = Query(100, ge=1, le=1000)
) -> list[EnrollmentOut]:
    return await journeys.enrollments(session, journey_id, limit)
