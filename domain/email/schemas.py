from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class TemplateIn(BaseModel):
    id: str | None = Field(None, pattern=SLUG, description="Your own id (slug); generated when absent.")
    name: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=2000)
    html: str = Field(min_length=1, max_length=500_000)
    text: str | None = Field(None, max_length=500_000)


class TemplateUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=2000)
    html: str = Field(min_length=1, max_length=500_000)
    text: str | None = Field(None, max_length=500_000)


class TemplateOut(BaseModel):
    id: str
    name: str
    version: int
    subject: str
    html: str
    text: str | None
    created_at: datetime
    updated_at: datetime


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
