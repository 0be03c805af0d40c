"""Journeys: drafts, immutable published versions, enrollment records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from domain.cases import service as cases
from domain.customers import service as customers
from domain.db import utcnow
from domain.email import service as email
from domain.errors import Conflict, InvalidInput, NotFound
from domain.journeys import definition as graph
from domain.journeys import repository, timing
from domain.journeys.models import Enrollment, Journey, JourneyVersion
from domain.journeys.schemas import (
    EnrollmentOut,
    EnrollmentPath,
    JourneyIn,
    JourneyOut,
    JourneyStats,
    JourneyUpdate,
    JourneyVersionOut,
    NodeStats,
    SimulatedEvent,
    SimulationResult,
    StepOut,
)
from domain.journeys.simulate import Simulation
from domain.loyalty import service as loyalty
from domain.segments import service as segments
from domain.subscriptions import service as subscriptions

if TYPE_CHECKING:
    from domain.email.delivery import MessageFactory

# A send that wakes at most this late after its rate slot (or one period, when longer) still uses it.
SLOT_GRACE = timedelta(minutes=1)
# A frequency-capped send's reservation counts (as a send at the moment of its plan) until its ledger
# row exists, or this long at most: a send goes within moments of its plan, so one whose row has not
# come by then never will (its enrollment was terminated in between) and must not hold the cap's
# slot for a whole window.
CAP_RESERVATION_EXPIRY = timedelta(hours=1)


def workflow_id_for(journey_id: str, customer_id: int, entry_key: str | None = None) -> str:
    base = f"journey/{journey_id}/customer/{customer_id}"
    return f"{base}/{entry_key}" if entry_key else base


def _out(journey: Journey) -> JourneyOut:
    return JourneyOut(
        id=journey.id,
        name=journey.name,
        status=journey.status,
        published_version=journey.published_version,
        definition=journey.draft,
        created_at=journey.created_at,
        updated_at=journey.updated_at,
    )


async def _validated(session: AsyncSession, raw: dict) -> graph.JourneyDefinition:
    definition = graph.parse(raw)
    known = await email.current_versions(session, definition.template_ids())
    missing = [
        {"node": n.id, "problem": f"template {n.template_id!r} does not exist"}
        for n in definition.nodes
        if getattr(n, "template_id", None) is not None and n.template_id not in known
    ]
    for index, node in enumerate(definition.nodes):
        if node.type == "escalate" and not await cases.team_exists(session, node.team):
            missing.append({"node": node.id, "problem": f"team {node.team!r} does not exist"})
        group = getattr(node, "subscription_group", None)
        if group is not None and await subscriptions.get_group(session, group) is None:
            missing.append(
                {
                    "node": node.id,
                    "path": f"nodes.{index}.subscription_group",
                    "problem": f"subscription group {group!r} does not exist",
                }
            )
    for ref in graph.segment_references(definition.model_dump(mode="json")):
        if not await segments.exists(session, ref.segment, hold=True):  # a publish vs a delete
            where = {"node": ref.node, "path": ref.path} if ref.node is not None else {"path": ref.path}
            missing.append({**where, "problem": f"segment {ref.segment!r} does not exist"})
    if missing:
        raise InvalidInput(missing, code="invalid_definition")
    return definition


async def create(session: AsyncSession, spec: JourneyIn) -> JourneyOut:
    definition = await _validated(session, spec.definition)
    journey_id = spec.id or uuid.uuid4().hex[:12]
    if await repository.get(session, journey_id) is not None:
        raise Conflict({"field": "id", "problem": f"a journey with id {journey_id!r} exists"})
    journey = Journey(id=journey_id, name=spec.name, status="draft", draft=definition.model_dump(mode="json"))
    await repository.add(session, journey)
    return _out(journey)


async def update(session: AsyncSession, journey_id: str, spec: JourneyUpdate) -> JourneyOut:
    """Edits the draft. Running customers are untouched; publish to make the edit live."""
    journey = await _journey(session, journey_id)
    if journey.status == "archived":
        raise Conflict("an archived journey cannot be edited")
    definition = await _validated(session, spec.definition)
    journey.draft = definition.model_dump(mode="json")
    if spec.name:
        journey.name = spec.name
    return _out(journey)


async def publish(session: AsyncSession, journey_id: str) -> JourneyVersionOut:
    """Freeze the draft as the next version, pinning each template's current version."""
    journey = await _journey(session, journey_id)
    if journey.status == "archived":
        raise Conflict("an archived journey cannot be published")
    definition = await _validated(session, journey.draft)
    pinned = await email.current_versions(session, definition.template_ids())
    snapshot = graph.snapshot(definition)
    for node in snapshot["nodes"]:
        if node["type"] == "send_email":
            node["template_version"] = pinned[node["template_id"]]
    number = await repository.latest_version_number(session, journey_id) + 1
    version = JourneyVersion(
        journey_id=journey_id,
        version=number,
        definition=snapshot,
        trigger_event=definition.entry.event if definition.entry.trigger == "event" else "",
        published_at=utcnow(),
    )
    await repository.add(session, version)
    journey.published_version = number
    if journey.status != "paused":  # publishing an edit does not resume a paused journey
        journey.status = "published"
    return _version_out(version)


async def get(session: AsyncSession, journey_id: str) -> JourneyOut:
    return _out(await _journey(session, journey_id))


async def list_all(session: AsyncSession) -> list[JourneyOut]:
    return [_out(j) for j in await repository.list_all(session)]


async def get_version(session: AsyncSession, journey_id: str, version: int) -> JourneyVersionOut:
    found = await repository.get_version(session, journey_id, version)
    if found is None:
        raise NotFound(f"journey {journey_id!r} has no version {version}")
    return _version_out(found)


async def live_versions_for(session: AsyncSession, event_names: set[str]) -> list[JourneyVersionOut]:
    return [_version_out(v) for v in await repository.live_versions(session, event_names)]


async def live_segment_versions(session: AsyncSession, segment_ids: set[str]) -> list[JourneyVersionOut]:
    """The published version of every live journey entered by one of these segments."""
    return [
        _version_out(v)
        for v in await repository.live_versions_without_event(session)
        if _entry_of(v.definition).get("trigger") == "segment"
        and _entry_of(v.definition).get("segment_id") in segment_ids
    ]


async def record_enrollments(session: AsyncSession, rows: list[dict]) -> list[str]:
    """Record many started enrollments in one statement; each row names workflow_id, journey_id,
    version, customer_id and event_id (None when no event enrolled the customer).

    A customer merged away since the start is recorded as the profile it became. One erased since is
    not recorded: the workflow ids returned are theirs, for the caller to delete from Temporal (the
    erasure, which deleted the enrollments it found, could not see these)."""
    if not rows:
        return []
    now = utcnow()
    current = await customers.hold_current(session, {r["customer_id"] for r in rows})
    await repository.record_enrollments(
        session,
        [
            {
                "workflow_id": r["workflow_id"],
                "journey_id": r["journey_id"],
                "version": r["version"],
                "customer_id": current[r["customer_id"]],
                "entry_event_id": r["event_id"],
                "status": "active",
                "entered_at": now,
            }
            for r in rows
            if r["customer_id"] in current
        ],
    )
    return [r["workflow_id"] for r in rows if r["customer_id"] not in current]


async def record_closed_enrollment(
    session: AsyncSession,
    *,
    workflow_id: str,
    journey_id: str,
    version: int,
    customer_id: int,
    event_id: int | None,
    entered_at: datetime | None,
    status: str,
    at: datetime,
    remove_listeners: bool = True,
) -> None:
    """Close the enrollment, creating its row if the router has not recorded it yet."""
    await repository.upsert_closed_enrollment(
        session,
        {
            "workflow_id": workflow_id,
            "journey_id": journey_id,
            "version": version,
            "customer_id": customer_id,
            "entry_event_id": event_id,
            "status": status,
            "entered_at": entered_at or utcnow(),
            "completed_at": at,
        },
    )
    if remove_listeners:
        await repository.remove_listeners(session, workflow_id)


async def finish_enrollment(session: AsyncSession, workflow_id: str, status: str, at: datetime) -> None:
    await repository.finish_enrollment(session, workflow_id, status, at)


async def enrollments(
    session: AsyncSession, journey_id: str, limit: int = 100, *, before_id: int | None = None
) -> list[EnrollmentOut]:
    """Newest first, one page; the last one's ``id`` as ``before_id`` gives the next page."""
    await _journey(session, journey_id)
    return [
        EnrollmentOut.model_validate(e, from_attributes=True)
        for e in await repository.enrollments_of(session, journey_id, limit, before_id)
    ]


async def _journey(session: AsyncSession, journey_id: str) -> Journey:
    journey = await repository.get(session, journey_id)
    if journey is None:
        raise NotFound(f"no journey {journey_id!r}")
    return journey


def _version_out(version: JourneyVersion) -> JourneyVersionOut:
    return JourneyVersionOut(
        journey_id=version.journey_id,
        version=version.version,
        definition=version.definition,
        published_at=version.published_at,
    )


# --- lifecycle ---------------------------------------------------------------------------------------

_TRANSITIONS = {
    "pause": ({"published"}, "paused"),
    "resume": ({"paused"}, "published"),
    "archive": ({"draft", "published", "paused"}, "archived"),
}


async def change_status(session: AsyncSession, journey_id: str, action: str) -> tuple[JourneyOut, list[str]]:
    """Pause, resume or archive. Returns the journey and the enrollments to tell (they hold or leave
    at their next send; the signal wakes a paused one at once, a periodic re-check covers a lost one)."""
    journey = await _journey(session, journey_id)
    allowed, target = _TRANSITIONS[action]
    if journey.status not in allowed:
        raise Conflict(f"the journey is {journey.status}: it cannot {action}")
    journey.status = target
    journey.updated_at = utcnow()
    return _out(journey), await repository.active_workflow_ids(session, journey_id)


# --- what running enrollments ask of the database ----------------------------------------------------


async def status_of(session: AsyncSession, journey_id: str) -> str:
    journey = await repository.get(session, journey_id)
    return journey.status if journey else "archived"


async def enrollment_context(
    session: AsyncSession, customer_id: int, plan=None, *, journey_id: str | None = None
) -> dict:
    """What a running enrollment needs to know of its customer, and the answer to its time plan.

    Given ``journey_id`` (the session must then be a write transaction), a send plan that the rules
    let go now also takes what the send will use: its slot on the journey's clock (a send rate), once
    quiet hours and the frequency cap let it go, and its reservation under the frequency cap, counted
    with the customer locked so that two plans at once cannot both take the cap's last send."""
    capped = bool(plan is not None and plan.cap_max and plan.cap_window_seconds)
    if capped and plan.kind == "send" and plan.template_id and plan.template_version:
        # The cap counts marketing email: a receipt or a password reset is neither held nor reserved.
        version = await email.get_version(session, plan.template_id, plan.template_version)
        capped = version.category != subscriptions.TRANSACTIONAL
    reserving = capped and plan.kind == "send" and journey_id is not None and plan.send_key is not None
    for _ in range(3):
        customer = await customers.get_current(session, customer_id)  # the visitor may have logged in
        # Locked before the count; merged away or erased before the lock: look again.
        if not reserving or customer is None or await repository.lock_cap_count(session, customer.id):
            break
    else:
        raise RuntimeError(f"customer {customer_id} kept changing while its send was planned")
    customer_id = customer.id if customer else customer_id
    traits = dict(customer.traits or {}) if customer else {}
    out = {"timezone": customer.timezone if customer else None, "traits": traits}
    if plan is not None:
        now = datetime.fromisoformat(plan.now)
        sends = []
        if capped:
            since = now - timedelta(seconds=plan.cap_window_seconds)
            sends = await repository.recent_marketing_sends(
                session,
                customer_id,
                since,
                reserved_since=max(since, now - CAP_RESERVATION_EXPIRY),
                except_key=plan.send_key,
            )
        moment, held_by = timing.plan(
            plan.kind,
            now,
            timing.zone(out["timezone"], plan.default_timezone),
            traits=traits,
            recent_sends=sends,
            quiet=(plan.quiet_start, plan.quiet_end) if plan.quiet_start and plan.quiet_end else None,
            cap=(plan.cap_max, plan.cap_window_seconds) if capped else None,
            at=plan.at,
            weekdays=plan.weekdays,
            trait=plan.trait,
            offset_days=plan.offset_days,
        )
        if plan.kind == "send" and held_by is None and plan.rate_max and journey_id and plan.send_key:
            slot = await take_send_slot(
                session, journey_id, plan.send_key, now, plan.rate_max, plan.rate_per_seconds
            )
            if slot > now:
                moment, held_by = slot, "send_rate"
        if reserving and held_by is None and customer is not None:
            expired = now - CAP_RESERVATION_EXPIRY  # they count nowhere any more
            await repository.forget_cap_reservations_before(session, customer_id, expired)
            await repository.reserve_cap(session, plan.send_key, customer_id, now)
        out["moment"] = moment.isoformat() if moment else None
        out["held_by"] = held_by
    return out


async def take_send_slot(
    session: AsyncSession, journey_id: str, send_key: str, now: datetime, limit: int, per_seconds: int
) -> datetime:
    """The moment this send may go under the journey's rate of ``limit`` per ``per_seconds``.

    Slots are handed out in order, each at the first moment at which no window of ``per_seconds``
    holds more than ``limit`` of them. A send key keeps its slot, so a retried or repeated plan takes
    no second one; a slot that passed long ago unused (the send was held by quiet hours, the cap or
    a pause meanwhile) is given up for a new one, so held sends do not all go at once."""
    await repository.lock_slot_clock(session, journey_id)
    period = timedelta(seconds=per_seconds)
    horizon = now - max(period, SLOT_GRACE)
    kept = await repository.send_slot(session, send_key)
    if kept is not None and kept >= horizon:
        return kept
    # Slots before the horizon neither bound a new slot nor can be kept: the clock stays small.
    await repository.forget_slots_before(session, journey_id, horizon)
    latest = await repository.latest_slots(session, journey_id, limit)
    slot = max([now, *latest[:1]])
    if len(latest) >= limit:
        slot = max(slot, latest[limit - 1] + period)
    await repository.set_send_slot(session, journey_id, send_key, slot)
    return slot


async def register_listeners(
    session: AsyncSession,
    *,
    workflow_id: str,
    customer_id: int,
    names: list[str],
    after_event_id: int,
    since: datetime | None,
) -> list:
    """Record what the enrollment waits for; return matching events it may have missed meanwhile."""
    await repository.add_listeners(session, workflow_id, customer_id, names)
    return await repository.events_since(session, customer_id, names, after_event_id, since)


async def listeners_for(session: AsyncSession, pairs: set[tuple[int, str]]) -> list[tuple[int, str, str]]:
    return await repository.listeners_for(session, pairs)


async def stop_listening(session: AsyncSession, workflow_id: str, names: list[str]) -> None:
    """The enrollment no longer waits for these events (its wait for them ended): the router stops
    signalling them to it."""
    await repository.remove_listeners(session, workflow_id, names)


async def record_steps(
    session: AsyncSession, *, workflow_id: str, journey_id: str, version: int, customer_id: int, steps
) -> None:
    await repository.upsert_steps(
        session,
        [
            {
                "workflow_id": workflow_id,
                "journey_id": journey_id,
                "version": version,
                "customer_id": customer_id,
                "node_id": s.node_id,
                "visit": s.visit,
                "entered_at": datetime.fromisoformat(s.entered_at),
                "left_at": datetime.fromisoformat(s.left_at) if s.left_at else None,
                "outcome": s.outcome,
            }
            for s in steps
        ],
    )


async def close_enrollment(session: AsyncSession, workflow_id: str, status: str, at: datetime) -> None:
    await repository.finish_enrollment(session, workflow_id, status, at)
    await repository.remove_listeners(session, workflow_id)


async def existing_enrollments(session: AsyncSession, workflow_ids: list[str]) -> set[str]:
    return await repository.existing_workflow_ids(session, workflow_ids)


async def customers_inside(session: AsyncSession, lanes: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which (journey, customer) pairs have an active enrollment (the ``after_exit`` policy)."""
    return await repository.active_lanes(session, lanes)


async def enrolled_as_any_profile(
    session: AsyncSession,
    wanted: dict[str, tuple[str, int, str | None]],
    entered_since: datetime | None = None,
) -> set[str]:
    """Of these workflow ids (each for a journey, a customer and an entry key), those the person has
    already used: the id itself is recorded, or the same journey and key were entered by a profile
    merged into the customer since (a visitor who logged in). One person enters a ``once`` journey
    once, and a ``once_per_key`` journey once per key, whichever of their profiles it was.
    ``entered_since``: count only enrollments entered at or after it."""
    if not wanted:
        return set()
    merged = await customers.merged_into(session, {c for _, c, _ in wanted.values()})
    aliases = {
        workflow_id: [
            workflow_id,
            *(workflow_id_for(journey_id, m, key) for m in merged.get(customer_id, [])),
        ]
        for workflow_id, (journey_id, customer_id, key) in wanted.items()
    }
    every = sorted({a for ids in aliases.values() for a in ids})
    found = await repository.existing_workflow_ids(session, every, entered_since)
    return {workflow_id for workflow_id, ids in aliases.items() if found.intersection(ids)}


@dataclass
class Lane:
    """One customer's enrollments in one journey, as the ``after_exit`` policy sees them."""

    entered: int = 0  # enrollments recorded, finished or not
    inside: bool = False
    left_at: datetime | None = None  # when the latest one ended

    def admits(self, received_at: datetime) -> bool:
        """A trigger re-enters once the customer has left, and only one received after that: a
        trigger that came while they were inside (routed late, or routed again after a crash) does
        not re-enter them once they are out."""
        return not self.inside and (self.left_at is None or received_at > self.left_at)

    def next_workflow_id(self, journey_id: str, customer_id: int) -> str:
        """The id of the customer's next enrollment, numbered: two triggers routed at once by two
        routers take the same id, so Temporal starts one enrollment, not two."""
        return workflow_id_for(journey_id, customer_id, f"n{self.entered + 1}")


async def lanes(session: AsyncSession, pairs: set[tuple[str, int]]) -> dict[tuple[str, int], Lane]:
    """The ``after_exit`` view of each (journey, customer) pair; pairs never entered get an empty Lane."""
    found = await repository.lane_summaries(session, pairs)
    return {
        pair: Lane(entered=n, inside=active > 0, left_at=left)
        for pair, (n, active, left) in ((p, found.get(p, (0, 0, None))) for p in pairs)
    }


async def may_enroll(
    session: AsyncSession, journey_id: str, customer_id: int, key: str | None, reentry: str
) -> bool:
    """The re-entry policy for one trigger (the router applies the same rules to whole batches)."""
    if reentry in ("once", "once_per_key"):
        workflow_id = workflow_id_for(journey_id, customer_id, key)
        return not await enrolled_as_any_profile(session, {workflow_id: (journey_id, customer_id, key)})
    if reentry == "after_exit":
        return not await repository.has_active_enrollment(session, journey_id, customer_id)
    return True


def _entry_key(enrollment: Enrollment) -> str | None:
    """The key part of an enrollment's workflow id (``workflow_id_for``), None for a plain id. The id
    names the profile it started for, which may be one merged into the row's customer since."""
    rest = enrollment.workflow_id.removeprefix(f"journey/{enrollment.journey_id}/customer/")
    return rest.split("/", 1)[1] if "/" in rest else None


def _cannot_coexist(reentry: str, first: Enrollment, second: Enrollment) -> bool:
    """Whether one person may not be inside both enrollments under the journey's re-entry policy."""
    if reentry in ("once", "after_exit"):
        return True
    if reentry == "once_per_key":
        return _entry_key(first) == _entry_key(second)
    return False  # always: every trigger is an enrollment of its own


async def supersede_duplicates(session: AsyncSession, source_id: int, target_id: int, at: datetime) -> None:
    """Before profile ``source`` is merged into ``target`` (a visitor who logged in): where each is
    inside the same journey and its re-entry policy lets one person in only once (``once``), once per
    key (``once_per_key``, the same key) or once at a time (``after_exit``), end the later-entered of
    the two (the one the policy would have refused, had they been known as one person then): it is
    recorded as ``exited`` with ``superseded_by`` naming the kept one, and its workflow leaves at its
    next step with an effect (``ended_by_merge``: the send answers as for an archived journey, the
    other steps' activities refuse). The policy is the later enrollment's version's. ``always``
    journeys keep both."""
    rows = await repository.active_enrollments_of(session, [source_id, target_id])
    if not rows:
        return
    definitions = await repository.definitions_of(session, {(r.journey_id, r.version) for r in rows})
    policies = {v: reentry_of(d) for v, d in definitions.items()}
    ended: set[str] = set()
    theirs = [r for r in rows if r.customer_id == source_id]
    ours = [r for r in rows if r.customer_id == target_id]
    for a in theirs:
        for b in ours:
            if a.journey_id != b.journey_id or a.workflow_id in ended or b.workflow_id in ended:
                continue
            kept, later = sorted((a, b), key=lambda e: (e.entered_at, e.id))
            if _cannot_coexist(policies.get((later.journey_id, later.version), "once"), a, b):
                await repository.supersede(session, later.workflow_id, kept.workflow_id, at)
                ended.add(later.workflow_id)


def _overlapped(first: Enrollment, second: Enrollment) -> bool:
    """Whether the two were inside at the same moment (one still inside overlaps everything later)."""
    first_out, second_out = first.completed_at, second.completed_at
    return (second_out is None or first.entered_at < second_out) and (
        first_out is None or second.entered_at < first_out
    )


async def once_per_person_pairs(
    session: AsyncSession, source_id: int, target_id: int
) -> list[tuple[str, str]]:
    """Before profile ``source`` is merged into ``target``: the pairs (source's workflow id, target's)
    of enrollments in one journey, finished or not, that its re-entry policy would not have given one
    person both of (``once``; ``once_per_key`` with the same key; ``after_exit`` when they overlapped).
    What a step of the one gave, the same step of the other must not give again to the merged person
    (see loyalty.merging). The policy is the later-entered enrollment's version's."""
    rows = await repository.enrollments_of_customers(session, [source_id, target_id])
    theirs = [r for r in rows if r.customer_id == source_id]
    ours = [r for r in rows if r.customer_id == target_id]
    if not theirs or not ours:
        return []
    definitions = await repository.definitions_of(session, {(r.journey_id, r.version) for r in rows})
    pairs = []
    for a in theirs:
        for b in ours:
            if a.journey_id != b.journey_id:
                continue
            later = max((a, b), key=lambda e: (e.entered_at, e.id))
            definition = definitions.get((later.journey_id, later.version))
            reentry = reentry_of(definition) if definition is not None else "once"
            if reentry == "after_exit" and not _overlapped(a, b):
                continue  # one after the other: the policy lets a person in again
            if _cannot_coexist(reentry, a, b):
                pairs.append((a.workflow_id, b.workflow_id))
    return pairs


async def superseded_by(session: AsyncSession, workflow_id: str) -> str | None:
    """The enrollment a profile merge kept instead of this one, if it ended this one."""
    return await repository.superseded_by(session, workflow_id)


async def ended_by_merge(session: AsyncSession, workflow_id: str, customer_id: int) -> bool:
    """Whether a profile merge ended this enrollment (``supersede_duplicates``), so its step must do
    nothing. Read with the enrollment's profile key-share locked until the caller's transaction ends:
    a merge in flight is waited for, and one that starts waits for the step's writes."""
    await customers.hold_current(session, [customer_id])
    return await repository.superseded_by(session, workflow_id) is not None


async def update_traits(session: AsyncSession, customer_id: int, traits: dict) -> None:
    await customers.update_traits(session, customer_id, traits)


# --- visibility --------------------------------------------------------------------------------------


async def stats(session: AsyncSession, journey_id: str) -> JourneyStats:
    journey = await _journey(session, journey_id)
    rows = {r[0]: r for r in await repository.node_stats(session, journey_id)}
    order = [n["id"] for n in (journey.draft or {}).get("nodes", [])]
    order += sorted(set(rows) - set(order))
    nodes = [
        NodeStats(
            node_id=node_id,
            entered=rows[node_id][1] if node_id in rows else 0,
            completed=rows[node_id][2] if node_id in rows else 0,
            waiting_now=int(rows[node_id][3] or 0) if node_id in rows else 0,
            converted=rows[node_id][4] if node_id in rows else 0,
        )
        for node_id in order
        if node_id in rows or node_id in order
    ]
    return JourneyStats(
        journey_id=journey_id,
        enrollments=await repository.enrollment_counts(session, journey_id),
        nodes=nodes,
    )


async def enrollment_paths(session: AsyncSession, journey_id: str, customer_id: int) -> list[EnrollmentPath]:
    await _journey(session, journey_id)
    found = await repository.enrollments_of_customer(session, journey_id, customer_id)
    if not found:
        raise NotFound(f"customer {customer_id} has not entered journey {journey_id!r}")
    steps = await repository.steps_of(session, [e.workflow_id for e in found])
    out = []
    for enrollment in found:
        out.append(
            EnrollmentPath(
                **EnrollmentOut.model_validate(enrollment, from_attributes=True).model_dump(),
                path=[
                    StepOut.model_validate(s, from_attributes=True)
                    for s in steps
                    if s.workflow_id == enrollment.workflow_id
                ],
            )
        )
    return out


async def date_trait_versions(session: AsyncSession) -> list[JourneyVersionOut]:
    return [
        _version_out(v)
        for v in await repository.live_versions_without_event(session)
        if _entry_of(v.definition).get("trigger") == "date_trait"
    ]


async def workflow_ids_of_customer(session: AsyncSession, customer_id: int) -> list[str]:
    """Every enrollment's workflow, running or finished (their visitor profiles' too, once merged)."""
    return await repository.workflow_ids_of_customer(session, customer_id)


async def customer_page(
    session: AsyncSession, after_id: int, limit: int
) -> list[tuple[int, dict, str | None]]:
    return await repository.customers_with_trait(session, after_id, limit)


def _entry_of(definition: dict) -> dict:
    return next(n for n in definition["nodes"] if n["type"] == "entry")


def reentry_of(definition: dict) -> str:
    """The journey's re-entry policy: its entry node's ``reentry`` ("once" when unset)."""
    return _entry_of(definition).get("reentry", "once")


# --- dry run -----------------------------------------------------------------------------------------


async def simulate(
    session: AsyncSession, journey_id: str, spec, messages: MessageFactory
) -> SimulationResult:
    """Walk the draft (or a published version) for one customer; renders each email as its send
    would (``messages``, untracked), sends nothing."""
    journey = await _journey(session, journey_id)
    if spec.version is not None:
        definition = (await get_version(session, journey_id, spec.version)).definition
    else:
        definition = (await _validated(session, journey.draft)).model_dump(mode="json")
    points = spec.points or 0
    if spec.customer_id is not None:
        customer = await customers.get_profile(session, spec.customer_id)
        if customer is None:
            raise NotFound(f"no customer {spec.customer_id}")
        if spec.points is None:  # a deduction takes the path the customer's balance would
            points = (await loyalty.status(session, spec.customer_id)).balance
    elif spec.customer is not None:
        customer = {"id": 0, **spec.customer.model_dump()}
    else:
        raise InvalidInput({"field": "customer", "problem": "give customer_id or describe a customer"})
    entry_node = next(n for n in definition["nodes"] if n["type"] == "entry")
    entry = spec.entry or SimulatedEvent(name=entry_node.get("event") or "$manual")
    templates, groups = {}, {}  # groups: each send's subscription group and its name, by node id
    for node in definition["nodes"]:
        if node["type"] == "send_email":
            version = (
                node.get("template_version")
                or (await email.current_versions(session, {node["template_id"]}))[node["template_id"]]
            )
            template = await email.get_version(session, node["template_id"], version)
            templates[node["template_id"]] = template
            group_id = node.get("subscription_group") or template.subscription_group
            groups[node["id"]] = group_id, await subscriptions.group_name(session, group_id)

    def render(node, template, profile, event):
        group_id, group_name = groups[node["id"]]
        return messages.make(
            template,
            profile,
            idempotency_key=f"simulate/{journey_id}/{node['id']}",
            event=event,
            journey={"id": journey_id, "node_id": node["id"]},
            group_id=group_id,
            group_name=group_name,
            to=None if profile.get("email") else email.PREVIEW_ADDRESS,
            track=False,
        ).rendered

    return Simulation(
        definition,
        journey_id=journey_id,
        customer=customer,
        entry=entry,
        events=spec.events,
        segments=set(spec.segments),
        start=spec.start or utcnow(),
        case_resolved_after=spec.case_resolved_after,
        points=points,
        templates=templates,
        render=render,
    ).run()


async def manual_enrollment_target(
    session: AsyncSession, journey_id: str, spec
) -> tuple[JourneyVersionOut, list[int], int]:
    """The live version to enroll into, the known customer ids and how many given ids are unknown."""
    journey = await _journey(session, journey_id)
    if journey.status != "published":
        raise Conflict(f"the journey is {journey.status}: it takes no new customers")
    version = await get_version(session, journey_id, journey.published_version)
    entry = _entry_of(version.definition)
    if entry.get("trigger") not in ("manual", "segment"):
        raise Conflict(f"this journey is entered by its {entry.get('trigger')} trigger, not by API")
    if entry.get("reentry") == "once_per_key" and not spec.key:
        raise InvalidInput({"field": "key", "problem": "this journey enrolls once per key: give a key"})
    if not spec.customer_ids and not spec.user_ids:
        raise InvalidInput({"field": "customer_ids", "problem": "give customer_ids or user_ids"})
    found = await repository.known_customers(session, spec.customer_ids, spec.user_ids)
    asked = len(set(spec.customer_ids)) + len(set(spec.user_ids))
    return version, found, asked - len(found)
