"""Activity names and their input/output dataclasses: the contract workflows call by name.

Pure dataclasses only, so workflows can import this through the sandbox without pulling in I/O code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEND_EMAIL = "send_email"
FINISH_ENROLLMENT = "finish_enrollment"

# Errors an activity raises that retrying cannot fix.
RENDER_FAILED = "RenderFailed"
UNDELIVERABLE = "Undeliverable"


@dataclass
class EventRef:
    id: int
    name: str
    properties: dict[str, Any] = field(default_factory=dict)
    timestamp: str | None = None


@dataclass
class SendEmailRequest:
    idempotency_key: str
    customer_id: int
    template_id: str
    template_version: int
    journey_id: str | None = None
    node_id: str | None = None
    event: EventRef | None = None


@dataclass
class SendEmailResult:
    status: str  # sent | skipped | failed
    message_id: str
    detail: str | None = None


@dataclass
class FinishEnrollmentRequest:
    workflow_id: str
    status: str


# Loyalty: journey steps and the scheduled maintenance.
AWARD_POINTS = "award_points"
DEDUCT_POINTS = "deduct_points"
LOYALTY_STATUS = "loyalty_status"
LOYALTY_WARN_EXPIRING = "loyalty_warn_expiring"
LOYALTY_EXPIRE_POINTS = "loyalty_expire_points"
LOYALTY_REEVALUATE_TIERS = "loyalty_reevaluate_tiers"
UNKNOWN_CUSTOMER = "UnknownCustomer"
INVALID_POINTS = "InvalidPoints"


@dataclass
class PointsRequest:
    """award_points / deduct_points, once per idempotency key: derive it from workflow id + node id
    (+ visit), so a retried or replayed step finds its first entry and moves no points again."""

    idempotency_key: str
    customer_id: int
    points: int  # whole, positive
    reason: str | None = None
    journey_id: str | None = None
    node_id: str | None = None
    # workflow.now() of the step; expiry and tier windows count from it. Defaults to the activity's time.
    occurred_at: str | None = None


@dataclass
class PointsResult:
    balance: int | None = None
    tier: str | None = None
    status: str = "applied"  # applied | insufficient (deduct only: nothing was taken)
    entry_id: int | None = None
    replayed: bool = False


@dataclass
class LoyaltyStatusRequest:
    customer_id: int


@dataclass
class LoyaltyStatusResult:
    balance: int
    tier: str
    tier_points: int


@dataclass
class LoyaltyMaintenanceRequest:
    as_of: str  # ISO time the pass treats as now (the workflow's time)
    page_size: int = 500


@dataclass
class LoyaltyMaintenanceResult:
    count: int
