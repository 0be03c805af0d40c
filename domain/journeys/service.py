"""Journeys: drafts, immutable published versions, enrollment records."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.db import utcnow
from domain.email import service as email
from domain.errors import Conflict, InvalidInput, NotFound
from domain.journeys import definition as graph
from domain.journeys import repository
from domain.journeys.models import Journey, JourneyVersion
from domain.journeys.schemas import EnrollmentOut, JourneyIn, JourneyOut, JourneyUpdate, JourneyVersionOut


def workflow_id_for(journey_id: str, customer_id: int) -> str:
    return f"journey/{journey_id}/customer/{customer_id}"


def _out(journey: Journey) -> JourneyOut:
    return JourneyOut(
        id=journey.id,
        name=journey.name,
        status=journey.status,
        published_version=journey.published_version,
        definition=journey.draft,
        created_at=journey.created_at,
        updated_at=journey.updated_at,
    )


async def _validated(session: AsyncSession, raw: dict) -> graph.JourneyDefinition:
    definition = graph.parse(raw)
    known = await email.current_versions(session, definition.template_ids())
    missing = [
        {"node": n.id, "problem": f"template {n.template_id!r} does not exist"}
        for n in definition.nodes
        if getattr(n, "template_id", None) is not None and n.template_id not in known
    ]
    if missing:
        raise InvalidInput(missing, code="invalid_definition")
    return definition


async def create(session: AsyncSession, spec: JourneyIn) -> JourneyOut:
    definition = await _validated(session, spec.definition)
    journey_id = spec.id or uuid.uuid4().hex[:12]
    if await repository.get(session, journey_id) is not None:
        raise Conflict({"field": "id", "problem": f"a journey with id {journey_id!r} exists"})
    journey = Journey(id=journey_id, name=spec.name, status="draft", draft=definition.model_dump(mode="json"))
    await repository.add(session, journey)
    return _out(journey)


async def update(session: AsyncSession, journey_id: str, spec: JourneyUpdate) -> JourneyOut:
    """Edits the draft. Running customers are untouched; publish to make the edit live."""
    journey = await _journey(session, journey_id)
    if journey.status == "archived":
        raise Conflict("an archived journey cannot be edited")
    definition = await _validated(session, spec.definition)
    journey.draft = definition.model_dump(mode="json")
    if spec.name:
        journey.name = spec.name
    return _out(journey)


async def publish(session: AsyncSession, journey_id: str) -> JourneyVersionOut:
    """Freeze the draft as the next version, pinning each template's current version."""
    journey = await _journey(session, journey_id)
    if journey.status == "archived":
        raise Conflict("an archived journey cannot be published")
    definition = await _validated(session, journey.draft)
    pinned = await email.current_versions(session, definition.template_ids())
    snapshot = definition.model_dump(mode="json")
    for node in snapshot["nodes"]:
        if node["type"] == "send_email":
            node["template_version"] = pinned[node["template_id"]]
        elif node["type"] == "wait":
            node["seconds"] = graph.parse_duration(node["duration"])
    number = await repository.latest_version_number(session, journey_id) + 1
    version = JourneyVersion(
        journey_id=journey_id,
        version=number,
        definition=snapshot,
        trigger_event=definition.entry.event,
        published_at=utcnow(),
    )
    await repository.add(session, version)
    journey.published_version = number
    journey.status = "published"
    return _version_out(version)


async def get(session: AsyncSession, journey_id: str) -> JourneyOut:
    return _out(await _journey(session, journey_id))


async def list_all(session: AsyncSession) -> list[JourneyOut]:
    return [_out(j) for j in await repository.list_all(session)]


async def get_version(session: AsyncSession, journey_id: str, version: int) -> JourneyVersionOut:
    found = await repository.get_version(session, journey_id, version)
    if found is None:
        raise NotFound(f"journey {journey_id!r} has no version {version}")
    return _version_out(found)


async def live_versions_for(session: AsyncSession, event_names: set[str]) -> list[JourneyVersionOut]:
    return [_version_out(v) for v in await repository.live_versions(session, event_names)]


async def enrollment_finished(session: AsyncSession, workflow_id: str) -> bool:
    found = await repository.enrollment(session, workflow_id)
    return found is not None and found.status != "active"


async def record_enrollment(
    session: AsyncSession, *, workflow_id: str, journey_id: str, version: int, customer_id: int, event_id: int
) -> None:
    await repository.record_enrollment(
        session,
        {
            "workflow_id": workflow_id,
            "journey_id": journey_id,
            "version": version,
            "customer_id": customer_id,
            "entry_event_id": event_id,
            "status": "active",
            "entered_at": utcnow(),
        },
    )


async def finish_enrollment(session: AsyncSession, workflow_id: str, status: str, at: datetime) -> None:
    await repository.finish_enrollment(session, workflow_id, status, at)


async def enrollments(session: AsyncSession, journey_id: str, limit: int = 100) -> list[EnrollmentOut]:
    await _journey(session, journey_id)
    return [
        EnrollmentOut.model_validate(e, from_attributes=True)
        for e in await repository.enrollments_of(session, journey_id, limit)
    ]


async def _journey(session: AsyncSession, journey_id: str) -> Journey:
    journey = await repository.get(session, journey_id)
    if journey is None:
        raise NotFound(f"no journey {journey_id!r}")
    return journey


def _version_out(version: JourneyVersion) -> JourneyVersionOut:
    return JourneyVersionOut(
        journey_id=version.journey_id,
        version=version.version,
        definition=version.definition,
        published_at=version.published_at,
    )
