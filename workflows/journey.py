"""JourneyWorkflow: one run per enrollment, interpreting the published journey graph it was started with.

The definition snapshot travels in the input, so a later version never changes a customer already
inside. Customer events arrive as "event" signals (the router sends only those the enrollment listens
for); a goal or exit criterion interrupts any wait at once. Bookkeeping (context reads, step records,
listener registration) runs as local activities so it adds no round trips to the server; every side
effect is an activity with an id and an idempotency key derived from the node id and visit.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        AWARD_POINTS,
        CALL_WEBHOOK,
        CASE_REJECTED,
        CASE_UPDATE_SIGNAL,
        DEDUCT_POINTS,
        ENROLLMENT_SUPERSEDED,
        EVALUATE_SEGMENT,
        FINISH_ENROLLMENT,
        JOURNEY_CONTEXT,
        JOURNEY_STATUS_SIGNAL,
        OPEN_CASE,
        RECORD_STEPS,
        REGISTER_LISTENERS,
        RENDER_FAILED,
        SEND_EMAIL,
        UNDELIVERABLE,
        UPDATE_TRAITS,
        WEBHOOK_REJECTED,
        CaseUpdate,
        EventRef,
        FinishEnrollmentRequest,
        JourneyContext,
        JourneyContextRequest,
        OpenCaseRequest,
        PointsRequest,
        PointsResult,
        RecordStepsRequest,
        RegisterListenersRequest,
        SegmentMembership,
        SegmentMembershipRequest,
        SendEmailRequest,
        SendEmailResult,
        StepRecord,
        TimePlan,
        UpdateTraitsRequest,
        WebhookRequest,
        WebhookResult,
    )
    from domain.journeys import conditions

SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=[RENDER_FAILED, UNDELIVERABLE],
)
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=30),
    maximum_attempts=12,
    non_retryable_error_types=[WEBHOOK_REJECTED],
)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
LOCAL = {"start_to_close_timeout": timedelta(seconds=30), "retry_policy": STEP_RETRY}
# Sends and points run as local activities: no server round trip and no extra workflow task per step.
# Local activities cannot heartbeat; a crashed worker's step is rerun when its workflow task times out
# (seconds), and the idempotency key (the send ledger's reservation, the points ledger's key) makes the
# rerun deliver or award nothing twice. The timeout bounds one attempt: an SMTP handoff stuck that long
# is retried with the same Message-ID, which receiving servers collapse.
LOCAL_STEPS_PATCH = "steps-as-local-activities"
# A send with no rule to plan checks the journey's status itself instead of a context read first.
SEND_CHECKS_STATUS_PATCH = "send-checks-journey-status"
LOCAL_SEND = {"start_to_close_timeout": timedelta(seconds=60), "retry_policy": SEND_RETRY}
LOCAL_POINTS = {"start_to_close_timeout": timedelta(seconds=30), "retry_policy": STEP_RETRY}
# A paused journey is re-checked at least this often even if the resume signal is missed.
PAUSE_RECHECK = timedelta(hours=1)
# Patch id of the goal-segment membership look at the first wait (recorded histories predate it).
SEGMENT_GOAL_MEMBERSHIP = "segment-goal-membership"
# Patch id of a wait counting the events signalled since the enrollment last woke, not only those
# signalled once it is waiting (recorded histories predate it).
WAIT_SINCE_AWAKE_PATCH = "wait-counts-events-since-awake"
# Patch id of an enrollment with no entry event (by API, by the anniversary sweep) looking at events
# received after it started only, not at the customer's whole history (recorded histories predate it).
ENTRY_WATERMARK_PATCH = "events-since-enrollment-start"
# Patch id of a date wait reached again while its date is still missing or past ending the enrollment
# (it went straight on, so a loop through it repeated its steps, sends included, without pause).
DATE_WAIT_REVISIT_PATCH = "date-wait-revisit-ends"
# Patch id of a continue-as-new carrying the events signalled since the enrollment last woke, which the
# next wait counts, not only those not yet looked at for a goal (they were lost to that wait).
CARRY_SINCE_AWAKE_PATCH = "continue-as-new-carries-events-since-awake"
# Patch id of a wait for an event dropping its listener once it ends (with the enrollment's next step
# records): every later event of that name was signalled to it until it finished. A later wait for
# the name registers it again (recorded histories predate it).
WAIT_ENDS_LISTENER_PATCH = "wait-ends-its-listener"
# Patch id of branch conditions comparing dates by the day they are on (as segments do), not by
# character; asked only when the two readings disagree, so enrollments they agree for record nothing.
BRANCH_DATES_BY_DAY_PATCH = "branch-compares-dates-by-day"
# Patch id of a deduct_points step the balance did not cover going to its `insufficient_next` (it went
# on to `next` as if the points were taken); asked only when a deduction comes back insufficient.
DEDUCT_INSUFFICIENT_PATCH = "deduct-insufficient-branches"
# Patch id of branch conditions and event filters telling booleans from numbers (`true` equalled `1`);
# asked only when the two equalities disagree.
BOOLEANS_NOT_NUMBERS_PATCH = "conditions-tell-booleans-from-numbers"
# Keep at most this many step records in memory and in a continue-as-new input.
MAX_KEPT_STEPS = 200


@dataclass
class JourneyState:
    """What a run hands to its continuation when history grows large."""

    current: str | None
    visits: dict[str, int] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    inbox: list[EventRef] = field(default_factory=list)
    seen_event_ids: list[int] = field(default_factory=list)
    listening: list[str] = field(default_factory=list)


@dataclass
class JourneyInput:
    journey_id: str
    version: int
    customer_id: int
    # The published version's definition, frozen at enrollment: later versions never change this run.
    definition: dict[str, Any]
    entry_event: EventRef
    state: JourneyState | None = None


@dataclass
class JourneyResult:
    status: str  # completed | converted | exited
    path: list[str] = field(default_factory=list)


class _Leave(Exception):
    """Raised inside a node when the enrollment must stop (goal, exit criterion, archive)."""


def _superseded(err: ActivityError | ApplicationError) -> bool:
    """Whether a step's activity refused because a profile merge ended the enrollment."""
    cause = err.cause if isinstance(err, ActivityError) else err
    return isinstance(cause, ApplicationError) and cause.type == ENROLLMENT_SUPERSEDED


# Outside the SDK's sandbox: the sandbox re-executes this module for every new run, which cost a fifth
# of the worker's time per enrollment. The class keeps to workflow APIs and pass-through imports (no
# module state, no I/O), and recorded histories replay in CI to catch non-determinism.
@workflow.defn(name="JourneyWorkflow", sandboxed=False)
class JourneyWorkflow:
    def __init__(self) -> None:
        self._inbox: list[EventRef] = []
        self._seen_event_ids: set[int] = set()
        self._scanned = 0
        self._outcome: str | None = None
        self._steps: list[StepRecord] = []
        self._dirty: dict[tuple[str, int], StepRecord] = {}
        self._status_changes = 0
        # Case id -> the latest CaseUpdate the cases area sent (a breach, then the resolution).
        self._cases: dict[int, CaseUpdate] = {}
        self._listening: set[str] = set()
        # Names whose wait ended, still registered until the next _flush drops them (see _unlisten).
        self._unheard: set[str] = set()
        self._inp: JourneyInput | None = None
        self._awake_since: datetime | None = None
        # Where the inbox stood when the enrollment last woke (0: since entry), see _wait_for_event.
        self._awake_inbox = 0
        self._goal_membership_checked = False

    # --- signals and queries -------------------------------------------------------------------

    @workflow.signal(name="event")
    def on_event(self, event: EventRef) -> None:
        # The router may deliver an event twice (a retried routing pass); keep the first.
        if event.id not in self._seen_event_ids:
            self._seen_event_ids.add(event.id)
            self._inbox.append(event)

    @workflow.signal(name=CASE_UPDATE_SIGNAL)
    def on_case_update(self, update: CaseUpdate) -> None:
        known = self._cases.get(update.case_id)
        if known is None or known.outcome is None:  # a resolution is final; a late breach notice is not news
            self._cases[update.case_id] = update

    @workflow.signal(name=JOURNEY_STATUS_SIGNAL)
    def on_journey_status(self, status: str) -> None:
        # Only a wake-up call: the status itself is re-read from the database.
        self._status_changes += 1

    @workflow.query(name="path")
    def path(self) -> list[StepRecord]:
        return list(self._steps)

    # --- the interpreter -----------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: JourneyInput) -> JourneyResult:
        self._inp = inp
        self._rules = inp.definition.get("rules") or {}
        self._nodes = {n["id"]: n for n in inp.definition["nodes"]}
        entry = next(n for n in self._nodes.values() if n["type"] == "entry")
        self._entry_props = inp.entry_event.properties or {}
        visits: dict[str, int]
        if inp.state is None:
            # The start signal may have delivered the entry event itself: it is not a later event.
            self._inbox = [e for e in self._inbox if e.id != inp.entry_event.id]
            self._seen_event_ids.add(inp.entry_event.id)
            current, visits = entry.get("next"), {}
        else:
            state = inp.state
            current, visits = state.current, dict(state.visits)
            self._steps = list(state.steps)
            self._inbox = [*state.inbox, *self._inbox]
            self._seen_event_ids.update(state.seen_event_ids)
            self._listening = set(state.listening)
        try:
            if inp.state is None:
                # Inside the try: an enrollment a merge ended before it started refuses this (the
                # registration retries until it answers, so recorded histories hold no other failure).
                await self._listen(
                    self._rule_events(), after_event_id=inp.entry_event.id, since=self._history_floor()
                )
            # Inside the try: a goal or exit reached while waiting for the day ends the enrollment too.
            anniversary = inp.state is None and entry.get("trigger") == "date_trait"
            if anniversary and not await self._wait_for_anniversary(entry):
                current = None
            while current is not None:
                self._check_interrupts()
                if self._history_is_large():
                    await self._continue_as_new(current, visits)
                node = self._nodes[current]
                visits[current] = visits.get(current, 0) + 1
                step = self._enter(current, visits[current])
                current, outcome = await self._run_node(node, visits[current])
                self._leave(step, outcome)
                if node["type"] == "exit":
                    break
        except _Leave:
            self._close_open_steps(self._outcome or "exited")
        except (ActivityError, ApplicationError) as err:
            if _superseded(err):
                # A profile merge ended this enrollment and the step did nothing: leave as from an
                # archived journey. (No command changes for recorded histories: none holds this error.)
                self._outcome = "exited"
                self._close_open_steps("exited")
            else:
                # A step failed for good (e.g. a template that cannot render): record it, then surface
                # it. A local activity's failure arrives as the activity's own ApplicationError.
                self._close_open_steps("failed")
                await self._finish(inp, "failed")
                raise
        status = self._outcome or "completed"
        await self._finish(inp, status)
        return JourneyResult(status=status, path=[s.node_id for s in self._steps])

    async def _finish(self, inp: JourneyInput, status: str) -> None:
        await workflow.execute_local_activity(
            FINISH_ENROLLMENT,
            FinishEnrollmentRequest(
                workflow_id=workflow.info().workflow_id,
                status=status,
                steps=self._take_dirty(),
                journey_id=inp.journey_id,
                version=inp.version,
                customer_id=inp.customer_id,
                entry_event_id=inp.entry_event.id or None,
                entered_at=workflow.info().start_time.isoformat(),
                listened=bool(self._listening or self._unheard),
            ),
            **LOCAL,
        )

    async def _run_node(self, node: dict[str, Any], visit: int) -> tuple[str | None, str | None]:
        kind = node["type"]
        if kind == "send_email":
            return await self._send_email(node, visit)
        if kind == "wait":
            await self._sleep_until(workflow.now() + timedelta(seconds=node["seconds"]))
            return node.get("next"), None
        if kind == "wait_until":
            return await self._wait_until(node, visit)
        if kind == "wait_for_event":
            return await self._wait_for_event(node)
        if kind == "branch":
            return await self._branch(node)
        if kind == "split":
            return self._split(node)
        if kind in ("award_points", "deduct_points"):
            return await self._points(node, visit)
        if kind == "escalate":
            return await self._escalate(node, visit)
        if kind == "update_trait":
            await workflow.execute_activity(
                UPDATE_TRAITS,
                UpdateTraitsRequest(customer_id=self._inp.customer_id, traits=node["traits"]),
                activity_id=f"{node['id']}/{visit}",
                start_to_close_timeout=timedelta(seconds=30),
            )
            return node.get("next"), None
        if kind == "webhook":
            return await self._webhook(node, visit)
        if kind == "exit":
            return None, None
        raise ValueError(f"unknown node type {kind!r}")  # the definition was validated at publish

    # --- nodes ---------------------------------------------------------------------------------

    async def _send_email(self, node: dict[str, Any], visit: int) -> tuple[str | None, str | None]:
        cap = self._rules.get("frequency_cap")
        quiet = self._rules.get("quiet_hours")
        rate = self._rules.get("send_rate")
        # The key names this enrollment (workflow id + entry event) and this step (node + visit), so a
        # retried activity, a replay or a crashed worker all find the same ledger row (and rate slot).
        key = f"{workflow.info().workflow_id}/{self._inp.entry_event.id}/{node['id']}/{visit}"
        fresh = False
        while True:
            # Taken before reading the status, so a resume signal that lands during the read is not lost.
            status_changes = self._status_changes
            plan = None
            if cap or quiet or rate:
                plan = self._plan(
                    "send",
                    quiet_start=quiet["start"] if quiet else None,
                    quiet_end=quiet["end"] if quiet else None,
                    cap_max=cap["max"] if cap else None,
                    cap_window_seconds=cap["window_seconds"] if cap else None,
                    rate_max=rate["max"] if rate else None,
                    rate_per_seconds=rate["per_seconds"] if rate else None,
                    # The key also names the send's reservation under the cap (only the plan's
                    # input changes: no command is added or removed, so histories still replay).
                    send_key=key if rate or cap else None,
                    # Input only, as above: the cap lets a transactional template's send go.
                    template_id=node["template_id"] if cap else None,
                    template_version=node["template_version"] if cap else None,
                )
            if plan is None and workflow.patched(SEND_CHECKS_STATUS_PATCH):
                # No rule to ask about: the send itself checks the journey's status (one step less).
                result = await self._deliver(node, visit, key, hold=True, fresh=fresh)
                if result.status != "held":
                    return node.get("next"), result.status
                status, held_by, moment = result.detail, None, None
            else:
                ctx = await self._context(plan, with_customer=plan is not None, fresh_status=fresh)
                status, held_by, moment = ctx.journey_status, ctx.held_by, ctx.moment
            if status == "archived":
                self._outcome = "exited"
                raise _Leave
            if status == "paused":
                # Hold before the send until a status signal (resume) or a periodic re-check.
                await self._flush()
                await self._wait(lambda seen=status_changes: self._status_changes != seen, PAUSE_RECHECK)
                fresh = True
                continue
            if held_by is None:
                break
            # The send rate only ever defers: a marketer's rate limit never drops an email.
            rule = {"quiet_hours": quiet, "frequency_cap": cap}.get(held_by) or {}
            if rule.get("on_limit") == "drop":
                return node.get("next"), f"dropped:{held_by}"
            await self._sleep_until(datetime.fromisoformat(moment))
        result = await self._deliver(node, visit, key)
        return node.get("next"), result.status

    async def _deliver(
        self, node: dict[str, Any], visit: int, key: str, *, hold: bool = False, fresh: bool = False
    ) -> SendEmailResult:
        request = SendEmailRequest(
            idempotency_key=key,
            customer_id=self._inp.customer_id,
            template_id=node["template_id"],
            template_version=node["template_version"],
            journey_id=self._inp.journey_id,
            node_id=node["id"],
            event=self._inp.entry_event,
            subscription_group=node.get("subscription_group"),
            hold_unless_published=hold,
            fresh_status=fresh,
            default_timezone=self._rules.get("default_timezone"),
        )
        if workflow.patched(LOCAL_STEPS_PATCH):
            return await workflow.execute_local_activity(
                SEND_EMAIL,
                request,
                activity_id=f"{node['id']}/{visit}",
                **LOCAL_SEND,
                result_type=SendEmailResult,
            )
        # histories recorded before sends ran as local activities
        return await workflow.execute_activity(
            SEND_EMAIL,
            request,
            activity_id=f"{node['id']}/{visit}",
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=SEND_RETRY,
            result_type=SendEmailResult,
        )

    async def _wait_until(self, node: dict[str, Any], visit: int) -> tuple[str | None, str | None]:
        if node.get("date_trait"):
            plan = self._plan(
                "date", at=node["at"], trait=node["date_trait"], offset_days=node["offset_days"]
            )
        else:
            plan = self._plan("local_time", at=node["at"], weekdays=node.get("weekdays") or [])
        ctx = await self._context(plan)
        target = datetime.fromisoformat(ctx.moment) if ctx.moment is not None else None
        if target is None or target < workflow.now():
            outcome = "no_date" if target is None else "date_passed"
            # Reached again with nothing to wait for: going on would repeat the loop at once.
            if visit > 1 and node.get("date_trait") and workflow.patched(DATE_WAIT_REVISIT_PATCH):
                return None, outcome
            return node.get("next"), outcome
        await self._sleep_until(target)
        return node.get("next"), None

    async def _wait_for_anniversary(self, entry: dict[str, Any]) -> bool:
        """Date-trait entry: wait until the day at the entry's local time; False if there is no date."""
        ref = self._inp.entry_event
        if ref.name == "$anniversary" and ref.timestamp:
            # The sweep computed the moment when it enrolled; recomputing here could roll to next year.
            await self._sleep_until(datetime.fromisoformat(ref.timestamp))
            return True
        ctx = await self._context(self._plan("anniversary", at=entry["at"], trait=entry["trait"]))
        if ctx.moment is None:
            return False
        await self._sleep_until(datetime.fromisoformat(ctx.moment))
        return True

    async def _wait_for_event(self, node: dict[str, Any]) -> tuple[str | None, str | None]:
        # Nodes between two waits take no time in the journey's terms: an event that arrived since the
        # enrollment last woke (or since entry) belongs to this wait even if it beat the registration
        # (the catch-up below) or was signalled while the nodes before it ran (e.g. during an email
        # send, or in the first task, which a signal can make Temporal run again).
        start = self._awake_inbox if workflow.patched(WAIT_SINCE_AWAKE_PATCH) else len(self._inbox)
        await self._listen(
            [node["event"]],
            after_event_id=self._inp.entry_event.id,
            since=self._awake_since or self._history_floor(),
        )

        def arrived() -> bool:
            return any(
                self._strictly(
                    lambda strict, e=e: conditions.event_matches(
                        e.name,
                        e.properties or {},
                        want=node["event"],
                        where=node.get("where") or {},
                        match_entry=node.get("match_entry"),
                        entry_properties=self._entry_props,
                        strict=strict,
                    )
                )
                for e in self._inbox[start:]
            )

        await self._flush()
        came = await self._wait(arrived, timedelta(seconds=node["timeout_seconds"]))
        self._unlisten(node["event"])
        if came:
            return node.get("next"), "matched"
        return node.get("timeout_next"), "timeout"

    async def _branch(self, node: dict[str, Any]) -> tuple[str | None, str | None]:
        needs_traits = any(c.get("trait") for b in node["branches"] for c in b["when"])
        segment_ids = sorted({c["segment"] for b in node["branches"] for c in b["when"] if c.get("segment")})
        traits = (await self._context()).traits if needs_traits else {}
        segments = await self._segments(segment_ids, node["id"]) if segment_ids else set()

        def holds(condition: dict[str, Any]) -> bool:
            facts = {"traits": traits, "event": self._entry_props, "segments": segments}
            # Each reading that enrollments began without is asked for only where it decides.
            by_day = conditions.holds(condition, **facts, strict=False) == conditions.holds(
                condition, **facts, by_day=False, strict=False
            ) or workflow.patched(BRANCH_DATES_BY_DAY_PATCH)
            return self._strictly(
                lambda strict: conditions.holds(condition, **facts, by_day=by_day, strict=strict)
            )

        for index, branch in enumerate(node["branches"]):
            if all(holds(c) for c in branch["when"]):
                return branch.get("next"), f"branch:{index}"
        return node.get("default_next"), "default"

    @staticmethod
    def _strictly(evaluate) -> bool:
        """``evaluate(strict)`` with booleans told from numbers, or with Python's equality where the two
        disagree and the enrollment began before the distinction (BOOLEANS_NOT_NUMBERS_PATCH)."""
        strict = evaluate(True)
        if strict == evaluate(False):
            return strict
        return strict if workflow.patched(BOOLEANS_NOT_NUMBERS_PATCH) else not strict

    def _split(self, node: dict[str, Any]) -> tuple[str | None, str | None]:
        bucket = conditions.split_bucket(self._inp.journey_id, node["id"], self._inp.customer_id)
        chosen = conditions.choose_path(node["paths"], node.get("holdout_percent", 0), bucket)
        if chosen is None:
            return None, "holdout"
        return node["paths"][chosen].get("next"), f"path:{chosen}"

    async def _points(self, node: dict[str, Any], visit: int) -> tuple[str | None, str | None]:
        name = AWARD_POINTS if node["type"] == "award_points" else DEDUCT_POINTS
        request = PointsRequest(
            idempotency_key=self._key(node, visit),
            customer_id=self._inp.customer_id,
            points=node["points"],
            reason=node.get("reason"),
            journey_id=self._inp.journey_id,
            node_id=node["id"],
        )
        if workflow.patched(LOCAL_STEPS_PATCH):
            result = await workflow.execute_local_activity(
                name, request, activity_id=f"{node['id']}/{visit}", result_type=PointsResult, **LOCAL_POINTS
            )
        else:  # histories recorded before points ran as local activities
            result = await workflow.execute_activity(
                name,
                request,
                activity_id=f"{node['id']}/{visit}",
                start_to_close_timeout=timedelta(seconds=60),
                result_type=PointsResult,
            )
        if result.status == "insufficient" and workflow.patched(DEDUCT_INSUFFICIENT_PATCH):
            # Nothing was taken: the steps that follow a deduction (the voucher it pays for) are not due.
            return node.get("insufficient_next"), "insufficient"
        return node.get("next"), None

    async def _escalate(self, node: dict[str, Any], visit: int) -> tuple[str | None, str | None]:
        """Open a case and wait for the agent's outcome, the case's own SLA breach, or the node's
        ``sla`` (how long this journey waits at most), whichever comes first."""
        case_id = await workflow.execute_activity(
            OPEN_CASE,
            OpenCaseRequest(
                idempotency_key=self._key(node, visit),
                customer_id=self._inp.customer_id,
                reason=node["subject"],
                team=node["team"],
                priority=node.get("priority"),
                journey_id=self._inp.journey_id,
                node_id=node["id"],
                waiting_workflow_id=workflow.info().workflow_id,
            ),
            activity_id=f"{node['id']}/{visit}",
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(non_retryable_error_types=[CASE_REJECTED]),
            result_type=int,
        )
        await self._flush()

        def settled() -> bool:
            update = self._cases.get(case_id)
            return update is not None and (update.outcome is not None or update.breached)

        await self._wait(settled, timedelta(seconds=node["sla_seconds"]))
        update = self._cases.get(case_id)
        if update is not None and update.outcome is not None:
            return node.get("resolved_next"), f"case:{update.outcome}"
        return node.get("breached_next"), "sla_breached"

    async def _webhook(self, node: dict[str, Any], visit: int) -> tuple[str | None, str | None]:
        payload = {
            **(node.get("body") or {}),
            "journey_id": self._inp.journey_id,
            "journey_version": self._inp.version,
            "node_id": node["id"],
            "customer_id": self._inp.customer_id,
            "entry_event": {"id": self._inp.entry_event.id, "name": self._inp.entry_event.name},
        }
        result = await workflow.execute_activity(
            CALL_WEBHOOK,
            WebhookRequest(
                idempotency_key=self._key(node, visit),
                url=node["url"],
                payload=payload,
                customer_id=self._inp.customer_id,
            ),
            activity_id=f"{node['id']}/{visit}",
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=WEBHOOK_RETRY,
            result_type=WebhookResult,
        )
        return node.get("next"), f"http:{result.status_code}"

    # --- waiting, interrupts and rules ---------------------------------------------------------

    def _key(self, node: dict[str, Any], visit: int) -> str:
        return f"{workflow.info().workflow_id}/{self._inp.entry_event.id}/{node['id']}/{visit}"

    def _rule_events(self) -> list[str]:
        names = {m["event"] for m in self._rules.get("exit_when") or []}
        goal = self._rules.get("goal") or {}
        if goal.get("event"):
            names.add(goal["event"])
        if goal.get("segment"):
            names.add(conditions.SEGMENT_ENTERED)  # the refresher records one when a customer enters
        return sorted(names)

    def _check_interrupts(self) -> None:
        """Look at events not yet examined: a goal converts, an exit criterion exits."""
        goal = self._rules.get("goal") or {}
        while self._scanned < len(self._inbox) and self._outcome is None:
            event = self._inbox[self._scanned]
            self._scanned += 1
            props = event.properties or {}
            reached_event = goal.get("event") and self._strictly(
                lambda strict, event=event, props=props: conditions.event_matches(
                    event.name, props, want=goal["event"], where=goal.get("where") or {}, strict=strict
                )
            )
            if reached_event or (
                goal.get("segment") and conditions.entered_segment(event.name, props, goal["segment"])
            ):
                self._outcome = "converted"
            elif any(
                self._strictly(
                    lambda strict, event=event, props=props, m=m: conditions.event_matches(
                        event.name, props, want=m["event"], where=m.get("where") or {}, strict=strict
                    )
                )
                for m in self._rules.get("exit_when") or []
            ):
                self._outcome = "exited"
        if self._outcome is not None:
            raise _Leave

    def _interrupted(self) -> bool:
        try:
            self._check_interrupts()
        except _Leave:
            return True
        return False

    async def _wait(self, condition, within: timedelta) -> bool:
        """Wait for ``condition`` up to ``within``; True if it held. A goal or exit raises _Leave."""
        if within.total_seconds() <= 0:
            self._check_interrupts()
            return bool(condition())
        await self._check_goal_membership()
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(lambda: self._interrupted() or condition(), timeout=within)
        self._awake_since = workflow.now()
        self._awake_inbox = len(self._inbox)
        self._check_interrupts()
        return bool(condition())

    async def _check_goal_membership(self) -> None:
        """A customer already in the goal segment when first reaching a wait converts there.

        Entries after the enrollment started arrive as Segment Entered events (the goal's listener is
        registered at the start); only a membership older than that needs this one look, once a run."""
        segment = (self._rules.get("goal") or {}).get("segment")
        if not segment or self._goal_membership_checked:
            return
        self._goal_membership_checked = True
        if not workflow.patched(SEGMENT_GOAL_MEMBERSHIP):
            return
        if segment in await self._segments([segment], "goal"):
            self._outcome = "converted"
            raise _Leave

    async def _sleep_until(self, moment: datetime) -> None:
        await self._flush()
        await self._wait(lambda: False, moment - workflow.now())

    def _plan(self, kind: str, **fields: Any) -> TimePlan:
        return TimePlan(
            kind=kind,
            now=workflow.now().isoformat(),
            default_timezone=self._rules.get("default_timezone", "UTC"),
            **fields,
        )

    async def _context(
        self, plan: TimePlan | None = None, *, with_customer: bool = True, fresh_status: bool = False
    ) -> JourneyContext:
        return await workflow.execute_local_activity(
            JOURNEY_CONTEXT,
            JourneyContextRequest(
                journey_id=self._inp.journey_id,
                customer_id=self._inp.customer_id,
                plan=plan,
                with_customer=with_customer,
                fresh_status=fresh_status,
            ),
            result_type=JourneyContext,
            **LOCAL,
        )

    async def _segments(self, segment_ids: list[str], node_id: str) -> set[str]:
        found = await workflow.execute_activity(
            EVALUATE_SEGMENT,
            SegmentMembershipRequest(customer_id=self._inp.customer_id, segment_ids=segment_ids),
            start_to_close_timeout=timedelta(seconds=60),
            result_type=SegmentMembership,
        )
        return set(found.member_of)

    def _history_floor(self) -> datetime | None:
        """For an enrollment no event started (by API, the anniversary sweep), the events before it
        started are not its own: they neither reach its goal nor end a wait. An event-entered one
        counts from its entry event's id instead."""
        if self._inp.entry_event.id or not workflow.patched(ENTRY_WATERMARK_PATCH):
            return None
        return workflow.info().start_time

    async def _listen(
        self, names: list[str], *, after_event_id: int = 0, since: datetime | None = None
    ) -> None:
        """Register for events (once per name) and take any that arrived before the registration."""
        # A name whose wait ended since the enrollment last blocked is still registered: keep it.
        self._listening.update(self._unheard.intersection(names))
        self._unheard.difference_update(names)
        new = [n for n in names if n not in self._listening]
        if not new:
            return
        self._listening.update(new)
        missed = await workflow.execute_local_activity(
            REGISTER_LISTENERS,
            RegisterListenersRequest(
                workflow_id=workflow.info().workflow_id,
                customer_id=self._inp.customer_id,
                event_names=new,
                after_event_id=after_event_id,
                since=since.isoformat() if since else None,
            ),
            result_type=list[EventRef],
            **LOCAL,
        )
        for event in missed:
            self.on_event(event)

    def _unlisten(self, name: str) -> None:
        """A wait for ``name`` ended: unless a goal or exit rule listens for it, the next _flush drops
        its listener. Until then (no time passes in the journey's terms) its events still come, and
        count for a wait that follows at once, as they would if caught up by registering again."""
        if name in self._rule_events() or not workflow.patched(WAIT_ENDS_LISTENER_PATCH):
            return
        self._listening.discard(name)
        self._unheard.add(name)

    # --- step records --------------------------------------------------------------------------

    def _enter(self, node_id: str, visit: int) -> StepRecord:
        step = StepRecord(node_id=node_id, visit=visit, entered_at=workflow.now().isoformat())
        self._steps.append(step)
        if len(self._steps) > MAX_KEPT_STEPS:
            del self._steps[0]
        self._dirty[(node_id, visit)] = step
        return step

    def _leave(self, step: StepRecord, outcome: str | None) -> None:
        step.left_at = workflow.now().isoformat()
        step.outcome = outcome
        self._dirty[(step.node_id, step.visit)] = step

    def _close_open_steps(self, outcome: str) -> None:
        for step in self._steps:
            if step.left_at is None:
                self._leave(step, outcome)

    def _take_dirty(self) -> list[StepRecord]:
        steps = list(self._dirty.values())
        self._dirty.clear()
        return steps

    async def _flush(self) -> None:
        """Write step records before the enrollment blocks, so stats show who waits where."""
        steps = self._take_dirty()
        unheard, self._unheard = sorted(self._unheard), set()
        if steps or unheard:
            await workflow.execute_local_activity(
                RECORD_STEPS,
                RecordStepsRequest(
                    workflow_id=workflow.info().workflow_id,
                    journey_id=self._inp.journey_id,
                    version=self._inp.version,
                    customer_id=self._inp.customer_id,
                    steps=steps,
                    stop_listening=unheard,
                ),
                **LOCAL,
            )

    def _history_is_large(self) -> bool:
        return workflow.info().is_continue_as_new_suggested()

    async def _continue_as_new(self, current: str, visits: dict[str, int]) -> None:
        await self._flush()
        first = self._scanned
        if workflow.patched(CARRY_SINCE_AWAKE_PATCH):
            # The next run looks at these for a goal again (finding none, as this one did) and its
            # first wait counts them as arrived since it woke (_awake_inbox starts at 0 there).
            first = min(self._scanned, self._awake_inbox)
        state = JourneyState(
            current=current,
            visits=visits,
            steps=self._steps[-MAX_KEPT_STEPS:],
            inbox=self._inbox[first:],
            seen_event_ids=sorted(self._seen_event_ids)[-1000:],
            listening=sorted(self._listening),
        )
        workflow.continue_as_new(
            JourneyInput(
                journey_id=self._inp.journey_id,
                version=self._inp.version,
                customer_id=self._inp.customer_id,
                definition=self._inp.definition,
                entry_event=self._inp.entry_event,
                state=state,
            )
        )
