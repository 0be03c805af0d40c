from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from domain.dates import is_zone
from domain.db import StoredInt, VersionNumber
from domain.email import compose

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
LOCALE = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"


def _one_line(value: str | None) -> str | None:
    """A subject as the message header will carry it (``compose`` refuses, at every send, what this
    lets through: so the Unicode line separators too)."""
    try:
        return None if value is None else compose.check_header_value("subject", value)
    except compose.InvalidRecipient:
        raise ValueError("the subject must be one line without control characters") from None


def _reply_to(value: str | None) -> str | None:
    """One address, checked as the sender is (``compose`` writes it at every send: an internationalised
    domain in its ASCII form); kept as the marketer wrote it."""
    if value is None:
        return None
    try:
        compose.reply_to_address("reply_to", value)
    except compose.InvalidRecipient as exc:
        raise ValueError(str(exc)) from None
    return value


class Variant(BaseModel):
    """The template in another language; parts left out fall back to the main ones, except the text
    of a variant with its own HTML: derived from that HTML."""

    subject: str | None = Field(None, min_length=1, max_length=2000)
    html: str | None = Field(None, min_length=1, max_length=500_000)
    text: str | None = Field(None, max_length=500_000)

    _subject_one_line = field_validator("subject")(_one_line)


class TemplateContent(BaseModel):
    subject: str = Field(min_length=1, max_length=2000)
    html: str = Field(min_length=1, max_length=500_000)
    text: str | None = Field(
        None, max_length=500_000, description="Plain-text part; derived from the HTML when absent."
    )
    layout: Literal["base"] | None = Field("base", description="Wrap in templates/layouts/<layout>.html.")
    category: Literal["marketing", "transactional"] = "marketing"
    subscription_group: str | None = Field(None, pattern=SLUG)
    reply_to: str | None = Field(
        None,
        min_length=3,
        max_length=320,
        description="Reply-To of this template's email, one address ('Acme Support <help@acme.example>'); "
        "default: JOURNEYS_MAIL_REPLY_TO.",
    )
    variants: dict[str, Variant] = Field(
        default_factory=dict, description="Per-locale variants: {'fr': {...}}"
    )

    _subject_one_line = field_validator("subject")(_one_line)
    _reply_to_address = field_validator("reply_to")(_reply_to)

    @field_validator("variants")
    @classmethod
    def _locales(cls, value: dict[str, Variant]) -> dict[str, Variant]:
        for key in value:
            if not re.match(LOCALE, key):
                raise ValueError(f"{key!r} is not a locale tag such as 'fr' or 'pt-BR'")
        return value


class TemplateIn(TemplateContent):
    id: str | None = Field(None, pattern=SLUG, description="Your own id (slug); generated when absent.")
    name: str = Field(min_length=1, max_length=200)


class TemplateUpdate(TemplateContent):
    name: str | None = Field(None, min_length=1, max_length=200)


class TemplateOut(BaseModel):
    id: str
    name: str
    version: int
    subject: str
    html: str
    text: str | None
    layout: str | None
    category: str
    subscription_group: str | None
    reply_to: str | None
    variants: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class PreviewIn(BaseModel):
    """Render for a stored customer, or for sample data."""

    customer_id: StoredInt | None = None
    traits: dict[str, Any] = Field(default_factory=dict, description="Sample traits (no customer_id).")
    email: str | None = Field(None, max_length=320, description="Sample address (no customer_id).")
    locale: str | None = Field(None, pattern=LOCALE)
    timezone: str | None = Field(
        None, max_length=64, description="Sample IANA time zone (no customer_id); default UTC."
    )
    event: dict[str, Any] | None = Field(
        None, description="Sample triggering event: {name, properties, timestamp}."
    )
    version: VersionNumber | None = Field(None, description="Default: the current version.")
    subscription_group: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Render as a journey's send_email node with this subscription_group sends it "
        "(footer and unsubscribe links of that group). Default: the template's.",
    )

    @field_validator("email")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        # checked here so the 422 names this field, not the `to` the preview is composed for
        return None if value is None else compose.checked_address(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not is_zone(value):
            raise ValueError(f"{value!r} is not an IANA time zone (such as Europe/Berlin)")
        return value


class PreviewOut(BaseModel):
    subject: str
    html: str
    text: str


class TestSendIn(PreviewIn):
    to: str = Field(min_length=3, max_length=320, description="Where the test email goes.")


class TestSendOut(BaseModel):
    message_id: str
    to: str


class MessageOut(BaseModel):
    id: int
    message_id: str
    customer_id: int | None
    template_id: str | None
    template_version: int | None
    journey_id: str | None
    node_id: str | None
    to_address: str | None
    subject: str | None
    status: str
    error: str | None
    attempts: int
    created_at: datetime
    sent_at: datetime | None
