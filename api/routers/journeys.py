from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request
from temporalio.client import Client
from temporalio.service import RPCError

from activities.contracts import JOURNEY_STATUS_SIGNAL
from api.deps import Marketer, Session
from api.mail import factory
from domain.db import StoredInt, VersionNumber
from domain.journeys import service as journeys
from domain.journeys.schemas import (
    EnrollAccepted,
    EnrollIn,
    EnrollmentOut,
    EnrollmentPath,
    JourneyIn,
    JourneyOut,
    JourneyStats,
    JourneyUpdate,
    JourneyVersionOut,
    SimulationIn,
    SimulationResult,
)
from runtime.enrollment import enroll_customers
from runtime.temporal import connect

log = logging.getLogger(__name__)

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
async def get_version(
    journey_id: str, version: VersionNumber, session: Session, _: Marketer
) -> JourneyVersionOut:
    return await journeys.get_version(session, journey_id, version)


@router.get("/{journey_id}/enrollments", response_model=list[EnrollmentOut])
async def list_enrollments(
    journey_id: str,
    session: Session,
    _: Marketer,
    limit: int = Query(100, ge=1, le=1000),
    before_id: StoredInt | None = Query(None, description="Page: only enrollments older than this id"),
) -> list[EnrollmentOut]:
    return await journeys.enrollments(session, journey_id, limit, before_id=before_id)


async def _tell_enrollments(request: Request, workflow_ids: list[str], status: str) -> None:
    """Signal running enrollments about a status change, after the change is committed.

    Best effort: an enrollment that misses the signal still re-reads the status before its next send
    and while paused re-checks periodically, so a Temporal outage delays a resume, never loses it.
    """
    if not workflow_ids:
        return
    try:
        client = await _temporal(request)
        gate = asyncio.Semaphore(32)

        async def tell(workflow_id: str) -> None:
            async with gate:
                with contextlib.suppress(RPCError):
                    await client.get_workflow_handle(workflow_id).signal(JOURNEY_STATUS_SIGNAL, status)

        await asyncio.gather(*(tell(w) for w in workflow_ids))
    except Exception:
        log.warning("could not signal %d enrollments about %s", len(workflow_ids), status, exc_info=True)


async def _temporal(request: Request) -> Client:
    state = request.app.state
    if getattr(state, "temporal_client", None) is None:
        state.temporal_client = await asyncio.wait_for(connect(state.settings), timeout=5)
    return state.temporal_client


def _lifecycle(action: str, summary: str):
    async def change(
        journey_id: str, session: Session, _: Marketer, request: Request, background: BackgroundTasks
    ) -> JourneyOut:
        journey, running = await journeys.change_status(session, journey_id, action)
        background.add_task(_tell_enrollments, request, running, journey.status)
        return journey

    router.add_api_route(
        f"/{{journey_id}}/{action}", change, methods=["POST"], response_model=JourneyOut, summary=summary
    )


_lifecycle("pause", "Pause: customers inside hold before their next send; nobody new enters")
_lifecycle("resume", "Resume a paused journey: held customers continue")
_lifecycle("archive", "Archive: nobody new enters; customers inside leave at their next send")


@router.get(
    "/{journey_id}/stats",
    response_model=JourneyStats,
    summary="Per node: entered, completed, waiting, converted",
)
async def journey_stats(journey_id: str, session: Session, _: Marketer) -> JourneyStats:
    return await journeys.stats(session, journey_id)


@router.get(
    "/{journey_id}/enrollments/{customer_id}",
    response_model=list[EnrollmentPath],
    summary="A customer's path through the journey, with times",
)
async def customer_path(
    journey_id: str, customer_id: StoredInt, session: Session, _: Marketer
) -> list[EnrollmentPath]:
    return await journeys.enrollment_paths(session, journey_id, customer_id)


@router.post(
    "/{journey_id}/simulate",
    response_model=SimulationResult,
    summary="Dry run for one customer on a simulated clock: the path and the rendered messages, nothing sent",
)
async def simulate(
    journey_id: str, spec: SimulationIn, session: Session, _: Marketer, request: Request
) -> SimulationResult:
    return await journeys.simulate(session, journey_id, spec, factory(request))


@router.post(
    "/{journey_id}/enrollments",
    status_code=202,
    response_model=EnrollAccepted,
    summary="Enroll customers by API (journeys with a manual entry); runs after the response",
)
async def enroll(
    journey_id: str,
    spec: EnrollIn,
    session: Session,
    _: Marketer,
    request: Request,
    background: BackgroundTasks,
) -> EnrollAccepted:
    version, customer_ids, unknown = await journeys.manual_enrollment_target(session, journey_id, spec)
    try:
        client = await _temporal(request)
    except Exception as exc:
        raise HTTPException(503, "the workflow service cannot be reached; try again") from exc
    # After the response: enrolling thousands must not hold the request (or its transaction) open.
    background.add_task(
        _enroll_in_background, client, request, version, customer_ids, spec.properties, spec.key
    )
    return EnrollAccepted(accepted=len(customer_ids), unknown=unknown)


async def _enroll_in_background(client, request: Request, version, customer_ids, properties, key) -> None:
    try:
        counts = await enroll_customers(
            client,
            request.app.state.sessions,
            version,
            customer_ids,
            task_queue=request.app.state.settings.temporal_task_queue,
            properties=properties,
            key=key,
        )
        log.info("journey %s: enrolled %d, skipped %d", version.journey_id, counts.enrolled, counts.skipped)
    except Exception:
        log.exception("enrolling %d customers into %s failed", len(customer_ids), version.journey_id)
