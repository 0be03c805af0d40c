from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from domain.email.schemas import SLUG


class JourneyIn(BaseModel):
    id: str | None = Field(None, pattern=SLUG, description="Your own id (slug); generated when absent.")
    name: str = Field(min_length=1, max_length=200)
    definition: dict[str, Any]


class JourneyUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    definition: dict[str, Any]


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
    workflow_id: str
    journey_id: str
    version: int
    customer_id: int
    status: str
    entered_at: datetime
    completed_at: datetime | None


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
