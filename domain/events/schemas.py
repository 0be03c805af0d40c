"""The Segment HTTP Tracking API wire format (https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from domain.dates import is_zone
from domain.db import StoredTime
from domain.json_strings import first_string

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


def normalise_locale(value: str) -> str | None:
    """BCP 47 spelling (``en_US`` -> ``en-US``) or ``None`` when it does not look like a locale."""
    if not isinstance(value, str) or len(value) > 35 or not _LOCALE.fullmatch(value):
        return None
    first, *rest = value.replace("_", "-").split("-")
    return "-".join([first.lower(), *(p.upper() if len(p) == 2 else p for p in rest)])


def _in_utc(value: datetime) -> datetime:
    # PostgreSQL reads the calls' times from their JSON text and takes UTC offsets up to 15:59 only
    # (Python up to 23:59, a 500 then); the instant is what is stored, so it is written in UTC. A time
    # without a zone (no offset) means UTC already.
    return value.astimezone(UTC) if value.utcoffset() else value


_NO_OFFSET, _PG_OFFSETS = timedelta(0), timedelta(hours=15, minutes=59)

# A batch's time: a time without a zone means UTC; one with a zone is kept as the same instant in UTC.
EventTime = Annotated[StoredTime, AfterValidator(_in_utc)]

# An id as Segment libraries send it: a number id is the same customer as its string.
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID, coerce_numbers_to_str=True)]
OptionalId = Annotated[str | None, Field(max_length=MAX_ID, coerce_numbers_to_str=True)]


def _shown(value: Any) -> str:
    """A sent value as an error message quotes it: a string (shortened), else only its JSON type (a
    repr of a deeply nested list would itself fail)."""
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:60] + "...")
    kinds = {bool: "true/false", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return kinds.get(type(value), "null" if value is None else "that value")


class SegmentCall(BaseModel):
    # Validation is pydantic's compiled core; the only Python run per call is the check below.
    # Fields Segment sends that ingestion does not use (integrations, version, ...) are ignored.
    model_config = ConfigDict(extra="ignore")

    userId: OptionalId = None
    anonymousId: OptionalId = None
    messageId: str | None = Field(None, min_length=1, max_length=MAX_ID)
    # A time with a zone is kept as its instant in UTC, by the check below (as EventTime is, without
    # another Python call per field).
    timestamp: StoredTime | None = None
    sentAt: StoredTime | None = None
    # The objects may come as null (a client writing every key of its message): that means absent, as
    # Segment reads it; the check below makes them empty (pydantic's core checks the type alone).
    context: dict[str, Any] | None = Field(default_factory=dict)

    @model_validator(mode="after")
    def _someone(self):
        fields = self.__dict__
        if fields["context"] is None:
            fields["context"] = {}
        if fields.get("properties", fields) is None:
            fields["properties"] = {}
        if fields.get("traits", fields) is None:  # a group's (an identify's are checked below)
            fields["traits"] = {}
        if self.timestamp is not None and abs(self.timestamp.utcoffset() or _NO_OFFSET) > _PG_OFFSETS:
            self.timestamp = _in_utc(self.timestamp)
        if self.sentAt is not None and abs(self.sentAt.utcoffset() or _NO_OFFSET) > _PG_OFFSETS:
            self.sentAt = _in_utc(self.sentAt)
        # A blank id is no id.
        if self.userId is not None and not self.userId.strip():
            self.userId = None
        if self.anonymousId is not None and not self.anonymousId.strip():
            self.anonymousId = None
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
    properties: dict[str, Any] | None = Field(default_factory=dict)

    @property
    def event_name(self) -> str | None:
        return self.event

    @property
    def event_properties(self) -> dict[str, Any]:
        return self.properties


class IdentifyCall(SegmentCall):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] | None = Field(default_factory=dict)

    @field_validator("traits")
    @classmethod
    def _known_traits(cls, traits: dict[str, Any] | None) -> dict[str, Any]:
        if traits is None:
            return {}
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
        if timezone is not None and not is_zone(timezone):
            raise ValueError(
                f"traits.timezone: {_shown(timezone)} is not an IANA time zone such as Europe/Paris"
            )
        locale = traits.get("locale")
        if locale is not None:
            normalised = normalise_locale(locale)
            if normalised is None:
                raise ValueError(f"traits.locale: {_shown(locale)} is not a locale such as en-US")
            traits["locale"] = normalised
        return traits

    @property
    def event_traits(self) -> dict[str, Any]:
        return self.traits


class PageCall(SegmentCall):
    type: Literal["page"] = "page"
    name: str | None = Field(None, max_length=255)
    category: str | None = Field(None, max_length=255)
    properties: dict[str, Any] | None = Field(default_factory=dict)

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
    groupId: Id
    traits: dict[str, Any] | None = Field(default_factory=dict)

    @property
    def event_properties(self) -> dict[str, Any]:
        return {"groupId": self.groupId}

    @property
    def event_traits(self) -> dict[str, Any]:
        return self.traits  # the group's traits, not the person's


class AliasCall(SegmentCall):
    type: Literal["alias"] = "alias"
    previousId: Id
    userId: Id  # type: ignore[assignment]

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


MAX_PROBLEMS = 50  # enough to fix the sender; do not build a huge answer


class MalformedJSON(ValueError):
    """The body is not JSON at all."""


class Batch(BaseModel):
    """A ``/v1/batch`` body. Its ``context`` and ``sentAt`` apply to each call that lacks its own, as in
    Segment's batch API (its libraries put ``sentAt`` on the batch only; clock-skew correction needs it).
    """

    model_config = ConfigDict(extra="ignore")

    batch: list[Annotated[Call, Field(discriminator="type")]] = Field(min_length=1)
    context: dict[str, Any] | None = None
    sentAt: EventTime | None = None


_BATCH = TypeAdapter(Batch)
_UNKNOWN_TYPE = "unknown call type {!r}; expected one of " + ", ".join(CALL_TYPES)


def _problem(err: Any, index: int | None, loc: tuple) -> dict[str, Any]:
    field = ".".join(str(p) for p in loc) or "body"
    message = err["msg"].removeprefix("Value error, ")
    # A validator that checks a nested key says which one: "traits.email: <problem>".
    head, sep, rest = message.partition(": ")
    if sep and head.startswith(f"{field}."):
        field, message = head, rest
    problem = {"field": field, "problem": message}
    return problem if index is None else {"index": index, **problem}


def _problems(exc: ValidationError, index: int | None) -> list[dict[str, Any]]:
    return [_problem(err, index, err["loc"]) for err in exc.errors()][:MAX_PROBLEMS]


def _batch_problem(err: Any) -> dict[str, Any]:
    """One pydantic error on a batch body, as the sender should read it: which call, which field."""
    loc, kind = err["loc"], err["type"]
    if not loc:
        return {"field": "body", "problem": "expected a JSON object"}
    if loc[0] != "batch":
        return _problem(err, None, loc)
    if len(loc) == 1:
        if kind == "too_short":
            return {"field": "batch", "problem": "the batch is empty"}
        return {"field": "batch", "problem": "expected a list of calls"}
    index = loc[1]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = err.get("ctx", {}).get("tag")
        return {"index": index, "field": "type", "problem": _UNKNOWN_TYPE.format(tag)}
    if len(loc) == 2:
        return {"index": index, "field": "body", "problem": "expected a JSON object"}
    return _problem(err, index, loc[3:])  # loc[2] is the call type the discriminator chose


def parse_call(kind: str, body: dict[str, Any]) -> tuple[Call | None, list[dict[str, Any]]]:
    """One call of a known type; returns the call or the problems, each naming its field."""
    try:
        return CALL_TYPES[kind].model_validate(body), []  # type: ignore[return-value]
    except ValidationError as exc:
        return None, _problems(exc, None)


def parse_batch(raw: bytes) -> tuple[Batch | None, list[dict[str, Any]]]:
    """A ``/v1/batch`` body validated in one pass of pydantic's core, straight from the JSON bytes;
    returns it, or every problem found (each naming the call's index and the field). Raises
    ``MalformedJSON`` when the body is not JSON."""
    # pydantic's parser takes NaN, Infinity and numbers beyond a float such as 1e400, which JSON has
    # not (they would be stored as null); orjson, which reads the single calls, refuses them. Its
    # reading is the check only: pydantic's keeps integers beyond 64 bits exact, to refuse them by name.
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(str(exc)) from None
    try:
        return _BATCH.validate_json(raw), []
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            raise MalformedJSON(errors[0]["msg"].removeprefix("Invalid JSON: ")) from None
        return None, [_batch_problem(err) for err in errors[:MAX_PROBLEMS]]


def nul_path(value: Any) -> str | None:
    """Where parsed JSON first holds the NUL character (no database stores it in text): the dotted path
    of the key or value (``properties.note``, ``traits.tags.0``), or None when it holds none."""
    return first_string(value, lambda text: "\x00" in text)


def dump_calls(calls: list[Call]) -> bytes:
    """The validated calls as JSON, one object of their fields each (what the PostgreSQL statement
    reads); times without a zone are written as UTC."""
    return orjson.dumps(calls, default=vars, option=orjson.OPT_NAIVE_UTC)


class Accepted(BaseModel):
    success: bool = True
