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
# A journey step's activity found its enrollment ended by a profile merge: it did nothing, and the
# workflow leaves as from an archived journey (exited).
ENROLLMENT_SUPERSEDED = "EnrollmentSuperseded"


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
    # A journey step's send first checks that its journey is neither paused nor archived (answering
    # "held" with the status as detail), saving the step a separate status read.
    hold_unless_published: bool = False
    fresh_status: bool = False
    # The zone a journey shows dates in for a customer without a known one (its rules' default_timezone,
    # the zone its waits are planned in); None: UTC
    default_timezone: str | None = None


@dataclass
class SendEmailResult:
    status: str  # sent | skipped | failed | held (journey paused or archived; detail says which)
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
    # False when the run never registered for events: there are no listener rows to remove.
    listened: bool = True


# --- Cases: a journey's `escalate` node opens a case and waits for the signal below. ---------------

OPEN_CASE = "open_case"
CASE_SLA_BREACH = "case_sla_breach"
# Signal sent to the workflow waiting on a case (OpenCaseRequest.waiting_workflow_id), payload CaseUpdate.
CASE_UPDATE_SIGNAL = "case_update"
# An open_case request that retrying cannot fix (unknown customer or team, invalid priority).
CASE_REJECTED = "CaseRejected"


@dataclass
class OpenCaseRequest:
    idempotency_key: str  # workflow id + node id (+ visit): a retried activity returns the same case
    customer_id: int
    reason: str
    team: str
    priority: str | None = None  # low | normal | high | urgent; None = the default for the value tier
    journey_id: str | None = None
    node_id: str | None = None
    waiting_workflow_id: str | None = None


@dataclass
class CaseUpdate:
    """What the waiting workflow learns: sent once on an SLA breach and once on resolution."""

    case_id: int
    status: str  # the case status when sent: open/assigned/pending on a breach, resolved when resolved
    outcome: str | None  # the resolution's outcome code; None on a breach
    breached: bool  # the SLA was breached (now or earlier in the case's life)


@dataclass
class CaseSlaBreachRequest:
    case_id: int
    target: str  # first_response | resolution


@dataclass
class CaseSlaBreachResult:
    escalated: bool  # False when the case was already escalated, is resolved or met the target
    priority: str
    team: str
    status: str
    breached: bool = False  # as stored: escalated by this call or before
    gone: bool = False  # the case no longer exists (its customer was erased): nothing to escalate


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


ENROLL_DUE_ANNIVERSARIES = "enroll_due_anniversaries"


@dataclass
class AnniversarySweepRequest:
    as_of: str  # ISO time the sweep treats as now (the workflow's time)


@dataclass
class AnniversarySweepResult:
    started: int


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
    served: list[str] | None = None  # timezones send times exist for: plan only the others


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


# --- the journey engine ------------------------------------------------------------------------------

JOURNEY_CONTEXT = "journey_context"
REGISTER_LISTENERS = "register_listeners"
RECORD_STEPS = "record_steps"
UPDATE_TRAITS = "update_traits"
CALL_WEBHOOK = "call_webhook"
# Segment conditions in journey branches (implemented by the segments area).
EVALUATE_SEGMENT = "evaluate_segment"

# Signals a running JourneyWorkflow accepts (besides "event", which carries an EventRef).
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

    kind ``send``: the first moment at or after ``now`` allowed by quiet hours and the frequency cap,
    then by the journey's send rate (``rate_max`` per ``rate_per_seconds``; ``send_key`` keeps the slot,
    and names the send's reservation under the cap, which concurrent plans count);
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
    rate_max: int | None = None
    rate_per_seconds: int | None = None
    send_key: str | None = None
    # The send's template version: the frequency cap is on marketing email, a transactional one passes.
    template_id: str | None = None
    template_version: int | None = None


@dataclass
class JourneyContextRequest:
    journey_id: str
    customer_id: int
    plan: TimePlan | None = None
    # False when only the journey's status is needed (a send without quiet hours, cap or send rate).
    with_customer: bool = True
    # True after a status signal: read the journey's status from the database, not a cache.
    fresh_status: bool = False


@dataclass
class JourneyContext:
    journey_status: str  # published | paused | archived | draft
    timezone: str | None
    traits: dict[str, Any] = field(default_factory=dict)
    moment: str | None = None  # the plan's answer (ISO); None when the trait date is missing
    held_by: str | None = None  # send plans: "quiet_hours" | "frequency_cap" | "send_rate" | None


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
    # Events whose wait ended since the enrollment last blocked, and that no rule listens for.
    stop_listening: list[str] = field(default_factory=list)


@dataclass
class UpdateTraitsRequest:
    customer_id: int
    traits: dict[str, Any]


@dataclass
class WebhookRequest:
    idempotency_key: str
    url: str
    payload: dict[str, Any]
    # The enrollment's customer: set by journeys, whose webhook steps a profile merge can end.
    customer_id: int | None = None


@dataclass
class WebhookResult:
    status_code: int


@dataclass
class SegmentMembershipRequest:
    customer_id: int
    segment_ids: list[str]


@dataclass
class SegmentMembership:
    member_of: list[str] = field(default_factory=list)
