from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from domain.dates import is_zone
from domain.db import StoredInt, StoredTime, VersionNumber
from domain.email.schemas import SLUG
from domain.events.schemas import normalise_email
from domain.journeys.definition import Duration

DEFINITION = Field(
    description=(
        "`nodes` (one `entry`: trigger `event`, `segment` with `segment_id`, `date_trait` or `manual`) and "
        "`rules`: `goal` (`{event, where}` or `{segment}`), `exit_when`, `frequency_cap` "
        "(`{max, window, on_limit}`), `quiet_hours` (`{start, end, on_limit}`), `send_rate` "
        "(`{max, per}`, per second|minute|hour|day, across all enrollments; never drops), "
        "`default_timezone`. Validated on save: 422 names the node or path and the problem."
    ),
    examples=[
        {
            "nodes": [
                {"id": "start", "type": "entry", "trigger": "segment", "segment_id": "vips", "next": "hi"},
                {"id": "hi", "type": "send_email", "template_id": "vip-welcome", "next": "done"},
                {"id": "done", "type": "exit"},
            ],
            "rules": {"goal": {"segment": "buyers"}, "send_rate": {"max": 100, "per": "minute"}},
        }
    ],
)


class JourneyIn(BaseModel):
    id: str | None = Field(None, pattern=SLUG, description="Your own id (slug); generated when absent.")
    name: str = Field(min_length=1, max_length=200)
    definition: dict[str, Any] = DEFINITION


class JourneyUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    definition: dict[str, Any] = DEFINITION


class JourneyOut(BaseModel):
    id: str
    name: str
    status: str
    published_version: int | None
    definition: dict[str, Any] = Field(description="The draft; published versions are immutable.")
    created_at: datetime
    updated_at: datetime


class JourneyVersionOut(BaseModel):
    journey_id: str
    version: int
    definition: dict[str, Any]
    published_at: datetime


class EnrollmentOut(BaseModel):
    id: int  # pass the last one's as before_id for the next page
    workflow_id: str
    journey_id: str
    version: int
    customer_id: int
    status: str
    entered_at: datetime
    completed_at: datetime | None
    # The enrollment a profile merge kept instead of this one (status "exited"), else None.
    superseded_by: str | None = None


class StepOut(BaseModel):
    node_id: str
    visit: int
    entered_at: datetime
    left_at: datetime | None
    outcome: str | None


class EnrollmentPath(EnrollmentOut):
    path: list[StepOut]


class NodeStats(BaseModel):
    node_id: str
    entered: int = Field(description="Visits to the node.")
    completed: int = Field(description="Visits that moved on.")
    waiting_now: int = Field(description="Active enrollments at the node now.")
    converted: int = Field(description="Enrollments that passed the node and reached the goal.")


class JourneyStats(BaseModel):
    journey_id: str
    enrollments: dict[str, int] = Field(description="Enrollments by status.")
    nodes: list[NodeStats]


class SimulatedEvent(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    properties: dict[str, Any] = Field(default_factory=dict)
    after: Duration | None = Field(None, description="When it happens, after entry: '2h', '3d'.")


class SimulatedCustomer(BaseModel):
    email: str | None = None
    traits: dict[str, Any] = Field(default_factory=dict)
    timezone: str | None = Field(None, description="IANA name; default the journey's default_timezone.")

    # Checked as ingestion checks a real customer's: a dry run with an address no send would take, or
    # a zone that would silently be the journey's default, would show a path the journey never takes.
    @field_validator("email")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else normalise_email(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not is_zone(value):
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Paris")
        return value


class SimulationIn(BaseModel):
    customer_id: StoredInt | None = Field(None, description="A real customer (read only), or describe one:")
    customer: SimulatedCustomer | None = None
    entry: SimulatedEvent | None = Field(None, description="The triggering event (default: the entry's).")
    events: list[SimulatedEvent] = Field(default_factory=list, max_length=100)
    segments: list[str] = Field(default_factory=list, description="Segments the customer is in.")
    case_resolved_after: Duration | None = Field(None, description="When an escalated case resolves.")
    points: StoredInt | None = Field(
        None, ge=0, description="Points to spend at entry (default: a real customer's balance, else 0)."
    )
    start: StoredTime | None = Field(
        None, description="Simulated entry time (default: now); without a UTC offset it is UTC."
    )
    version: VersionNumber | None = Field(None, description="A published version; default the draft.")

    @field_validator("start")
    @classmethod
    def _utc_unless_told(cls, value: datetime | None) -> datetime | None:
        # As ingestion reads an event time without a zone; the journey's clock arithmetic is aware.
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class SimulatedStep(BaseModel):
    node_id: str
    entered_at: datetime
    left_at: datetime | None = None
    outcome: str | None = None


class SimulatedMessage(BaseModel):
    node_id: str
    at: datetime
    to: str | None
    subject: str
    html: str
    text: str | None


class SimulationResult(BaseModel):
    status: str
    steps: list[SimulatedStep]
    messages: list[SimulatedMessage]


class EnrollIn(BaseModel):
    customer_ids: list[StoredInt] = Field(default_factory=list, max_length=10_000)
    user_ids: list[str] = Field(default_factory=list, max_length=10_000)
    properties: dict[str, Any] = Field(default_factory=dict, description="Seen by templates as properties.")
    key: str | None = Field(
        None, min_length=1, max_length=128, description="Makes a repeated call enroll nobody twice."
    )


class EnrollAccepted(BaseModel):
    accepted: int = Field(description="Known customers queued for enrollment (the re-entry policy applies).")
    unknown: int = Field(description="Ids that match no customer.")
