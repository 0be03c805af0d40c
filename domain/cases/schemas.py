"""Case API shapes and the fixed vocabularies (priorities, statuses, outcome codes)."""

from __future__ import annotations

import re
from datetime import datetime, time
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from domain.dates import is_zone
from domain.db import StoredInt


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"

    @property
    def rank(self) -> int:
        return PRIORITY_ORDER.index(self)

    def raised(self) -> Priority:
        return PRIORITY_ORDER[min(self.rank + 1, len(PRIORITY_ORDER) - 1)]


PRIORITY_ORDER = [Priority.low, Priority.normal, Priority.high, Priority.urgent]


class Status(StrEnum):
    open = "open"
    assigned = "assigned"
    pending = "pending"
    resolved = "resolved"
    closed = "closed"


ACTIVE = (Status.open, Status.assigned, Status.pending)


class Outcome(StrEnum):
    """Outcome codes a journey branches on."""

    solved = "solved"
    refunded = "refunded"
    compensated = "compensated"
    no_action = "no_action"
    unreachable = "unreachable"
    duplicate = "duplicate"


# The customer's value tier (1/4/15/80 rule) sets the default priority of a case opened for them.
TIER_PRIORITY = {
    "key": Priority.urgent,
    "major": Priority.high,
    "ordinary": Priority.normal,
    "small": Priority.low,
}

# Targets used for a priority with no stored policy: (first response, resolution) in minutes.
DEFAULT_SLA_MINUTES = {
    Priority.urgent: (15, 4 * 60),
    Priority.high: (60, 8 * 60),
    Priority.normal: (4 * 60, 24 * 60),
    Priority.low: (8 * 60, 72 * 60),
}

TEAM_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _team_id(value: str) -> str:
    if not TEAM_ID.fullmatch(value):
        raise ValueError("a team id is 1-64 lowercase letters, digits, '-' or '_'")
    return value


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str = Field(min_length=1, max_length=200)
    supervisor_team: str | None = None
    auto_assign: bool = False

    _check_id = field_validator("id")(_team_id)


class TeamOut(BaseModel):
    id: str
    name: str
    supervisor_team: str | None
    auto_assign: bool
    agent_ids: list[int]


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    teams: list[str] = Field(min_length=1, max_length=50)
    max_open_cases: int = Field(10, ge=1, le=1000)
    available: bool = True


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available: bool | None = None
    max_open_cases: int | None = Field(None, ge=1, le=1000)


class AgentOut(BaseModel):
    id: int
    name: str
    teams: list[str]
    available: bool
    max_open_cases: int
    open_cases: int = 0


class AgentCreated(AgentOut):
    api_key: str = Field(description="The agent's management key (role agent); shown once.")


LOCAL_TIME = "a local time such as 09:00, without a zone: the zone is `timezone`"
# Validation context for policies read back from the database, which may predate a rule.
STORED = "stored"


def _opens(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class BusinessHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = Field(description="IANA time zone, e.g. Europe/Paris")
    days: list[int] = Field([0, 1, 2, 3, 4], min_length=1, max_length=7, description="0 = Monday")
    start: time = Field(description="HH:MM, local time (no zone: the zone is `timezone`)")
    end: time

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str, info: ValidationInfo) -> str:
        if is_zone(value):  # the product's zones, as ingestion, journeys and broadcasts accept them
            return value
        if (info.context or {}).get(STORED) and _opens(value):
            return value  # saved before the rule (a file ZoneInfo opens): its deadlines stay as they were
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris")

    @field_validator("days")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in value):
            raise ValueError("days are 0 (Monday) to 6 (Sunday)")
        return sorted(set(value))

    @field_validator("start", "end", mode="before")
    @classmethod
    def _local_time_text(cls, value: Any) -> Any:
        # Pydantic reads a number as seconds after midnight UTC, a zone-aware time.
        if not isinstance(value, str | time):
            raise ValueError(LOCAL_TIME)
        return value

    @field_validator("start", "end")
    @classmethod
    def _without_zone(cls, value: time, info: ValidationInfo) -> time:
        if value.tzinfo is None:
            return value
        if (info.context or {}).get(STORED):
            # Saved before zones were refused: the zone was ignored then too (deadlines use `timezone`).
            return value.replace(tzinfo=None)
        raise ValueError(LOCAL_TIME)

    @model_validator(mode="after")
    def _ordered(self):
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class SlaPolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_response_minutes: int = Field(ge=1, le=60 * 24 * 90)
    resolution_minutes: int = Field(ge=1, le=60 * 24 * 365)
    business_hours: BusinessHoursIn | None = Field(
        None, description="Count only these hours towards the targets; none = around the clock."
    )


class SlaPolicyOut(SlaPolicyIn):
    priority: Priority
    default: bool


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: StoredInt = Field(gt=0)
    reason: str = Field(min_length=1, max_length=5000)
    team: str
    priority: Priority | None = Field(None, description="Default: from the customer's value tier.")


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=20_000)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Outcome
    comment: str = Field("", max_length=20_000)


class NoteOut(BaseModel):
    id: int
    kind: str
    body: str
    agent_id: int | None
    created_at: datetime


class CaseOut(BaseModel):
    id: int
    customer_id: int
    reason: str
    priority: Priority
    team: str
    status: Status
    assignee_id: int | None
    journey_id: str | None
    node_id: str | None
    outcome: Outcome | None
    resolution_comment: str | None
    first_response_due: datetime
    resolution_due: datetime
    due_at: datetime | None
    first_responded_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    breached_at: datetime | None
    escalated_from_team: str | None
    csat_rating: int | None
    created_at: datetime
    updated_at: datetime


class CaseDetail(CaseOut):
    context: dict[str, Any]
    notes: list[NoteOut]


class NextCase(BaseModel):
    """The answer to `next`: the case claimed, or none and why."""

    case: CaseOut | None
    detail: str
