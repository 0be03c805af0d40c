"""The Segment HTTP Tracking API wire format (https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_ID = 255
# Segment's own limits: https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/#max-request-size
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024

_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


def normalise_email(value: str) -> str:
    """Validated and lower-cased (mail providers treat addresses case-insensitively, and so must
    lookups); raises ``ValueError`` with the reason when it is not an address."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None


def is_timezone(name: str) -> bool:
    if not name or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def normalise_locale(value: str) -> str | None:
    """BCP 47 spelling (``en_US`` -> ``en-US``) or ``None`` when it does not look like a locale."""
    if not isinstance(value, str) or len(value) > 35 or not _LOCALE.match(value):
        return None
    first, *rest = value.replace("_", "-").split("-")
    return "-".join([first.lower(), *(p.upper() if len(p) == 2 else p for p in rest)])


class SegmentCall(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    userId: str | None = Field(None, max_length=MAX_ID)
    anonymousId: str | None = Field(None, max_length=MAX_ID)
    messageId: str | None = Field(None, min_length=1, max_length=MAX_ID)
    # Kept as sent (a time without a zone means UTC); ingestion normalises them to UTC.
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

    @model_validator(mode="after")
    def _someone(self):
        if self.userId is None and self.anonymousId is None:
            raise ValueError("userId or anonymousId is required")
        return self

    # What ingestion stores for each call type (overridden below).
    @property
    def event_name(self) -> str | None:
        return None

    @property
    def event_properties(self) -> dict[str, Any]:
        return {}

    @property
    def event_traits(self) -> dict[str, Any]:
        return dict(self.context.get("traits") or {}) if isinstance(self.context.get("traits"), dict) else {}


class TrackCall(SegmentCall):
    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=255)
    properties: dict[str, Any] = Field(default_factory=dict)

    @property
    def event_name(self) -> str | None:
        return self.event

    @property
    def event_properties(self) -> dict[str, Any]:
        return self.properties


class IdentifyCall(SegmentCall):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)

    @field_validator("traits")
    @classmethod
    def _known_traits(cls, traits: dict[str, Any]) -> dict[str, Any]:
        # Reserved traits the engine acts on are checked here, so a bad one is a 400 naming it.
        email = traits.get("email")
        if email is not None:
            if not isinstance(email, str):
                raise ValueError("traits.email: must be a string")
            try:
                traits["email"] = normalise_email(email)
            except ValueError as exc:
                raise ValueError(f"traits.email: {exc}") from None
        timezone = traits.get("timezone")
        if timezone is not None and not (isinstance(timezone, str) and is_timezone(timezone)):
            raise ValueError(f"traits.timezone: {timezone!r} is not an IANA time zone such as Europe/Paris")
        locale = traits.get("locale")
        if locale is not None:
            normalised = normalise_locale(locale)
            if normalised is None:
                raise ValueError(f"traits.locale: {locale!r} is not a locale such as en-US")
            traits["locale"] = normalised
        return traits

    @property
    def event_traits(self) -> dict[str, Any]:
        return self.traits


class PageCall(SegmentCall):
    type: Literal["page"] = "page"
    name: str | None = Field(None, max_length=255)
    category: str | None = Field(None, max_length=255)
    properties: dict[str, Any] = Field(default_factory=dict)

    @property
    def event_name(self) -> str | None:
        return self.name

    @property
    def event_properties(self) -> dict[str, Any]:
        if self.category is not None:
            return {**self.properties, "category": self.category}
        return self.properties


class ScreenCall(PageCall):
    type: Literal["screen"] = "screen"  # type: ignore[assignment]


class GroupCall(SegmentCall):
    type: Literal["group"] = "group"
    groupId: str = Field(min_length=1, max_length=MAX_ID)
    traits: dict[str, Any] = Field(default_factory=dict)

    @field_validator("groupId", mode="before")
    @classmethod
    def _group_id_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def event_properties(self) -> dict[str, Any]:
        return {"groupId": self.groupId}

    @property
    def event_traits(self) -> dict[str, Any]:
        return self.traits  # the group's traits, not the person's


class AliasCall(SegmentCall):
    type: Literal["alias"] = "alias"
    previousId: str = Field(min_length=1, max_length=MAX_ID)
    userId: str = Field(min_length=1, max_length=MAX_ID)  # type: ignore[assignment]

    @field_validator("previousId", mode="before")
    @classmethod
    def _previous_id_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def event_properties(self) -> dict[str, Any]:
        return {"previousId": self.previousId}


Call = TrackCall | IdentifyCall | PageCall | ScreenCall | GroupCall | AliasCall

CALL_TYPES: dict[str, type[SegmentCall]] = {
    "track": TrackCall,
    "identify": IdentifyCall,
    "page": PageCall,
    "screen": ScreenCall,
    "group": GroupCall,
    "alias": AliasCall,
}


def _problems(exc: ValidationError, index: int | None) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "body"
        message = err["msg"].removeprefix("Value error, ")
        # A validator that checks a nested key says which one: "traits.email: <problem>".
        head, sep, rest = message.partition(": ")
        if sep and head.startswith(f"{field}."):
            field, message = head, rest
        problem = {"field": field, "problem": message}
        out.append(problem if index is None else {"index": index, **problem})
    return out


def parse_call(kind: str, body: dict[str, Any]) -> tuple[Call | None, list[dict[str, Any]]]:
    """One call of a known type; returns the call or the problems, each naming its field."""
    try:
        return CALL_TYPES[kind].model_validate(body), []  # type: ignore[return-value]
    except ValidationError as exc:
        return None, _problems(exc, None)


def parse_batch(body: dict[str, Any]) -> tuple[list[Call], list[dict[str, Any]]]:
    """Every call of a ``/v1/batch`` body, or every problem found (each naming its index and field).

    Batch-level ``context`` and ``sentAt`` apply to each call, as in Segment's batch API (its
    libraries put ``sentAt`` on the batch only, and clock-skew correction needs it).
    """
    items = body.get("batch")
    if not isinstance(items, list):
        return [], [{"field": "batch", "problem": "expected a list of calls"}]
    if not items:
        return [], [{"field": "batch", "problem": "the batch is empty"}]
    shared_context = body.get("context") if isinstance(body.get("context"), dict) else None
    shared_sent_at = body.get("sentAt")
    calls: list[Call] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append({"index": index, "field": "body", "problem": "expected a JSON object"})
            continue
        kind = item.get("type")
        model = CALL_TYPES.get(kind) if isinstance(kind, str) else None
        if model is None:
            problems.append(
                {
                    "index": index,
                    "field": "type",
                    "problem": f"unknown call type {kind!r}; expected one of {', '.join(CALL_TYPES)}",
                }
            )
            continue
        if shared_context and isinstance(item.get("context", {}), dict):
            item = {**item, "context": {**shared_context, **(item.get("context") or {})}}
        if shared_sent_at is not None and item.get("sentAt") is None:
            item = {**item, "sentAt": shared_sent_at}
        try:
            calls.append(model.model_validate(item))  # type: ignore[arg-type]
        except ValidationError as exc:
            problems.extend(_problems(exc, index))
        if len(problems) >= 50:  # enough to fix the sender; do not build a huge answer
            break
    return calls, problems


class Accepted(BaseModel):
    success: bool = True
