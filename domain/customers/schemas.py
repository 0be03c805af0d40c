from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer

# Money leaves the API as a JSON number with two decimals (stored exactly as NUMERIC).
Money = Annotated[Decimal, PlainSerializer(lambda v: float(v), return_type=float, when_used="json")]


class CustomerSummary(BaseModel):
    id: int
    user_id: str | None
    anonymous_id: str | None
    email: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    event_count: int
    lifetime_value: Money


class CustomerPage(BaseModel):
    items: list[CustomerSummary]
    next_after: int | None = Field(description="Pass as `after` for the next page; null on the last page.")


class Profile(BaseModel):
    id: int
    user_id: str | None
    anonymous_ids: list[str] = Field(description="The visitor ids merged into this customer.")
    former_user_ids: list[str] = Field(
        default_factory=list,
        description="userIds the customer had before (an alias renamed the profile or merged one into it): "
        "calls still sent under them land on this customer.",
    )
    email: str | None
    timezone: str | None
    locale: str | None
    created_at: datetime
    updated_at: datetime


class Facts(BaseModel):
    first_seen_at: datetime
    last_seen_at: datetime
    event_count: int = Field(description="Every call stored for this customer (track, identify, page, ...).")
    track_counts: dict[str, int] = Field(description="Track events by name.")
    order_count: int
    lifetime_value: Money


class EventSummary(BaseModel):
    id: int
    message_id: str
    type: str
    name: str | None
    properties: dict[str, Any]
    traits: dict[str, Any]
    timestamp: datetime
    received_at: datetime


class JourneyEnrollment(BaseModel):
    journey_id: str
    version: int
    workflow_id: str
    status: str
    entered_at: datetime
    completed_at: datetime | None


class MessageSummary(BaseModel):
    id: int
    template_id: str | None
    journey_id: str | None
    subject: str | None
    to_address: str | None
    status: str
    created_at: datetime
    sent_at: datetime | None


class SegmentStay(BaseModel):
    segment_id: str
    name: str
    entered_at: datetime
    exited_at: datetime | None  # null while the customer is in the segment


class Customer360(BaseModel):
    """Everything known about one customer. Sections beyond the profile come from the areas that own
    them (see ``domain/customers/sections.py``); a section whose area is not installed is null."""

    profile: Profile
    traits: dict[str, Any]
    facts: Facts
    recent_events: list[EventSummary]
    journeys: list[JourneyEnrollment] | None = None
    messages: list[MessageSummary] | None = None
    segments: list[SegmentStay] | None = None
    loyalty: dict[str, Any] | None = None
    cases: list[dict[str, Any]] | None = None


class Erasure(BaseModel):
    id: int
    customer_id: int
    events_erased: int
    workflows_deleted: int = Field(description="Workflow histories this erasure deleted from Temporal.")
    workflows_already_gone: int = Field(
        description="The person's workflows Temporal no longer knew: deleted by an earlier attempt that "
        "was interrupted, or by Temporal's retention."
    )
    erased_at: datetime
    erased_by_key_id: int | None
    reason: str | None
