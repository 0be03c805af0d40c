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
