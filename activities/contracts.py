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
    # The list the customer can unsubscribe from; honoured by the delivery side.
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
    steps: list[StepRecord] = field(default_factory=list)
    journey_id: str | None = None
    version: int | None = None
    customer_id: int | None = None
    entry_event_id: int | None = None
    entered_at: str | None = None


# --- the journey engine ------------------------------------------------------------------------------

JOURNEY_CONTEXT = "journey_context"
REGISTER_LISTENERS = "register_listeners"
RECORD_STEPS = "record_steps"
UPDATE_TRAITS = "update_traits"
CALL_WEBHOOK = "call_webhook"
# Implemented by the loyalty, cases and segments areas; the journey engine calls them by these names.
AWARD_POINTS = "award_points"
DEDUCT_POINTS = "deduct_points"
OPEN_CASE = "open_case"
EVALUATE_SEGMENT = "evaluate_segment"

# Signals a running JourneyWorkflow accepts (besides "event", which carries an EventRef).
CASE_RESOLVED_SIGNAL = "case_resolved"
JOURNEY_STATUS_SIGNAL = "journey_status"
WEBHOOK_REJECTED = "WebhookRejected"


@dataclass
class StepRecord:
    node_id: str
    visit: int
    entered_at: str
    left_at: str | None = None
    outcome: str | None = None


@dataclass
class TimePlan:
    """A moment to compute in the customer's timezone (time-zone rules are data that changes, so the
    workflow records the answer from an activity instead of computing it itself).

    kind ``send``: the first moment at or after ``now`` allowed by quiet hours and the frequency cap;
    ``local_time``: the next ``at`` (on ``weekdays``); ``anniversary``: the next yearly ``trait`` date
    at ``at``; ``date``: the ``trait`` date + ``offset_days`` at ``at``.
    """

    kind: str
    now: str
    default_timezone: str = "UTC"
    quiet_start: str | None = None
    quiet_end: str | None = None
    cap_max: int | None = None
    cap_window_seconds: int | None = None
    at: str | None = None
    weekdays: list[str] = field(default_factory=list)
    trait: str | None = None
    offset_days: int = 0


@dataclass
class JourneyContextRequest:
    journey_id: str
    customer_id: int
    plan: TimePlan | None = None
    # False when only the journey's status is needed (a send without quiet hours or cap).
    with_customer: bool = True
    # True after a status signal: read the journey's status from the database, not a cache.
    fresh_status: bool = False


@dataclass
class JourneyContext:
    journey_status: str  # published | paused | archived | draft
    timezone: str | None
    traits: dict[str, Any] = field(default_factory=dict)
    moment: str | None = None  # the plan's answer (ISO); None when the trait date is missing
    held_by: str | None = None  # send plans: "quiet_hours" | "frequency_cap" | None


@dataclass
class RegisterListenersRequest:
    workflow_id: str
    customer_id: int
    event_names: list[str]
    # Events already stored that the enrollment may have missed while registering: those with an id
    # above ``after_event_id`` received at or after ``since`` (ISO).
    after_event_id: int = 0
    since: str | None = None


@dataclass
class RecordStepsRequest:
    workflow_id: str
    journey_id: str
    version: int
    customer_id: int
    steps: list[StepRecord] = field(default_factory=list)


@dataclass
class UpdateTraitsRequest:
    customer_id: int
    traits: dict[str, Any]


@dataclass
class WebhookRequest:
    idempotency_key: str
    url: str
    payload: dict[str, Any]


@dataclass
class WebhookResult:
    status_code: int


@dataclass
class PointsRequest:
    """award_points / deduct_points: once per idempotency key."""

    idempotency_key: str
    customer_id: int
    points: int
    reason: str | None = None
    journey_id: str | None = None
    node_id: str | None = None


@dataclass
class PointsResult:
    balance: int | None = None


@dataclass
class OpenCaseRequest:
    """open_case: once per idempotency key. When the case is resolved, the cases area signals
    ``workflow_id`` with CASE_RESOLVED_SIGNAL and a CaseResolved."""

    idempotency_key: str
    customer_id: int
    subject: str
    priority: str
    sla_seconds: int
    workflow_id: str
    journey_id: str | None = None
    node_id: str | None = None


@dataclass
class OpenCaseResult:
    case_id: int


@dataclass
class CaseResolved:
    case_id: int
    outcome: str = "resolved"


@dataclass
class SegmentMembershipRequest:
    customer_id: int
    segment_ids: list[str]


@dataclass
class SegmentMembership:
    member_of: list[str] = field(default_factory=list)
