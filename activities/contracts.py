"""Activity names and their input/output dataclasses: the contract workflows call by name.

Pure dataclasses only, so workflows can import this through the sandbox without pulling in I/O code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEND_EMAIL = "send_email"
FINISH_ENROLLMENT = "finish_enrollment"
SEND_BROADCAST_BATCH = "send_broadcast_batch"
PLAN_BROADCAST_SLOTS = "plan_broadcast_slots"
FINISH_BROADCAST = "finish_broadcast"

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
    # None: the template version's own category ("marketing" | "transactional") and subscription group
    category: str | None = None
    subscription_group: str | None = None


@dataclass
class SendEmailResult:
    status: str  # sent | skipped | failed
    message_id: str
    detail: str | None = None


@dataclass
class FinishEnrollmentRequest:
    workflow_id: str
    status: str


@dataclass
class BroadcastBatchRequest:
    broadcast_id: str
    after_id: int  # the page starts after this customer id
    slot: int = 0  # local-time broadcasts: which send time (progress is (slot, after_id))
    timezones: list[str] | None = None  # only customers in these timezones ("" = none known)


@dataclass
class BroadcastSlot:
    at: str  # ISO 8601 UTC instant
    timezones: list[str] | None = None


@dataclass
class BroadcastSlotsRequest:
    broadcast_id: str


@dataclass
class BroadcastSlots:
    slots: list[BroadcastSlot]


@dataclass
class BroadcastBatchResult:
    status: str  # running (more to do) | done | paused | cancelled | completed | failed
    last_id: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class FinishBroadcastRequest:
    broadcast_id: str
    status: str
    error: str | None = None
