from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, EmailStr, Field, field_validator

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class GroupIn(BaseModel):
    id: str = Field(pattern=SLUG, description="Slug used in templates, journeys and broadcasts.")
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    opt_in: bool = Field(
        False, description="Send only to customers who subscribed (else until they opt out)."
    )


class GroupUpdate(BaseModel):
    """A change to a group; fields left out keep their value. The id is fixed: templates, journeys,
    broadcasts and segment rules name it."""

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000, description="`null` clears it.")
    opt_in: bool | None = Field(
        None,
        description=(
            "Send only to customers who subscribed (else until they opt out). A change re-evaluates "
            "every segment with a `subscription` condition on the group."
        ),
    )

    @field_validator("name", "opt_in")
    @classmethod
    def _not_null(cls, value):
        if value is None:
            raise ValueError("leave the field out to keep it; it cannot be null")
        return value


class GroupOut(GroupIn):
    created_at: datetime


class SuppressionIn(BaseModel):
    address: EmailStr
    reason: Literal["unsubscribed", "bounced", "complained"]
    detail: str | None = Field(None, max_length=2000)


class SuppressionOut(BaseModel):
    id: int
    address: str
    reason: str
    detail: str | None
    created_at: datetime


class FeedbackEvent(BaseModel):
    """One report from the mail provider about an address."""

    type: Literal["bounce", "complaint"]
    email: EmailStr
    bounce_type: Literal["permanent", "transient"] = "permanent"
    detail: str | None = Field(None, max_length=2000)


class FeedbackBatch(BaseModel):
    events: list[FeedbackEvent] = Field(min_length=1, max_length=1000)


class FeedbackResult(BaseModel):
    suppressed: int
    ignored: int


class PreferenceGroup(BaseModel):
    id: str
    name: str
    description: str | None
    subscribed: bool


class Preferences(BaseModel):
    customer_id: int
    email: str | None
    unsubscribed_from_all: bool
    groups: list[PreferenceGroup]


class MailUnsubscribeResult(BaseModel):
    """What a message sent to the unsubscribe mailbox did."""

    status: Literal["unsubscribed", "ignored"]
    customer_id: int | None = None
    group_id: str | None = Field(None, description="The group left; '*' is all marketing.")
    changed: bool = Field(False, description="False when the request was already honoured.")
    repeat: bool = Field(
        False,
        description=(
            "True for a mail acted on before (a provider's retry of the same Message-ID):"
            " acknowledged, and nothing done again."
        ),
    )
    reason: Literal["no_token", "bad_token", "test_send", "customer_erased"] | None = None
    detail: str | None = None

    @classmethod
    def ignored(cls, reason: str, detail: str) -> MailUnsubscribeResult:
        return cls(status="ignored", reason=reason, detail=detail)
