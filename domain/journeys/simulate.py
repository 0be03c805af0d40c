"""Dry run: walk a journey for one customer on a simulated clock, render what it would send, send nothing.

The walk follows the same rules as JourneyWorkflow (the same condition, split and time functions), with
the events the marketer describes arriving at given offsets from entry. Activities owned by other
areas are not called: webhooks are listed, points move a balance of the simulation's own (the
request's, or the real customer's), a segment's membership comes from the request, and an escalated
case resolves after ``case_resolved_after`` (or breaches its SLA).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from domain.email import rendering
from domain.email.compose import InvalidRecipient
from domain.journeys import conditions, timing
from domain.journeys.definition import parse_duration
from domain.journeys.schemas import SimulatedEvent, SimulatedMessage, SimulatedStep, SimulationResult

MAX_STEPS = 200


# (send_email node, template version, customer profile, entry event) -> the message a send would carry
Render = Callable[[dict[str, Any], Any, dict[str, Any], dict[str, Any]], rendering.RenderedEmail]


class Simulation:
    def __init__(
        self,
        definition: dict[str, Any],
        *,
        journey_id: str,
        customer: dict[str, Any],
        entry: SimulatedEvent,
        events: list[SimulatedEvent],
        segments: set[str],
        start: datetime,
        case_resolved_after: str | None,
        points: int = 0,
        templates: dict[str, Any],
        render: Render,
    ):
        self.definition = definition
        self.rules = definition.get("rules") or {}
        self.nodes = {n["id"]: n for n in definition["nodes"]}
        self.journey_id = journey_id
        self.customer = customer
        self.traits = dict(customer.get("traits") or {})
        self.entry = entry
        self.segments = segments
        self.start = start
        self.now = start
        self.case_after = parse_duration(case_resolved_after) if case_resolved_after else None
        self.points = points
        self.templates = templates
        self.render = render
        # Events after entry, in time order, each (moment, event); one without ``after`` comes right
        # after entry, at the start. As in the workflow's inbox, the first ``scanned`` have been looked
        # at for the goal and exit criteria, and those from ``awake`` on came after the enrollment last
        # woke from a wait (a wait_for_event takes them too).
        self.timeline = sorted(
            (
                (start + timedelta(seconds=parse_duration(e.after or "0s") if e.after else 0), e)
                for e in events
            ),
            key=lambda item: item[0],
        )
        self.scanned = 0
        self.awake = 0
        self.steps: list[SimulatedStep] = []
        self.messages: list[SimulatedMessage] = []
        self.status = "completed"

    def tz(self):
        return timing.zone(self.customer.get("timezone"), self.rules.get("default_timezone", "UTC"))

    def run(self) -> SimulationResult:
        entry = next(n for n in self.nodes.values() if n["type"] == "entry")
        current = entry.get("next")
        if entry.get("trigger") == "date_trait":
            day = timing.parse_date(self.traits.get(entry["trait"]))
            current = current if day is not None else None
            if day is not None and not self._advance(
                timing.next_anniversary(self.now, self.tz(), day, entry["at"])
            ):
                current = None
        visits: dict[str, int] = {}
        while current is not None and len(self.steps) < MAX_STEPS and self.status == "completed":
            if self._interrupted():  # as the workflow looks before every node
                break
            node = self.nodes[current]
            visits[current] = visits.get(current, 0) + 1
            step = SimulatedStep(node_id=current, entered_at=self.now)
            self.steps.append(step)
            current, step.outcome = self._node(node)
            step.left_at = self.now
            if node["type"] == "exit":
                break
        if len(self.steps) >= MAX_STEPS:
            self.status = "step_limit"
        return SimulationResult(status=self.status, steps=self.steps, messages=self.messages)

    # Time passes only through _advance, which stops early at a goal or exit event.
    def _advance(self, until: datetime, stop=None) -> bool:
        """Move the clock to ``until`` unless an event interrupts; True if the full time passed."""
        goal_segment = (self.rules.get("goal") or {}).get("segment")
        if goal_segment in self.segments and until > self.now:
            self.status = "converted"  # a member of the goal segment converts at the first wait
            return False
        if self._interrupted():
            return False
        if stop is not None and any(stop(e) for _, e in self.timeline[self.awake : self.scanned]):
            self.awake = self.scanned  # it came while the steps before the wait ran
            return False
        while self.scanned < len(self.timeline) and self.timeline[self.scanned][0] <= until:
            moment, event = self.timeline[self.scanned]
            self.scanned += 1
            if self._ends_journey(event):
                self.now = moment
                return False
            if stop is not None and stop(event):
                self.now, self.awake = moment, self.scanned
                return False
        self.now, self.awake = max(self.now, until), self.scanned
        return True

    def _interrupted(self) -> bool:
        """Look at the events that have come by now and not been looked at: a goal converts, an exit
        criterion exits. Events come in at entry (no ``after``) or with another at the same moment."""
        while self.scanned < len(self.timeline) and self.timeline[self.scanned][0] <= self.now:
            _, event = self.timeline[self.scanned]
            self.scanned += 1
            if self._ends_journey(event):
                return True
        return False

    def _ends_journey(self, event: SimulatedEvent) -> bool:
        if self._is_goal(event):
            self.status = "converted"
        elif self._is_exit(event):
            self.status = "exited"
        return self.status != "completed"

    def _is_goal(self, event: SimulatedEvent) -> bool:
        goal = self.rules.get("goal") or {}
        if goal.get("segment"):
            return conditions.entered_segment(event.name, event.properties, goal["segment"])
        return bool(goal.get("event")) and conditions.event_matches(
            event.name, event.properties, want=goal["event"], where=goal.get("where") or {}
        )

    def _is_exit(self, event: SimulatedEvent) -> bool:
        return any(
            conditions.event_matches(
                event.name, event.properties, want=m["event"], where=m.get("where") or {}
            )
            for m in self.rules.get("exit_when") or []
        )

    def _node(self, node: dict[str, Any]) -> tuple[str | None, str | None]:
        kind = node["type"]
        if kind == "send_email":
            return self._send(node)
        if kind == "wait":
            self._advance(self.now + timedelta(seconds=parse_duration(node["duration"])))
            return node.get("next"), None
        if kind == "wait_until":
            if node.get("date_trait"):
                target = timing.date_trait_moment(
                    self.now,
                    self.tz(),
                    self.traits.get(node["date_trait"]),
                    node["at"],
                    node.get("offset_days", 0),
                )
                if target is None:  # no date, one beyond the calendar, or more than ten years ahead
                    return node.get("next"), "no_date"
                if target < self.now:  # the workflow goes on at once, recording why
                    return node.get("next"), "date_passed"
            else:
                target = timing.next_local_time(self.now, self.tz(), node["at"], node.get("weekdays") or None)
            self._advance(target)
            return node.get("next"), None
        if kind == "wait_for_event":

            def arrived(event: SimulatedEvent) -> bool:
                return conditions.event_matches(
                    event.name,
                    event.properties,
                    want=node["event"],
                    where=node.get("where") or {},
                    match_entry=node.get("match_entry"),
                    entry_properties=self.entry.properties,
                )

            full = self._advance(self.now + timedelta(seconds=parse_duration(node["timeout"])), arrived)
            if self.status != "completed":
                return None, self.status
            return (node.get("timeout_next"), "timeout") if full else (node.get("next"), "matched")
        if kind == "branch":
            for index, branch in enumerate(node["branches"]):
                if all(
                    conditions.holds(
                        c, traits=self.traits, event=self.entry.properties, segments=self.segments
                    )
                    for c in branch["when"]
                ):
                    return branch.get("next"), f"branch:{index}"
            return node.get("default_next"), "default"
        if kind == "split":
            bucket = conditions.split_bucket(self.journey_id, node["id"], self.customer.get("id") or 0)
            chosen = conditions.choose_path(node["paths"], node.get("holdout_percent", 0), bucket)
            return (
                (None, "holdout") if chosen is None else (node["paths"][chosen].get("next"), f"path:{chosen}")
            )
        if kind == "award_points":
            self.points += node["points"]
            return node.get("next"), f"{kind}:{node['points']}"
        if kind == "deduct_points":
            if node["points"] > self.points:  # as the workflow: nothing taken, not on to `next`
                return node.get("insufficient_next"), "insufficient"
            self.points -= node["points"]
            return node.get("next"), f"{kind}:{node['points']}"
        if kind == "escalate":
            sla = parse_duration(node["sla"])
            if self.case_after is not None and self.case_after <= sla:
                full = self._advance(self.now + timedelta(seconds=self.case_after))
                return (node.get("resolved_next"), "case:resolved") if full else (None, self.status)
            self._advance(self.now + timedelta(seconds=sla))
            return (
                (node.get("breached_next"), "sla_breached")
                if self.status == "completed"
                else (None, self.status)
            )
        if kind == "update_trait":
            self.traits.update(node["traits"])
            return node.get("next"), None
        if kind == "webhook":
            return node.get("next"), f"would call {node['url']}"
        return None, None

    def _send(self, node: dict[str, Any]) -> tuple[str | None, str | None]:
        quiet = self.rules.get("quiet_hours")
        if quiet:
            allowed = timing.quiet_hours_end(self.now, self.tz(), quiet["start"], quiet["end"])
            if allowed > self.now:
                if quiet.get("on_limit") == "drop":
                    return node.get("next"), "dropped:quiet_hours"
                if not self._advance(allowed):
                    return None, self.status
        template = self.templates.get(node["template_id"])
        profile = {**self.customer, "traits": self.traits}
        event = {
            "name": self.entry.name,
            "properties": self.entry.properties,
            "timestamp": self.start.isoformat(),
        }
        try:
            rendered = self.render(node, template, profile, event)
        except (rendering.RenderError, InvalidRecipient) as exc:
            return node.get("next"), f"render_failed: {exc}"
        self.messages.append(
            SimulatedMessage(
                node_id=node["id"],
                at=self.now,
                to=self.customer.get("email"),
                subject=rendered.subject,
                html=rendered.html,
                text=rendered.text,
            )
        )
        return node.get("next"), "rendered"
