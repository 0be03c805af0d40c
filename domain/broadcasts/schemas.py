from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, NaiveDatetime, field_validator, model_validator

from domain.dates import is_zone
from domain.db import EARLIEST, LATEST, StoredInt, VersionNumber

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class AllCustomers(BaseModel):
    kind: Literal["all"]


class CustomerList(BaseModel):
    kind: Literal["customers"]
    customer_ids: list[Annotated[StoredInt, Field(ge=1)]] = Field(min_length=1, max_length=100_000)


class SegmentAudience(BaseModel):
    kind: Literal["segment"]
    segment_id: str = Field(min_length=1, max_length=64)


Audience = Annotated[AllCustomers | CustomerList | SegmentAudience, Field(discriminator="kind")]


class BroadcastIn(BaseModel):
    id: str | None = Field(None, pattern=SLUG, description="Your own id (slug); generated when absent.")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["marketing", "operational"] = Field(
        "marketing",
        description="operational: a notice every customer must get (terms, security, shutdown), sent "
        "with a transactional template past marketing unsubscribes and groups, never past bounces or "
        "complaints; admin keys only, and it needs a reason.",
    )
    reason: str | None = Field(
        None, max_length=500, description="Why an operational broadcast is sent (kept for the audit)."
    )
    template_id: str = Field(min_length=1, max_length=64)
    template_version: VersionNumber | None = Field(
        None, ge=1, description="Default: the current version, pinned now."
    )
    subscription_group: str | None = Field(None, pattern=SLUG, description="Default: the template's group.")
    audience: Audience
    send_at: Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)] | None = Field(
        None, description="ISO 8601 with offset; default: now."
    )
    local_send_at: (
        Annotated[NaiveDatetime, Field(ge=EARLIEST.replace(tzinfo=None), lt=LATEST.replace(tzinfo=None))]
        | None
    ) = Field(
        None,
        description="Wall-clock time in each recipient's own timezone, e.g. 2030-03-01T09:00 (no offset).",
    )
    default_timezone: str = Field(
        "UTC",
        description="For customers without a timezone: the zone of their local_send_at, and of the "
        "times and dates their email shows.",
    )
    rate_per_second: int | None = Field(None, ge=1, le=100_000, description="Cap on messages per second.")
    batch_size: int = Field(500, ge=1, le=5000)

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not is_zone(value):
            raise ValueError(f"{value!r} is not an IANA timezone such as 'Europe/Paris'")
        return value

    @model_validator(mode="after")
    def _one_time(self) -> BroadcastIn:
        if self.send_at is not None and self.local_send_at is not None:
            raise ValueError("give send_at (one instant) or local_send_at (each recipient's time), not both")
        return self


class BroadcastOut(BaseModel):
    id: str
    name: str
    kind: str
    reason: str | None
    created_by_key_id: int | None
    template_id: str
    template_version: int
    subscription_group: str | None
    audience: dict
    send_at: datetime | None
    local_send_at: str | None
    default_timezone: str | None
    rate_per_second: int | None
    batch_size: int
    status: str
    cursor: int
    sent: int
    skipped: int
    failed: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
