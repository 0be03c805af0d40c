"""Case rules: who sees and changes what, the SLA clock's deadlines, escalation and CSAT."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from domain.auth import service as auth
from domain.auth.schemas import KeyCreate, Principal, Role
from domain.cases import business_hours, queue_cursor
from domain.cases import repository as repo
from domain.cases.business_hours import BusinessHours
from domain.cases.models import Agent, Case, CaseNote, SlaPolicy, Team, TeamMember
from domain.cases.schemas import (
    ACTIVE,
    DEFAULT_SLA_MINUTES,
    STORED,
    TIER_PRIORITY,
    AgentCreated,
    AgentIn,
    AgentOut,
    AgentUpdate,
    BusinessHoursIn,
    CaseDetail,
    CaseIn,
    CaseOut,
    NextCase,
    NoteOut,
    Outcome,
    Priority,
    SlaPolicyIn,
    SlaPolicyOut,
    Status,
    TeamIn,
    TeamOut,
)
from domain.customers import service as customers
from domain.db import stored_id, utcnow
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound

EVENT_SOURCE = "journeys-cases"
CASE_OPENED = "Case Opened"
CASE_RESOLVED = "Case Resolved"
CASE_SLA_BREACHED = "Case SLA Breached"
# The messageId of a case event is case/{id}/{slug}: once per case, and how agents' views tell them.
EVENT_SLUGS = {CASE_OPENED: "opened", CASE_RESOLVED: "resolved", CASE_SLA_BREACHED: "sla-breached"}
RECENT = 10  # events and messages kept in a case's context snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who works cases: an agent limited to their teams, or an admin (every team, claims nothing)."""

    agent_id: int | None
    team_ids: list[str] | None  # None = every team

    def sees(self, case: Case) -> bool:
        return self.team_ids is None or case.team_id in self.team_ids


async def actor_for(session: AsyncSession, principal: Principal) -> Actor:
    agent = await repo.agent_by_key(session, principal.key_id)
    if agent is not None:
        return Actor(agent.id, await repo.teams_of(session, agent.id))
    if principal.role is Role.admin:
        return Actor(None, None)
    raise Forbidden("this key is not linked to an agent; an admin creates agents with POST /api/agents")


def _agent_of(actor: Actor) -> int:
    if actor.agent_id is None:
        raise Forbidden("only an agent works cases; create one with POST /api/agents")
    return actor.agent_id


# --- teams, agents, policies -----------------------------------------------------------------------


async def create_team(session: AsyncSession, spec: TeamIn) -> TeamOut:
    if await repo.get_team(session, spec.id) is not None:
        raise Conflict({"field": "id", "problem": f"team '{spec.id}' exists"})
    if spec.supervisor_team is not None and await repo.get_team(session, spec.supervisor_team) is None:
        raise InvalidInput({"field": "supervisor_team", "problem": f"no team '{spec.supervisor_team}'"})
    team = await repo.add(
        session,
        Team(
            id=spec.id, name=spec.name, supervisor_team_id=spec.supervisor_team, auto_assign=spec.auto_assign
        ),
    )
    return TeamOut(
        id=team.id,
        name=team.name,
        supervisor_team=team.supervisor_team_id,
        auto_assign=team.auto_assign,
        agent_ids=[],
    )


async def team_exists(session: AsyncSession, team_id: str) -> bool:
    return await repo.get_team(session, team_id) is not None


async def list_teams(session: AsyncSession) -> list[TeamOut]:
    members = await repo.members_by_team(session)
    return [
        TeamOut(
            id=t.id,
            name=t.name,
            supervisor_team=t.supervisor_team_id,
            auto_assign=t.auto_assign,
            agent_ids=members.get(t.id, []),
        )
        for t in await repo.list_teams(session)
    ]


async def create_agent(session: AsyncSession, spec: AgentIn) -> AgentCreated:
    teams = sorted(set(spec.teams))
    for team_id in teams:
        if await repo.get_team(session, team_id) is None:
            raise InvalidInput({"field": "teams", "problem": f"no team '{team_id}'"})
    key = await auth.create_key(session, KeyCreate(name=f"agent {spec.name}", role=Role.agent))
    agent = await repo.add(
        session,
        Agent(
            name=spec.name, api_key_id=key.id, available=spec.available, max_open_cases=spec.max_open_cases
        ),
    )
    for team_id in teams:
        await repo.add(session, TeamMember(team_id=team_id, agent_id=agent.id))
    return AgentCreated(**(await _agent_out(session, agent)).model_dump(), api_key=key.secret)


async def _agent_out(session: AsyncSession, agent: Agent) -> AgentOut:
    counts = await repo.open_counts(session, [agent.id])
    return AgentOut(
        id=agent.id,
        name=agent.name,
        teams=await repo.teams_of(session, agent.id),
        available=agent.available,
        max_open_cases=agent.max_open_cases,
        open_cases=counts.get(agent.id, 0),
    )


async def list_agents(session: AsyncSession) -> list[AgentOut]:
    return [await _agent_out(session, a) for a in await repo.list_agents(session)]


async def me(session: AsyncSession, actor: Actor) -> AgentOut:
    return await _agent_out(session, await repo.get_agent(session, _agent_of(actor)))


async def update_me(session: AsyncSession, actor: Actor, spec: AgentUpdate) -> AgentOut:
    agent = await repo.get_agent(session, _agent_of(actor))
    if spec.available is not None:
        agent.available = spec.available
    if spec.max_open_cases is not None:
        agent.max_open_cases = spec.max_open_cases
    await session.flush()
    return await _agent_out(session, agent)


@dataclass(frozen=True)
class SlaTargets:
    first_response_minutes: int
    resolution_minutes: int
    business_hours: BusinessHours | None = None

    def deadlines(self, opened: datetime) -> tuple[datetime, datetime]:
        first = self._due(opened, self.first_response_minutes)
        return first, max(first, self._due(opened, self.resolution_minutes))

    def _due(self, opened: datetime, minutes: int) -> datetime:
        try:
            return business_hours.add_minutes(opened, minutes, self.business_hours)
        except business_hours.BeyondHorizon as err:
            # Only a policy saved before such hours were refused: the case still opens (by hand or
            # for a journey), due at the horizon, the furthest a business-hours deadline falls.
            log.warning("SLA policy business hours: %s; due in %d weeks", err, business_hours.HORIZON_WEEKS)
            return opened + timedelta(weeks=business_hours.HORIZON_WEEKS)


def _hours(stored: dict[str, Any] | None) -> BusinessHours | None:
    if not stored:
        return None
    return _business_hours(BusinessHoursIn.model_validate(stored, context={STORED: True}))


def _business_hours(spec: BusinessHoursIn) -> BusinessHours:
    return BusinessHours(spec.timezone, frozenset(spec.days), spec.start, spec.end)


async def sla_targets(session: AsyncSession, priority: Priority) -> SlaTargets:
    policy = await repo.get_policy(session, priority.value)
    if policy is None:
        return SlaTargets(*DEFAULT_SLA_MINUTES[priority])
    return SlaTargets(policy.first_response_minutes, policy.resolution_minutes, _hours(policy.business_hours))


def _policy_out(priority: Priority, policy: SlaPolicy | None) -> SlaPolicyOut:
    if policy is None:
        first, resolution = DEFAULT_SLA_MINUTES[priority]
        return SlaPolicyOut(
            priority=priority, first_response_minutes=first, resolution_minutes=resolution, default=True
        )
    stored = {
        "priority": priority,
        "first_response_minutes": policy.first_response_minutes,
        "resolution_minutes": policy.resolution_minutes,
        "business_hours": policy.business_hours,
        "default": False,
    }
    return SlaPolicyOut.model_validate(stored, context={STORED: True})


async def list_policies(session: AsyncSession) -> list[SlaPolicyOut]:
    stored = {p.priority: p for p in await repo.list_policies(session)}
    return [_policy_out(priority, stored.get(priority.value)) for priority in Priority]


async def set_policy(session: AsyncSession, priority: Priority, spec: SlaPolicyIn) -> SlaPolicyOut:
    """Applies to cases opened from now on; open cases keep the deadlines they were given."""
    if spec.resolution_minutes < spec.first_response_minutes:
        raise InvalidInput(
            {"field": "resolution_minutes", "problem": "must not be shorter than the first response"}
        )
    if spec.business_hours is not None:
        hours = _business_hours(spec.business_hours)
        try:  # the resolution target is the longer one: what it reaches, the first response does
            business_hours.add_minutes(utcnow(), spec.resolution_minutes, hours)
        except business_hours.BeyondHorizon as err:
            problem = f"too narrow for resolution_minutes ({spec.resolution_minutes}): {err}"
            raise InvalidInput({"field": "business_hours", "problem": problem}) from None
    values = spec.model_dump(mode="json")
    policy = await repo.get_policy(session, priority.value)
    if policy is None:
        policy = await repo.add(session, SlaPolicy(priority=priority.value, **values))
    else:
        for name, value in values.items():
            setattr(policy, name, value)
    return _policy_out(priority, policy)


# --- opening a case --------------------------------------------------------------------------------


@dataclass
class OpenCase:
    customer_id: int
    reason: str
    team: str
    priority: Priority | None = None
    idempotency_key: str | None = None
    journey_id: str | None = None
    node_id: str | None = None
    waiting_workflow_id: str | None = None


async def open_case(
    session: AsyncSession, spec: OpenCase, *, now: datetime | None = None
) -> tuple[Case, bool]:
    """Open a case (or return the one this idempotency key opened). Returns (case, created)."""
    now = now or utcnow()
    if spec.idempotency_key is not None:
        existing = await repo.case_by_key(session, spec.idempotency_key)
        if existing is not None:
            return existing, False
    if not spec.reason.strip():
        raise InvalidInput({"field": "reason", "problem": "must not be empty"})
    team = await repo.get_team(session, spec.team)
    if team is None:
        raise InvalidInput({"field": "team", "problem": f"no team '{spec.team}'"})
    # The profile the id names now (a visitor may have logged in since), held until the case is stored.
    current = (await customers.hold_current(session, [spec.customer_id])).get(spec.customer_id)
    profile = await customers.get_profile(session, current) if current is not None else None
    if profile is None:
        raise InvalidInput({"field": "customer_id", "problem": f"no customer {spec.customer_id}"})
    tier = await _value_tier(session, profile["id"], profile["traits"])
    priority = spec.priority or TIER_PRIORITY.get(tier or "", Priority.normal)
    first_due, resolution_due = (await sla_targets(session, priority)).deadlines(now)
    values = {
        "idempotency_key": spec.idempotency_key,
        "customer_id": profile["id"],
        "reason": spec.reason,
        "priority": priority.value,
        "priority_rank": priority.rank,
        "opened_priority_rank": priority.rank,
        "team_id": team.id,
        "status": Status.open.value,
        "journey_id": spec.journey_id,
        "node_id": spec.node_id,
        "waiting_workflow_id": spec.waiting_workflow_id,
        "context": await _snapshot(session, profile, tier, now),
        "first_response_due": first_due,
        "resolution_due": resolution_due,
        "due_at": first_due,
        "revision": 1,
        "created_at": now,
        "updated_at": now,
    }
    case_id = await repo.insert_case(session, values)
    if case_id is None:  # a concurrent retry with the same key won
        return await repo.case_by_key(session, spec.idempotency_key), False
    case = await repo.get_case(session, case_id)
    source = "given" if spec.priority else ("value tier " + tier if tier in TIER_PRIORITY else "default")
    await _log(session, case, None, "opened", f"priority {priority.value} ({source})", now)
    if team.auto_assign:
        await _auto_assign(session, case, now)
    await _emit(session, case, CASE_OPENED, now, {"reason": case.reason})
    repo.enqueue_change(session, case.id)
    return case, True


async def open_by_hand(session: AsyncSession, actor: Actor, spec: CaseIn) -> CaseOut:
    if actor.team_ids is not None and spec.team not in actor.team_ids:
        raise InvalidInput({"field": "team", "problem": f"'{spec.team}' is not one of your teams"})
    case, _ = await open_case(
        session,
        OpenCase(customer_id=spec.customer_id, reason=spec.reason, team=spec.team, priority=spec.priority),
    )
    return case_out(case)


async def _value_tier(session: AsyncSession, customer_id: int, traits: dict[str, Any]) -> str | None:
    """The value tier computed from lifetime value (segments area); else a `value_tier` trait a source
    system sent (key / major / ordinary / small); else none."""
    from domain.segments import service as segments

    scores = await segments.scores_for(session, customer_id)
    if scores is not None and scores.tier in TIER_PRIORITY:
        return scores.tier
    tier = traits.get("value_tier")
    return tier.lower() if isinstance(tier, str) and tier.lower() in TIER_PRIORITY else None


async def _snapshot(session: AsyncSession, profile: dict[str, Any], tier: str | None, now: datetime) -> dict:
    """The customer's 360 view at opening, so an agent needs no search: data only, stored as given."""
    from domain.email import repository as email_repo
    from domain.events import repository as events_repo
    from domain.loyalty import service as loyalty

    traits = profile["traits"]
    events = await events_repo.recent_for(session, profile["id"], RECENT)
    messages = await email_repo.recent_for_customer(session, profile["id"], RECENT)
    points = (await loyalty.status(session, profile["id"])).balance
    return {
        "captured_at": now.isoformat(),
        "customer": {
            **{k: profile[k] for k in ("id", "user_id", "email", "timezone", "locale")},
            "former_user_ids": await customers.former_user_ids(session, profile["id"]),
        },
        "traits": traits,
        "value_tier": tier,
        "lifetime_value": profile["lifetime_value"],
        "order_count": profile["order_count"],
        "points": points,
        "recent_events": [
            {
                "type": e.type,
                "name": e.name,
                "timestamp": e.timestamp.isoformat(),
                "properties": e.properties or {},
            }
            for e in events
        ],
        "recent_messages": [
            {
                "subject": m.subject,
                "status": m.status,
                "template_id": m.template_id,
                "journey_id": m.journey_id,
                "created_at": m.created_at.isoformat(),
            }
            for m in messages
        ],
    }


async def _auto_assign(
    session: AsyncSession, case: Case, now: datetime, *, passing_over: int | None = None
) -> None:
    """Round-robin: the available agent below their cap who was assigned least recently."""
    agents = await repo.lock_team_agents(session, case.team_id)
    counts = await repo.open_counts(session, [a.id for a in agents])
    free = [a for a in agents if counts.get(a.id, 0) < a.max_open_cases and a.id != passing_over]
    if not free:
        return  # stays in the queue for agents to pull
    oldest = datetime.min.replace(tzinfo=now.tzinfo)
    agent = min(free, key=lambda a: (a.last_assigned_at or oldest, a.id))
    if await repo.claim(session, case.id, agent.id, now, responds=False):
        agent.last_assigned_at = now
        await session.refresh(case)
        await _log(session, case, agent.id, "assigned", "assigned automatically (round-robin)", now)


# --- reading ---------------------------------------------------------------------------------------


def case_out(case: Case) -> CaseOut:
    return CaseOut(
        id=case.id,
        customer_id=case.customer_id,
        reason=case.reason,
        priority=Priority(case.priority),
        team=case.team_id,
        status=Status(case.status),
        assignee_id=case.assignee_id,
        journey_id=case.journey_id,
        node_id=case.node_id,
        outcome=Outcome(case.outcome) if case.outcome else None,
        resolution_comment=case.resolution_comment,
        first_response_due=case.first_response_due,
        resolution_due=case.resolution_due,
        due_at=case.due_at,
        first_responded_at=case.first_responded_at,
        resolved_at=case.resolved_at,
        closed_at=case.closed_at,
        breached_at=case.breached_at,
        escalated_from_team=case.escalated_from_team_id,
        csat_rating=case.csat_rating,
        created_at=case.created_at,
        updated_at=case.updated_at,
    )


async def _visible(session: AsyncSession, actor: Actor, case_id: int, *, lock: bool = False) -> Case:
    """The case if the actor may see it; ``lock`` for a change: concurrent changes of one case (a
    resolve and a release, a resolve and an SLA breach) then take turns, each checking the other's
    outcome."""
    case = await repo.get_case(session, case_id, fresh=True, lock=lock)
    if case is None or not actor.sees(case):
        # Another team's case is reported exactly like a missing one: its existence is not disclosed.
        raise NotFound(f"no case {case_id}")
    return case


async def detail(session: AsyncSession, actor: Actor, case_id: int) -> CaseDetail:
    case = await _visible(session, actor, case_id)
    notes = [
        NoteOut(id=n.id, kind=n.kind, body=n.body, agent_id=n.agent_id, created_at=n.created_at)
        for n in await repo.notes_of(session, case.id)
    ]
    context = await _context_for(session, actor, case.context or {})
    return CaseDetail(**case_out(case).model_dump(), context=context, notes=notes)


CASE_EVENTS = frozenset({CASE_OPENED, CASE_RESOLVED, CASE_SLA_BREACHED})


def _case_of(event: Any) -> int | None:
    """The case an event of the context is about (one this area emitted), else None."""
    if not isinstance(event, dict) or event.get("name") not in CASE_EVENTS:
        return None
    case_id = (event.get("properties") or {}).get("case_id")
    return case_id if isinstance(case_id, int) and not isinstance(case_id, bool) else None


async def _context_for(session: AsyncSession, actor: Actor, context: dict[str, Any]) -> dict[str, Any]:
    """The context as this actor may see it: the snapshot holds the customer's recent events, among
    them those of their other cases; an agent does not see those of other teams' cases (their team as
    it is now, as in the queue and the customer 360)."""
    events = context.get("recent_events")
    if actor.team_ids is None or not isinstance(events, list):
        return context
    mentioned = sorted({c for c in map(_case_of, events) if c is not None})
    if not mentioned:
        return context
    visible = set(await repo.case_ids_in_teams(session, mentioned, actor.team_ids))
    kept = [e for e in events if (c := _case_of(e)) is None or c in visible]
    return {**context, "recent_events": kept}


@dataclass
class QueueFilter:
    team: str | None = None
    statuses: list[Status] | None = None
    priority: Priority | None = None
    assignee: str | None = None  # "me" | "none" | an agent id
    breached: bool | None = None
    customer_id: int | None = None
    limit: int = 50
    cursor: str | None = None  # where the previous page ended


@dataclass
class QueuePage:
    cases: list[CaseOut]
    next_cursor: str | None  # None on the last page


async def queue(
    session: AsyncSession, actor: Actor, f: QueueFilter, *, now: datetime | None = None
) -> QueuePage:
    after = None
    if f.cursor is not None:
        after = queue_cursor.decode(f.cursor)
        if after is None:
            problem = "not a cursor of this queue; use the one the last page gave, or none to start over"
            raise InvalidInput({"field": "cursor", "problem": problem})
    teams = actor.team_ids
    if f.team is not None:
        if teams is not None and f.team not in teams:
            raise NotFound(f"no team '{f.team}' among yours")
        teams = [f.team]
    assignee_id, unassigned = None, False
    if f.assignee == "me":
        assignee_id = _agent_of(actor)
    elif f.assignee == "none":
        unassigned = True
    elif f.assignee is not None:
        assignee_id = stored_id(f.assignee)
        if assignee_id is None:
            raise InvalidInput({"field": "assignee", "problem": "use 'me', 'none' or an agent id"})
    customer_id = f.customer_id
    if customer_id is not None:
        # A visitor's id from before they logged in names the customer they became, whose cases theirs
        # now are, as opening a case for that id does; an erased id names no one (no cases).
        customer_id = await customers.current_id(session, customer_id) or customer_id
    stmt = repo.queue_query(
        teams,
        statuses=[s.value for s in (f.statuses or ACTIVE)],
        priority=f.priority.value if f.priority else None,
        assignee_id=assignee_id,
        unassigned=unassigned,
        breached=f.breached,
        customer_id=customer_id,
        limit=f.limit + 1,
        after=after,
    )
    rows = await repo.list_cases(session, stmt)
    # The walk's start: the first page's reading time, carried on by every cursor after it.
    at = after.at if after is not None else (now or utcnow())
    more = len(rows) > f.limit
    rows = rows[: f.limit]
    next_cursor = queue_cursor.encode(queue_cursor.key_of(rows[-1], at)) if more else None
    return QueuePage([case_out(c) for c in rows], next_cursor)


# --- working a case --------------------------------------------------------------------------------


async def cases_of_customer(
    session: AsyncSession, customer_id: int, limit: int, *, teams: list[str] | None = None
) -> list[CaseOut]:
    """The customer's latest cases, for the customer 360: of these ``teams`` only (an agent's), or of
    every team (None)."""
    return [case_out(c) for c in await repo.cases_of_customer(session, customer_id, limit, teams)]


def case_events_outside(teams: list[str]):
    """A filter for the events about other teams' cases, which an agent of ``teams`` does not see."""
    return repo.case_events_outside(teams, EVENT_SLUGS)


async def teams_visible_to(session: AsyncSession, principal: Principal) -> list[str] | None:
    """The teams whose cases this key may read: an agent's own (none for an agent key no agent
    holds), every team (None) for marketers and admins."""
    if principal.role is not Role.agent:
        return None
    agent = await repo.agent_by_key(session, principal.key_id)
    return await repo.teams_of(session, agent.id) if agent is not None else []


async def case_ids_of_customer(session: AsyncSession, customer_id: int) -> list[int]:
    return await repo.case_ids_of_customer(session, customer_id)


async def _check_cap(session: AsyncSession, agent_id: int) -> None:
    """Refuse a claim past the agent's cap; the agent stays locked until the claim commits."""
    agent = await repo.lock_agent(session, agent_id)
    held = (await repo.open_counts(session, [agent_id])).get(agent_id, 0)
    if held >= agent.max_open_cases:
        raise Conflict(
            f"you hold {held} open cases, your cap; resolve or release one first", code="at_capacity"
        )


async def claim_next(session: AsyncSession, actor: Actor, *, now: datetime | None = None) -> NextCase:
    agent_id = _agent_of(actor)
    now = now or utcnow()
    if not actor.team_ids:
        return NextCase(case=None, detail="you belong to no team")
    await _check_cap(session, agent_id)
    case = await repo.claim_next(session, actor.team_ids, agent_id, now)
    if case is None:
        return NextCase(case=None, detail="no unassigned open case in your teams")
    await _claimed(session, case, agent_id, now)
    await _breached_late(session, case, now)
    return NextCase(case=case_out(case), detail=f"case {case.id} is yours")


async def claim(session: AsyncSession, actor: Actor, case_id: int) -> CaseOut:
    agent_id = _agent_of(actor)
    now = utcnow()
    # The case, then the agent: the order an SLA escalation takes them in (case, then the agents
    # of the team it auto-assigns to), so the two cannot deadlock.
    case = await _visible(session, actor, case_id, lock=True)
    if case.assignee_id == agent_id and case.status in (Status.assigned, Status.pending):
        # Claiming twice is harmless; claiming a case the team handed you acknowledges it.
        if _first_response(case, utcnow()):
            await _changed(session, case, agent_id, "claimed", "acknowledged", case.first_responded_at)
            await _breached_late(session, case, case.first_responded_at)
        return case_out(case)
    if case.status != Status.open or case.assignee_id is not None:
        # Said before the cap: an agent at their cap is told the case is resolved or held, not to
        # free a slot for a claim that would fail anyway.
        raise Conflict(_held_problem(case), code="not_claimable")
    await _check_cap(session, agent_id)
    if not await repo.claim(session, case.id, agent_id, now):
        raise Conflict(_held_problem(case), code="not_claimable")
    case = await repo.get_case(session, case_id, fresh=True)
    await _claimed(session, case, agent_id, now)
    await _breached_late(session, case, now)
    return case_out(case)


async def _claimed(session: AsyncSession, case: Case, agent_id: int, now: datetime) -> None:
    agent = await repo.get_agent(session, agent_id)  # loaded by the cap check: no query
    agent.last_assigned_at = now
    repo.enqueue_change(session, case.id)
    await _log(session, case, agent_id, "claimed", "claimed", now)


def _held_problem(case: Case) -> str:
    if case.status in (Status.resolved, Status.closed):
        return f"case {case.id} is {case.status}"
    if case.assignee_id is not None:
        return f"case {case.id} is held by agent {case.assignee_id}"
    return f"case {case.id} is not claimed; claim it first"


async def _held_by_me(session: AsyncSession, actor: Actor, case_id: int) -> tuple[Case, int]:
    agent_id = _agent_of(actor)
    case = await _visible(session, actor, case_id, lock=True)
    if case.assignee_id != agent_id or case.status not in (Status.assigned, Status.pending):
        problem = _held_problem(case)
        if case.status not in (Status.resolved, Status.closed):  # a finished case is held by nobody
            problem += "; only the agent holding it can do this"
        raise Conflict(problem, code="not_your_case")
    return case, agent_id


async def release(session: AsyncSession, actor: Actor, case_id: int) -> CaseOut:
    case, agent_id = await _held_by_me(session, actor, case_id)
    now = utcnow()
    case.assignee_id = None
    case.status = Status.open.value
    await _changed(session, case, agent_id, "released", "released back to the queue", now)
    team = await repo.get_team(session, case.team_id)
    if team.auto_assign:  # handed out again, as a new case is; not back to the agent who let it go
        await session.flush()
        await _auto_assign(session, case, now, passing_over=agent_id)
    return case_out(case)


def _first_response(case: Case, now: datetime) -> bool:
    """Record the agent's first action on the case (a claim, a note, pending, resolving) as its first
    response; an automatic assignment is none. True when this was it."""
    if case.first_responded_at is not None:
        return False
    case.first_responded_at, case.due_at = now, case.resolution_due
    return True


async def set_pending(session: AsyncSession, actor: Actor, case_id: int) -> CaseOut:
    case, agent_id = await _held_by_me(session, actor, case_id)
    now = utcnow()
    _first_response(case, now)
    case.status = Status.pending.value
    await _changed(session, case, agent_id, "pending", "waiting on the customer", now)
    await _breached_late(session, case, now)
    return case_out(case)


async def add_note(session: AsyncSession, actor: Actor, case_id: int, body: str) -> NoteOut:
    """Any agent of the case's team may note it; the body is stored exactly as given."""
    agent_id = _agent_of(actor)
    case = await _visible(session, actor, case_id, lock=True)  # locked: it may be the first response
    if case.status == Status.closed:
        raise Conflict(f"case {case.id} is closed", code="closed")
    now = utcnow()
    note = await _log(session, case, agent_id, "note", body, now)
    if _first_response(case, now):  # the clock moves on to the resolution target
        case.revision += 1
        case.updated_at = now
        repo.enqueue_change(session, case.id)
        await _breached_late(session, case, now)
    return NoteOut(
        id=note.id, kind=note.kind, body=note.body, agent_id=note.agent_id, created_at=note.created_at
    )


async def resolve(
    session: AsyncSession, settings: Settings, actor: Actor, case_id: int, outcome: Outcome, comment: str
) -> CaseOut:
    case, agent_id = await _held_by_me(session, actor, case_id)
    now = utcnow()
    _first_response(case, now)
    case.status = Status.resolved.value
    case.outcome = outcome.value
    case.resolution_comment = comment
    case.resolved_at = now
    case.due_at = None  # resolution stops the clock
    await _changed(session, case, agent_id, "resolved", f"resolved: {outcome.value}", now)
    await _breached_late(session, case, now)
    await _emit(
        session,
        case,
        CASE_RESOLVED,
        now,
        {
            "outcome": outcome.value,
            "breached": case.breached_at is not None,
            "csat_url": csat_url(settings, case.id),
        },
    )
    return case_out(case)


async def close(session: AsyncSession, actor: Actor, case_id: int) -> CaseOut:
    agent_id = _agent_of(actor)
    case = await _visible(session, actor, case_id, lock=True)
    if case.status != Status.resolved:
        raise Conflict(
            f"case {case.id} is {case.status}; only a resolved case can be closed", code="not_resolved"
        )
    case.status = Status.closed.value
    case.closed_at = utcnow()
    await _changed(session, case, agent_id, "closed", "closed", case.closed_at)
    return case_out(case)


async def _changed(
    session: AsyncSession, case: Case, agent_id: int | None, kind: str, body: str, now: datetime
):
    case.revision += 1
    case.updated_at = now
    await _log(session, case, agent_id, kind, body, now)
    repo.enqueue_change(session, case.id)


async def _breached_late(session: AsyncSession, case: Case, now: datetime) -> None:
    """Record the breach of a target this change shows was missed (a first response or resolution
    after its deadline) when the SLA clock has not yet: its timer may act seconds to minutes late.
    Called with the case locked, so the clock, firing later, finds it breached and does nothing. The
    case stays where it is: the escalation finds someone to act, and someone just did."""
    if case.breached_at is not None:
        return
    if case.first_responded_at is not None and case.first_responded_at > case.first_response_due:
        target, due = "first_response", case.first_response_due
    elif case.resolved_at is not None and case.resolved_at > case.resolution_due:
        target, due = "resolution", case.resolution_due
    else:
        return
    case.breached_at = due  # when it was breached, whenever that became known
    missed = target.replace("_", " ")
    await _log(session, case, None, "breached", f"{missed} target missed (due {due.isoformat()})", now)
    await _emit(session, case, CASE_SLA_BREACHED, now, {"target": target, "escalated_from_team": None})


async def _log(session: AsyncSession, case: Case, agent_id: int | None, kind: str, body: str, now: datetime):
    return await repo.add_note(
        session, CaseNote(case_id=case.id, agent_id=agent_id, kind=kind, body=body, created_at=now)
    )


async def _emit(session: AsyncSession, case: Case, name: str, now: datetime, extra: dict[str, Any]) -> None:
    """A case event as a track call of the customer, so journeys and segments can use it."""
    profile = await customers.get_profile(session, case.customer_id)
    slug = EVENT_SLUGS[name]
    await repo.insert_event(
        session,
        {
            "message_id": f"case/{case.id}/{slug}",
            "type": "track",
            "name": name,
            "customer_id": case.customer_id,
            "user_id": profile["user_id"] if profile else None,
            "anonymous_id": None,
            "properties": {
                "case_id": case.id,
                "priority": case.priority,
                "team": case.team_id,
                "journey_id": case.journey_id,
                **extra,
            },
            "traits": {},
            "context": {"library": {"name": EVENT_SOURCE}},
            "timestamp": now,
            "received_at": now,
        },
    )


# --- the SLA clock ---------------------------------------------------------------------------------


@dataclass
class BreachOutcome:
    escalated: bool  # by this call
    priority: str
    team: str
    status: str
    breached: bool  # as stored: escalated now or before; False when the target was met in time


async def record_breach(
    session: AsyncSession, case_id: int, target: str, *, now: datetime | None = None
) -> BreachOutcome:
    """Escalate a case whose SLA target passed: once per case, never after resolution, and not for a
    first response given in time (the clock may hear of it late).

    The priority rises one step, the case moves to the team's supervisor team (unassigned, so a
    supervisor picks it up) and `Case SLA Breached` is emitted.
    """
    now = now or utcnow()
    case = await repo.get_case(session, case_id, fresh=True)
    if case is None:
        raise NotFound(f"no case {case_id}")
    team = await repo.get_team(session, case.team_id)
    priority = Priority(case.priority).raised()
    target_team = team.supervisor_team_id or team.id
    changed = await repo.mark_breached(
        session,
        case.id,
        target,
        {
            "breached_at": now,
            "priority": priority.value,
            "priority_rank": priority.rank,
            "team_id": target_team,
            "escalated_from_team_id": case.team_id if target_team != case.team_id else None,
            "assignee_id": None,
            "status": Status.open.value,
            "updated_at": now,
        },
    )
    case = await repo.get_case(session, case_id, fresh=True)
    if changed:
        missed = target.replace("_", " ")
        body = f"{missed} target missed: priority {priority.value}, moved to team {target_team}"
        await _log(session, case, None, "breached", body, now)
        await _emit(
            session,
            case,
            CASE_SLA_BREACHED,
            now,
            {"target": target, "escalated_from_team": case.escalated_from_team_id},
        )
        if target_team != team.id and (await repo.get_team(session, target_team)).auto_assign:
            await _auto_assign(session, case, now)
    return BreachOutcome(changed, case.priority, case.team_id, case.status, case.breached_at is not None)


@dataclass
class SlaState:
    """What the SLA workflow needs to know about a case, read when a change is dispatched."""

    outbox_id: int
    case_id: int
    customer_id: int
    revision: int
    status: str
    first_responded: bool
    outcome: str | None
    breached: bool
    first_response_due: datetime
    resolution_due: datetime
    waiting_workflow_id: str | None


async def pending_sla_changes(session: AsyncSession, limit: int) -> list[SlaState]:
    changes = await repo.pending_changes(session, limit)
    cases = {c.id: c for c in await repo.cases_by_ids(session, sorted({c for _, c in changes}))}
    out = []
    for outbox_id, case_id in changes:
        case = cases.get(case_id)
        if case is None:
            continue
        out.append(
            SlaState(
                outbox_id=outbox_id,
                case_id=case.id,
                customer_id=case.customer_id,
                revision=case.revision,
                status=case.status,
                first_responded=case.first_responded_at is not None,
                outcome=case.outcome,
                breached=case.breached_at is not None,
                first_response_due=case.first_response_due,
                resolution_due=case.resolution_due,
                waiting_workflow_id=case.waiting_workflow_id,
            )
        )
    return out


async def sla_changes_done(session: AsyncSession, outbox_ids: list[int]) -> None:
    await repo.dequeue_changes(session, outbox_ids)


async def erased_since(session: AsyncSession, customer_of_case: dict[int, int]) -> list[int]:
    """Of these cases (id -> their customer when read), those gone since, erased with their customer.
    The customers are held first, so an erasure in flight is waited for: it either listed the cases
    after this caller's clocks started (and deleted them), or it has committed and they are found gone."""
    await customers.hold_current(session, set(customer_of_case.values()))
    kept = {c.id for c in await repo.cases_by_ids(session, sorted(customer_of_case))}
    return sorted(set(customer_of_case) - kept)


# --- customer satisfaction -------------------------------------------------------------------------


def csat_signature(settings: Settings, case_id: int) -> str:
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"csat:{case_id}".encode(), hashlib.sha256).hexdigest()[:32]


def csat_url(settings: Settings, case_id: int) -> str:
    """The link a satisfaction email carries; append `&rating=1..5` for one-click answers."""
    return f"{settings.resolved_public_url}/csat/{case_id}?sig={csat_signature(settings, case_id)}"


async def csat_case(session: AsyncSession, settings: Settings, case_id: int, sig: str) -> Case:
    case = await repo.get_case(session, case_id, fresh=True)
    # Compared as bytes: compare_digest refuses a str with non-ASCII characters, and a link's signature
    # may carry anything (a lone surrogate too, hence surrogatepass); it is then just a wrong one.
    given = sig.encode("utf-8", "surrogatepass")
    if case is None or not hmac.compare_digest(given, csat_signature(settings, case_id).encode()):
        raise NotFound("this rating link is not valid")
    if case.status not in (Status.resolved, Status.closed):
        raise Conflict("this case is not resolved yet", code="not_resolved")
    return case


async def rate(session: AsyncSession, settings: Settings, case_id: int, sig: str, rating: int) -> Case:
    """Record the customer's CSAT (1-5); a later answer replaces an earlier one."""
    # The link first: a post without a valid signature is told the link is not valid, whatever it rated.
    case = await csat_case(session, settings, case_id, sig)
    if not 1 <= rating <= 5:
        raise InvalidInput({"field": "rating", "problem": "must be a whole number from 1 to 5"})
    case.csat_rating = rating
    case.csat_at = utcnow()
    await _log(session, case, None, "csat", f"customer rated {rating}/5", case.csat_at)
    return case
