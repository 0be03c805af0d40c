"""The journey graph marketers write, and the rules that make it runnable.

A definition is a list of nodes joined by ``next`` (and, for nodes that fork, by their branch fields);
exactly one ``entry`` node says what enrolls a customer. Journey-level ``rules`` (goal, exit criteria,
frequency cap, quiet hours, send rate) apply at every node. Validation names the node and the problem so
the API can answer with a precise 422.
"""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit

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
from domain.errors import InvalidInput
from domain.journeys import conditions

NODE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
LOCAL_TIME = r"^([01]\d|2[0-3]):[0-5]\d$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT_SECONDS = (604_800, 86_400, 3_600, 60, 1)


def parse_duration(text: str) -> int:
    """``"1d12h"`` -> seconds. Units: w, d, h, m, s, largest first."""
    match = _DURATION.match(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration like '30m', '1h', '2d12h' or '1w'")
    return sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS, strict=True) if n)


# Waits of "minutes or months", anniversaries a year apart: ten years is past any journey, and a
# longer timer would overflow what the workflow can sleep (timedelta, Temporal's timers).
MAX_DURATION_SECONDS = 3650 * 86_400


def _positive_duration(value: str) -> str:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("duration must be positive")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError("duration must be at most 3650 days (ten years)")
    return value


Duration = Annotated[str, AfterValidator(_positive_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- conditions --------------------------------------------------------------------------------------

Op = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "not_exists", "contains"]


class Condition(_Strict):
    """One test on the customer (a trait), the entry event (a property) or a segment's membership."""

    trait: str | None = Field(None, min_length=1, max_length=255)
    event_property: str | None = Field(None, min_length=1, max_length=255)
    segment: str | None = Field(None, min_length=1, max_length=64)
    op: Op = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _one_subject(self) -> Condition:
        subjects = [s for s in (self.trait, self.event_property, self.segment) if s is not None]
        if len(subjects) != 1:
            raise ValueError("a condition tests exactly one of trait, event_property or segment")
        if self.segment is not None and self.op not in ("eq", "ne"):
            raise ValueError("a segment condition uses op 'eq' or 'ne' with value true/false")
        if self.segment is not None and self.value is None:
            self.value = True
        if self.segment is not None and not isinstance(self.value, bool):
            # Membership is compared with the value: "true", 1 or [true] would never equal it (and
            # with 'ne' always differ), sending every customer down the wrong path.
            raise ValueError(f"a segment condition's value must be true or false, not {self.value!r}")
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a list value")
        if self.op in ("gt", "gte", "lt", "lte") and not isinstance(self.value, int | float | str):
            raise ValueError(f"op {self.op!r} needs a number or string value")
        if self.op == "contains" and (self.value is None or isinstance(self.value, dict | list)):
            # A substring of a string trait or one element of a list trait; null, an object or a list
            # is a mistake (for "one of these", op 'in' takes the list).
            raise ValueError("op 'contains' needs a string, number or boolean value")
        return self


class EventMatch(_Strict):
    """A track event by name, optionally with properties that must equal given values."""

    event: str = Field(min_length=1, max_length=255)
    where: dict[str, Any] = Field(default_factory=dict)


# --- nodes -------------------------------------------------------------------------------------------


class _Node(_Strict):
    id: str = Field(pattern=NODE_ID)


class EntryNode(_Node):
    type: Literal["entry"]
    trigger: Literal["event", "segment", "date_trait", "manual"] = "event"
    event: str | None = Field(None, min_length=1, max_length=255, description="Track event that enrolls.")
    where: dict[str, Any] = Field(
        default_factory=dict, description="Event properties that must equal these values."
    )
    segment_id: str | None = Field(None, min_length=1, max_length=64)
    trait: str | None = Field(None, min_length=1, max_length=255, description="A date trait, e.g. birthday.")
    at: str | None = Field(None, pattern=LOCAL_TIME, description="Local time of day for date_trait.")
    reentry: Literal["once", "after_exit", "always", "once_per_key"] = "once"
    entry_key: str | None = Field(None, min_length=1, max_length=255, description="Event property.")
    next: str | None = None

    @model_validator(mode="after")
    def _trigger_fields(self) -> EntryNode:
        needs = {"event": ["event"], "segment": ["segment_id"], "date_trait": ["trait", "at"], "manual": []}
        missing = [f for f in needs[self.trigger] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"an entry with trigger {self.trigger!r} needs {', '.join(missing)}")
        if self.reentry == "once_per_key" and not self.entry_key:
            raise ValueError("reentry 'once_per_key' needs entry_key (the event property naming the key)")
        if self.reentry == "once_per_key" and self.trigger != "event":
            raise ValueError("reentry 'once_per_key' needs an event entry")
        return self


class SendEmailNode(_Node):
    type: Literal["send_email"]
    template_id: str = Field(min_length=1, max_length=64)
    subscription_group: str | None = Field(None, min_length=1, max_length=64)
    next: str | None = None


class WaitNode(_Node):
    type: Literal["wait"]
    duration: Duration
    next: str | None = None


class WaitUntilNode(_Node):
    """Wait until a local time of day in the customer's timezone, optionally on given weekdays, or on a
    date trait (e.g. ``renewal_date``) shifted by ``offset_days``."""

    type: Literal["wait_until"]
    at: str = Field(pattern=LOCAL_TIME)
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(default_factory=list)
    date_trait: str | None = Field(None, min_length=1, max_length=255)
    offset_days: int = Field(0, ge=-366, le=366)
    next: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> WaitUntilNode:
        if self.date_trait and self.weekdays:
            raise ValueError("use either weekdays or date_trait, not both")
        return self


class WaitForEventNode(_Node):
    type: Literal["wait_for_event"]
    event: str = Field(min_length=1, max_length=255)
    where: dict[str, Any] = Field(default_factory=dict)
    match_entry: list[str] = Field(
        default_factory=list,
        description="Properties that must equal the entry event's (e.g. cart_id).",
        max_length=10,
    )
    timeout: Duration
    next: str | None = Field(None, description="Where to go when the event arrives.")
    timeout_next: str | None = Field(None, description="Where to go when it does not arrive in time.")


class Branch(_Strict):
    when: list[Condition] = Field(min_length=1, max_length=20, description="All must hold.")
    next: str | None = None


class BranchNode(_Node):
    type: Literal["branch"]
    branches: list[Branch] = Field(min_length=1, max_length=20)
    default_next: str | None = None


class SplitPath(_Strict):
    weight: int = Field(gt=0, le=10_000)
    next: str | None = None


class SplitNode(_Node):
    """Weighted random paths, the same for a customer every time; ``holdout_percent`` exits at once."""

    type: Literal["split"]
    paths: list[SplitPath] = Field(min_length=1, max_length=20)
    holdout_percent: float = Field(0, ge=0, lt=100)


class AwardPointsNode(_Node):
    type: Literal["award_points"]
    points: int = Field(gt=0, le=1_000_000_000)
    reason: str | None = Field(None, max_length=200)
    next: str | None = None


class DeductPointsNode(_Node):
    type: Literal["deduct_points"]
    points: int = Field(gt=0, le=1_000_000_000)
    reason: str | None = Field(None, max_length=200)
    next: str | None = None
    insufficient_next: str | None = Field(
        None,
        description="Where to go when the balance does not cover the points (none is taken); default: leave.",
    )


class EscalateNode(_Node):
    """Open a case for a human, then wait for its resolution or for the SLA to pass."""

    type: Literal["escalate"]
    subject: str = Field(min_length=1, max_length=200, description="The case's reason, shown to agents.")
    team: str = Field(min_length=1, max_length=64, description="The agents' team that gets the case.")
    priority: Literal["low", "normal", "high", "urgent"] | None = Field(
        None, description="Default: from the customer's value tier (key: urgent ... small: low)."
    )
    sla: Duration = Field(
        "1d", description="How long the journey waits at most; the case's SLA may end it sooner."
    )
    resolved_next: str | None = None
    breached_next: str | None = None


class UpdateTraitNode(_Node):
    type: Literal["update_trait"]
    traits: dict[str, Any] = Field(min_length=1, max_length=50)
    next: str | None = None


class WebhookNode(_Node):
    type: Literal["webhook"]
    url: str = Field(min_length=8, max_length=2000)
    body: dict[str, Any] = Field(default_factory=dict, description="Extra fields sent with the payload.")
    next: str | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        parts = urlsplit(value)
        if not parts.hostname:
            raise ValueError("url has no host")
        try:
            parts.port  # noqa: B018 (raises for a port that is not a number from 0 to 65535)
        except ValueError:
            raise ValueError("url has an invalid port") from None
        return value


class ExitNode(_Node):
    type: Literal["exit"]


Node = Annotated[
    EntryNode
    | SendEmailNode
    | WaitNode
    | WaitUntilNode
    | WaitForEventNode
    | BranchNode
    | SplitNode
    | AwardPointsNode
    | DeductPointsNode
    | EscalateNode
    | UpdateTraitNode
    | WebhookNode
    | ExitNode,
    Field(discriminator="type"),
]

# Nodes that pass time: a cycle through one of them cannot spin.
WAITING_TYPES = (WaitNode, WaitUntilNode, WaitForEventNode, EscalateNode)


# --- journey-level rules -----------------------------------------------------------------------------


class Goal(_Strict):
    """Reaching the goal takes the customer out at once, from any wait, counted as converted."""

    event: str | None = Field(None, min_length=1, max_length=255)
    where: dict[str, Any] = Field(default_factory=dict)
    segment: str | None = Field(None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one(self) -> Goal:
        if (self.event is None) == (self.segment is None):
            raise ValueError("a goal is either an event or a segment")
        for key, value in self.where.items():
            # Conversions are counted in SQL (domain.analytics), which compares plain values only: a
            # goal it cannot read would fail the journey's analytics and the KPIs it counts towards.
            if '"' in key or isinstance(value, dict | list):
                raise ValueError(
                    f"where.{key}: a goal compares plain values (text, numbers, true/false, null), "
                    "not lists or objects, and property names without quotes"
                )
        return self


class FrequencyCap(_Strict):
    """At most ``max`` marketing emails to a customer per ``window``, counted across all journeys."""

    max: int = Field(gt=0, le=1000)
    window: Duration
    on_limit: Literal["defer", "drop"] = "defer"


class QuietHours(_Strict):
    """No sends between ``start`` and ``end`` in the customer's timezone (may wrap midnight)."""

    start: str = Field(pattern=LOCAL_TIME)
    end: str = Field(pattern=LOCAL_TIME)
    on_limit: Literal["defer", "drop"] = "defer"

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


RATE_PERIODS = {"second": 1, "minute": 60, "hour": 3_600, "day": 86_400}


class SendRate(_Strict):
    """At most ``max`` emails of this journey per ``per``, across all its enrollments; a send beyond
    the rate waits for the next free slot (never dropped)."""

    max: int = Field(gt=0, le=1_000_000, description="Sends allowed per period.")
    per: Literal["second", "minute", "hour", "day"] = Field(description="The period.")


class Rules(_Strict):
    goal: Goal | None = None
    exit_when: list[EventMatch] = Field(default_factory=list, max_length=20)
    frequency_cap: FrequencyCap | None = None
    quiet_hours: QuietHours | None = None
    send_rate: SendRate | None = None
    default_timezone: str = Field("UTC", description="For customers without a timezone.")

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        if not is_zone(value):
            raise ValueError(f"{value!r} is not an IANA timezone")
        return value


class JourneyDefinition(_Strict):
    nodes: list[Node] = Field(min_length=2, max_length=500)
    rules: Rules = Field(default_factory=Rules)

    def node(self, node_id: str):
        return next(n for n in self.nodes if n.id == node_id)

    @property
    def entry(self) -> EntryNode:
        return next(n for n in self.nodes if isinstance(n, EntryNode))

    def template_ids(self) -> set[str]:
        return {n.template_id for n in self.nodes if isinstance(n, SendEmailNode)}


_adapter = TypeAdapter(JourneyDefinition)


def parse(raw: Any) -> JourneyDefinition:
    """Validate shape and graph; raise ``InvalidInput`` naming the node and the problem."""
    try:
        definition = _adapter.validate_python(raw)
    except ValidationError as exc:
        raise InvalidInput([_describe(raw, err) for err in exc.errors()], code="invalid_definition") from exc
    problems = graph_problems(definition)
    if problems:
        raise InvalidInput(problems, code="invalid_definition")
    return definition


def _describe(raw: Any, err: dict) -> dict:
    loc = list(err["loc"])
    out = {"path": ".".join(str(p) for p in loc), "problem": err["msg"]}
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
            out["node"] = raw["nodes"][loc[1]].get("id")
    return out


def successors(node) -> list[tuple[str, str]]:
    """``(field, target)`` for every outgoing edge of a node (a dict snapshot or a model)."""
    get = node.get if isinstance(node, dict) else lambda k, d=None: getattr(node, k, d)
    out = []
    for key in (
        "next",
        "timeout_next",
        "default_next",
        "resolved_next",
        "breached_next",
        "insufficient_next",
    ):
        if get(key):
            out.append((key, get(key)))
    for i, branch in enumerate(get("branches") or []):
        target = branch.get("next") if isinstance(branch, dict) else branch.next
        if target:
            out.append((f"branches.{i}.next", target))
    for i, path in enumerate(get("paths") or []):
        target = path.get("next") if isinstance(path, dict) else path.next
        if target:
            out.append((f"paths.{i}.next", target))
    return out


def graph_problems(definition: JourneyDefinition) -> list[dict]:
    problems: list[dict] = []
    ids = [n.id for n in definition.nodes]
    by_id = {n.id: n for n in definition.nodes}
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append({"node": dup, "problem": "node id is used more than once"})
    entries = [n for n in definition.nodes if isinstance(n, EntryNode)]
    if len(entries) != 1:
        problems.append(
            {"node": None, "problem": f"a journey needs exactly one entry node, found {len(entries)}"}
        )
    for node in definition.nodes:
        for field, target in successors(node):
            if target not in by_id:
                problems.append({"node": node.id, "problem": f"{field} names an unknown node {target!r}"})
            elif isinstance(by_id[target], EntryNode):
                problems.append({"node": node.id, "problem": f"{field} cannot lead back to the entry node"})
        problems.extend(_reference_problems(node, entries))
    if problems:
        return problems
    entry = entries[0]
    if entry.next is None:
        problems.append({"node": entry.id, "problem": "the entry node needs next"})
    reached = _reachable(by_id, entry.id)
    for node in definition.nodes:
        if node.id not in reached:
            problems.append({"node": node.id, "problem": "node cannot be reached from the entry"})
    loop = _loop_without_wait(by_id, entry.id)
    if loop:
        problems.append({"node": loop[0], "problem": f"path loops without a wait: {' -> '.join(loop)}"})
    return problems


def _reference_problems(node, entries: list[EntryNode]) -> list[dict]:
    entry = entries[0] if len(entries) == 1 else None
    needs_event_entry = entry is not None and entry.trigger != "event"
    if isinstance(node, WaitForEventNode) and node.match_entry and needs_event_entry:
        return [{"node": node.id, "problem": "match_entry needs an entry triggered by an event"}]
    if isinstance(node, BranchNode) and entry is not None and entry.trigger != "event":
        for branch in node.branches:
            if any(c.event_property for c in branch.when):
                return [{"node": node.id, "problem": "event_property conditions need an event entry"}]
    return []


def _reachable(by_id: dict, start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend(target for _, target in successors(by_id[current]))
    return seen


def _loop_without_wait(by_id: dict, start: str) -> list[str] | None:
    """A cycle whose nodes contain no wait would spin forever; return it if there is one."""
    on_path: list[str] = []
    done: set[str] = set()

    def visit(node_id: str) -> list[str] | None:
        if node_id in on_path:
            cycle = [*on_path[on_path.index(node_id) :], node_id]
            if not any(isinstance(by_id[n], WAITING_TYPES) for n in cycle):
                return cycle
            return None
        if node_id in done:
            return None
        on_path.append(node_id)
        for _, nxt in successors(by_id[node_id]):
            found = visit(nxt)
            if found:
                return found
        on_path.pop()
        done.add(node_id)
        return None

    return visit(start)


def snapshot(definition: JourneyDefinition) -> dict[str, Any]:
    """The definition as the workflow runs it: durations precomputed to seconds."""
    out = definition.model_dump(mode="json")
    for node in out["nodes"]:
        if node["type"] == "wait":
            node["seconds"] = parse_duration(node["duration"])
        elif node["type"] == "wait_for_event":
            node["timeout_seconds"] = parse_duration(node["timeout"])
        elif node["type"] == "escalate":
            node["sla_seconds"] = parse_duration(node["sla"])
    cap = out["rules"].get("frequency_cap")
    if cap:
        cap["window_seconds"] = parse_duration(cap["window"])
    rate = out["rules"].get("send_rate")
    if rate:
        rate["per_seconds"] = RATE_PERIODS[rate["per"]]
    return out


# The events the segments area records for a customer entering or leaving a segment (property
# ``segment_id``); a match on one of them filtered by ``segment_id`` names that segment.
SEGMENT_EVENTS = (conditions.SEGMENT_ENTERED, "Segment Exited")


class SegmentReference(NamedTuple):
    node: str | None  # the node naming the segment, None for the journey's rules
    path: str  # where in the definition, e.g. "nodes.2.branches.0.when.1.segment"
    segment: str


def segment_references(raw: Any) -> list[SegmentReference]:
    """Every segment a definition (its JSON, a draft or a published snapshot) refers to.

    The language names segments in these places only: a branch condition's ``segment``, a segment
    entry's ``segment_id``, a segment goal (``rules.goal.segment``), and the ``segment_id`` filter of a
    match on ``Segment Entered`` / ``Segment Exited`` (an event entry, a ``wait_for_event``, an event
    goal, ``exit_when``). A key called ``segment`` anywhere else is the marketer's data: a trait that
    ``update_trait`` sets, a field of a webhook body, an event property an event filter tests."""
    found: list[SegmentReference] = []
    raw = raw if isinstance(raw, dict) else {}

    def event_filter(match: Any, node_id: str | None, path: str) -> None:
        where = match.get("where")
        if match.get("event") in SEGMENT_EVENTS and isinstance(where, dict):
            segment = where.get("segment_id")
            if isinstance(segment, str):
                found.append(SegmentReference(node_id, f"{path}.where.segment_id", segment))

    nodes = raw.get("nodes")
    for index, node in enumerate(nodes if isinstance(nodes, list) else []):
        if not isinstance(node, dict):
            continue
        node_id, path = node.get("id"), f"nodes.{index}"
        kind = node.get("type")
        if kind == "entry":
            trigger = node.get("trigger", "event")
            if trigger == "segment" and isinstance(node.get("segment_id"), str):
                found.append(SegmentReference(node_id, f"{path}.segment_id", node["segment_id"]))
            elif trigger == "event":
                event_filter(node, node_id, path)
        elif kind == "wait_for_event":
            event_filter(node, node_id, path)
        elif kind == "branch":
            branches = node.get("branches")
            for b, branch in enumerate(branches if isinstance(branches, list) else []):
                when = branch.get("when") if isinstance(branch, dict) else None
                for c, condition in enumerate(when if isinstance(when, list) else []):
                    segment = condition.get("segment") if isinstance(condition, dict) else None
                    if isinstance(segment, str):
                        found.append(
                            SegmentReference(node_id, f"{path}.branches.{b}.when.{c}.segment", segment)
                        )
    rules = raw.get("rules") if isinstance(raw.get("rules"), dict) else {}
    goal = rules.get("goal")
    if isinstance(goal, dict):
        if isinstance(goal.get("segment"), str):
            found.append(SegmentReference(None, "rules.goal.segment", goal["segment"]))
        else:
            event_filter(goal, None, "rules.goal")
    exits = rules.get("exit_when")
    for index, match in enumerate(exits if isinstance(exits, list) else []):
        if isinstance(match, dict):
            event_filter(match, None, f"rules.exit_when.{index}")
    return found


def matches_entry(entry: dict, event_name: str, properties: dict) -> bool:
    """Does a stored event enroll into a journey whose entry node is ``entry`` (a snapshot dict)?

    A segment entry is entered by the ``Segment Entered`` event of its segment."""
    trigger = entry.get("trigger", "event")
    if trigger == "segment":
        return conditions.entered_segment(event_name, properties, entry.get("segment_id"))
    if trigger != "event" or entry.get("event") != event_name:
        return False
    # JSON equality, as branches and goals (and analytics' SQL) read it: ``true`` is no ``1``.
    return all(
        conditions.same(properties.get(key), value) for key, value in (entry.get("where") or {}).items()
    )
