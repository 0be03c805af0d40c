from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from domain.email.schemas import SLUG


class SegmentIn(BaseModel):
    id: str | None = Field(None, pattern=SLUG, description="Your own id (slug); generated when absent.")
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    rule: dict[str, Any] = Field(description="The rule (see README: Segments).")


class SegmentUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    rule: dict[str, Any] | None = Field(None, description="A new rule makes a new version.")


class PreviewIn(BaseModel):
    rule: dict[str, Any]
    sample_size: int = Field(20, ge=0, le=200)


class CustomerBrief(BaseModel):
    id: int
    user_id: str | None
    email: str | None


class PreviewOut(BaseModel):
    count: int
    sample: list[CustomerBrief]


class SegmentOut(BaseModel):
    id: str
    name: str
    description: str | None
    version: int
    rule: dict[str, Any]
    members: int
    created_at: datetime
    updated_at: datetime
    # When a background pass last failed to evaluate the segment and why; null while it is fresh.
    refresh_failed_at: datetime | None = None
    refresh_error: str | None = None


class SegmentVersionOut(BaseModel):
    segment_id: str
    version: int
    rule: dict[str, Any]
    created_at: datetime


class MemberOut(BaseModel):
    customer_id: int
    user_id: str | None
    email: str | None
    entered_at: datetime


class MembersPage(BaseModel):
    members: list[MemberOut]
    next_after: int | None = Field(description="Pass as ?after= for the next page; null on the last page.")


class RefreshStats(BaseModel):
    entered: int = 0
    exited: int = 0
    customers: int = 0


class ScoresOut(BaseModel):
    customer_id: int
    ltv: float
    order_count: int
    last_order_at: datetime | None
    tier: str
    recency: int | None
    frequency: int | None
    monetary: int | None
    computed_at: datetime


class TierOut(BaseModel):
    tier: str
    customers: int
    min_ltv: float | None
    max_ltv: float | None
    revenue: float
    revenue_share: float = Field(description="Share of all lifetime value this tier brings (0-1).")


class TiersOut(BaseModel):
    tiers: list[TierOut]
    top_20_percent_revenue_share: float = Field(description="Key + major + ordinary: the Pareto check.")
