"""The Segment HTTP Tracking API wire format (https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_ID = 255


class SegmentCall(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    userId: str | None = Field(None, max_length=MAX_ID)
    anonymousId: str | None = Field(None, max_length=MAX_ID)
    messageId: str | None = Field(None, min_length=1, max_length=MAX_ID)
    timestamp: datetime | None = None
    sentAt: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)
    writeKey: str | None = None

    @field_validator("userId", "anonymousId", mode="before")
    @classmethod
    def _ids_are_strings(cls, value: Any) -> Any:
        # Segment libraries send numbers as-is; a number id is the same customer as its string.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("timestamp", "sentAt")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _someone(self):
        if self.userId is None and self.anonymousId is None:
            raise ValueError("userId or anonymousId is required")
        return self


class TrackCall(SegmentCall):
    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=255)
    properties: dict[str, Any] = Field(default_factory=dict)


class IdentifyCall(SegmentCall):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)


class Accepted(BaseModel):
    success: bool = True
