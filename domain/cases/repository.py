"""All SQL of the cases area.

It also reads the events and messages tables for a customer's 360 snapshot and writes case events into
the events table (plus the outbox row the journey router reads), so journeys and segments see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    cast,
    delete,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domain.cases.models import Agent, Case, CaseNote, CaseOutbox, SlaPolicy, Team, TeamMember
from domain.cases.queue_cursor import QueueKey
from domain.db import UTCDateTime, insert_ignoring_conflicts
from domain.events.models import Event, EventOutbox

HELD = ("assigned", "pending")  # statuses that count against an agent's cap


# --- teams and agents ------------------------------------------------------------------------------


async def get_team(session: AsyncSession, team_id: str) -> Team | None:
    return await session.get(Team, team_id)


async def list_teams(session: AsyncSession) -> list[Team]:
    return list(await session.scalars(select(Team).order_by(Team.id)))


async def add(session: AsyncSession, row) -> Any:
    session.add(row)
    await session.flush()
    return row


async def members_by_team(session: AsyncSession) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for team_id, agent_id in await session.execute(
        select(TeamMember.team_id, TeamMember.agent_id).order_by(TeamMember.agent_id)
    ):
        out.setdefault(team_id, []).append(agent_id)
    return out


async def agent_by_key(session: AsyncSession, api_key_id: int) -> Agent | None:
    return await session.scalar(select(Agent).where(Agent.api_key_id == api_key_id))


async def get_agent(session: AsyncSession, agent_id: int) -> Agent | None:
    return await session.get(Agent, agent_id)


async def lock_agent(session: AsyncSession, agent_id: int) -> Agent | None:
    """The agent, row-locked on PostgreSQL: one agent's claims (and the auto-assignments that lock
    their team's agents) take turns, so none can overshoot the agent's cap."""
    return await session.get(Agent, agent_id, with_for_update=True, populate_existing=True)


async def list_agents(session: AsyncSession) -> list[Agent]:
    return list(await session.scalars(select(Agent).order_by(Agent.id)))


async def teams_of(session: AsyncSession, agent_id: int) -> list[str]:
    stmt = select(TeamMember.team_id).where(TeamMember.agent_id == agent_id).order_by(TeamMember.team_id)
    return list(await session.scalars(stmt))


async def open_counts(session: AsyncSession, agent_ids: Sequence[int]) -> dict[int, int]:
    if not agent_ids:
        return {}
    stmt = (
        select(Case.assignee_id, func.count())
        .where(Case.assignee_id.in_(agent_ids), Case.status.in_(HELD))
        .group_by(Case.assignee_id)
    )
    return {agent_id: count for agent_id, count in await session.execute(stmt)}


async def lock_team_agents(session: AsyncSession, team_id: str) -> list[Agent]:
    """The team's available agents, row-locked on PostgreSQL so two concurrent openings cannot both
    give the last free slot of one agent (SQLite already serialises writers with BEGIN IMMEDIATE)."""
    stmt = (
        select(Agent)
        .join(TeamMember, TeamMember.agent_id == Agent.id)
        .where(TeamMember.team_id == team_id, Agent.available.is_(True))
        .order_by(Agent.id)
        .with_for_update(of=Agent)
    )
    return list(await session.scalars(stmt))


# --- SLA policies ----------------------------------------------------------------------------------


async def get_policy(session: AsyncSession, priority: str) -> SlaPolicy | None:
    return await session.get(SlaPolicy, priority)


async def list_policies(session: AsyncSession) -> list[SlaPolicy]:
    return list(await session.scalars(select(SlaPolicy)))


# --- cases -----------------------------------------------------------------------------------------


async def insert_case(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert a case; ``None`` when its idempotency key already names one."""
    stmt = insert_ignoring_conflicts(session, Case, ["idempotency_key"]).values(**values).returning(Case.id)
    return await session.scalar(stmt)


async def case_by_key(session: AsyncSession, idempotency_key: str) -> Case | None:
    return await session.scalar(select(Case).where(Case.idempotency_key == idempotency_key))


async def get_case(
    session: AsyncSession, case_id: int, *, fresh: bool = False, lock: bool = False
) -> Case | None:
    """``fresh`` reads the stored row again; ``lock`` also row-locks it (PostgreSQL) until the
    transaction ends, so a change checked against it cannot be overtaken by another."""
    if lock:
        return await session.get(Case, case_id, with_for_update=True, populate_existing=True)
    options = {"populate_existing": True} if fresh else None
    return await session.get(Case, case_id, execution_options=options or {})


def queue_query(
    team_ids: Sequence[str] | None,
    *,
    statuses: Sequence[str],
    priority: str | None,
    assignee_id: int | None,
    unassigned: bool,
    breached: bool | None,
    customer_id: int | None,
    limit: int,
    after: QueueKey | None = None,
) -> Select:
    """The queue's filters, ordered as listed; ``after`` continues a walk past that case, ordering
    the cases as they stood when the walk began (see queue_cursor)."""
    stmt = select(Case).where(Case.status.in_(statuses))
    if team_ids is not None:
        stmt = stmt.where(Case.team_id.in_(team_ids))
    if priority is not None:
        stmt = stmt.where(Case.priority == priority)
    if assignee_id is not None:
        stmt = stmt.where(Case.assignee_id == assignee_id)
    if unassigned:
        stmt = stmt.where(Case.assignee_id.is_(None))
    if breached is not None:
        stmt = stmt.where(Case.breached_at.is_not(None) if breached else Case.breached_at.is_(None))
    if customer_id is not None:
        stmt = stmt.where(Case.customer_id == customer_id)
    if after is None:
        return stmt.order_by(*LISTED).limit(limit)
    due, resolved, rank = queue_as_of(after.at)
    ties = or_(rank < after.rank, and_(rank == after.rank, Case.id > after.case_id))
    if after.due is not None:
        later = or_(due.is_(None), due > after.due, and_(due == after.due, ties))
    else:  # among the finished ones, most recently resolved first
        later = and_(due.is_(None), or_(resolved < after.resolved, and_(resolved == after.resolved, ties)))
    order = (due.asc().nulls_last(), resolved.desc().nulls_last(), rank.desc(), Case.id.asc())
    return stmt.where(later).order_by(*order).limit(limit)


def queue_as_of(at: datetime) -> tuple[ColumnElement, ColumnElement, ColumnElement]:
    """(deadline, resolved_at, rank) as they stood at ``at``: the stored times tell them (the same
    rules as queue_cursor.key_of)."""
    when = literal(at, UTCDateTime())
    finished = and_(Case.resolved_at.is_not(None), Case.resolved_at <= when)
    responded = and_(Case.first_responded_at.is_not(None), Case.first_responded_at <= when)
    due = case((finished, null()), (responded, Case.resolution_due), else_=Case.first_response_due)
    resolved = case((finished, Case.resolved_at), else_=null())
    breached_since = and_(Case.breached_at.is_not(None), Case.breached_at > when)
    before = func.coalesce(Case.opened_priority_rank, Case.priority_rank)
    rank = case((breached_since, before), else_=Case.priority_rank)
    return due, resolved, rank


# SLA urgency: the nearest deadline first, then the higher priority, then the older case.
URGENCY = (Case.due_at.asc().nulls_last(), Case.priority_rank.desc(), Case.id.asc())
# The queue as listed: active cases by urgency, then the finished ones (no deadline) most recently
# resolved first, so a list of resolved cases starts with today's, not with the oldest ones.
LISTED = (Case.due_at.asc().nulls_last(), Case.resolved_at.desc(), *URGENCY[1:])


async def list_cases(session: AsyncSession, stmt: Select) -> list[Case]:
    return list(await session.scalars(stmt))


def _claim_values(agent_id: int, now: datetime, *, responds: bool = True) -> dict[str, Any]:
    values = {"assignee_id": agent_id, "status": "assigned", "revision": Case.revision + 1, "updated_at": now}
    if responds:  # an agent's claim is a first response; from then on the resolution deadline counts
        values["first_responded_at"] = func.coalesce(Case.first_responded_at, literal(now, UTCDateTime()))
        values["due_at"] = Case.resolution_due
    return values


async def claim_next(
    session: AsyncSession, team_ids: Sequence[str], agent_id: int, now: datetime
) -> int | None:
    """Atomically assign the most urgent unassigned open case of these teams to the agent.

    PostgreSQL: the candidate row is locked with FOR UPDATE SKIP LOCKED, so concurrent agents each get a
    different case without waiting on one another. SQLite: the transaction began IMMEDIATE (domain/db.py),
    so claims run one after another. On both, the outer WHERE re-checks the row is still unclaimed.
    """
    candidate = (
        select(Case.id)
        .where(Case.team_id.in_(team_ids), Case.status == "open", Case.assignee_id.is_(None))
        .order_by(*URGENCY)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(Case)
        .where(Case.id == candidate, Case.status == "open", Case.assignee_id.is_(None))
        .values(**_claim_values(agent_id, now))
        .returning(Case)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return await session.scalar(stmt)


async def claim(
    session: AsyncSession, case_id: int, agent_id: int, now: datetime, *, responds: bool = True
) -> bool:
    """Assign this case to the agent if nobody holds it; False when someone does (or it is not open).
    ``responds=False`` (an automatic assignment) leaves the first response to the agent."""
    stmt = (
        update(Case)
        .where(Case.id == case_id, Case.status == "open", Case.assignee_id.is_(None))
        .values(**_claim_values(agent_id, now, responds=responds))
        .returning(Case.id)
        .execution_options(synchronize_session=False)
    )
    return await session.scalar(stmt) is not None


async def mark_breached(session: AsyncSession, case_id: int, target: str, values: dict[str, Any]) -> bool:
    """Record the SLA breach once: only an active case not breached before, and that missed
    ``target`` (a first response given in time is no breach, whenever the clock hears of it)."""
    met = (
        and_(Case.first_responded_at.is_not(None), Case.first_responded_at <= Case.first_response_due)
        if target == "first_response"
        else false()
    )
    stmt = (
        update(Case)
        .where(Case.id == case_id, Case.breached_at.is_(None), Case.status.in_(("open", *HELD)), ~met)
        .values(**values, revision=Case.revision + 1)
        .returning(Case.id)
        .execution_options(synchronize_session=False)
    )
    return await session.scalar(stmt) is not None


async def add_note(session: AsyncSession, note: CaseNote) -> CaseNote:
    session.add(note)
    await session.flush()
    return note


async def notes_of(session: AsyncSession, case_id: int) -> list[CaseNote]:
    stmt = select(CaseNote).where(CaseNote.case_id == case_id).order_by(CaseNote.id)
    return list(await session.scalars(stmt))


# --- the SLA outbox --------------------------------------------------------------------------------


def enqueue_change(session: AsyncSession, case_id: int) -> None:
    """Queued with the session's next flush (the commit at the latest)."""
    session.add(CaseOutbox(case_id=case_id))


async def pending_changes(session: AsyncSession, limit: int) -> list[tuple[int, int]]:
    """(outbox id, case id) pairs, oldest first."""
    stmt = select(CaseOutbox.id, CaseOutbox.case_id).order_by(CaseOutbox.id).limit(limit)
    return [(row[0], row[1]) for row in await session.execute(stmt)]


async def cases_of_customer(
    session: AsyncSession, customer_id: int, limit: int, teams: list[str] | None
) -> list[Case]:
    stmt = select(Case).where(Case.customer_id == customer_id).order_by(Case.id.desc()).limit(limit)
    if teams is not None:
        stmt = stmt.where(Case.team_id.in_(teams))
    return list(await session.scalars(stmt))


def case_events_outside(teams: list[str], slugs: dict[str, str]) -> ColumnElement[bool]:
    """The engine's case events (track calls named as ``slugs``' keys, messageId ``case/{id}/{slug}``)
    about cases of other teams than these. Matched as text, never by casting a property: a customer's
    own events may carry any messageId and properties (``case/ZD-1``, a ``case_id`` of "ZD-1")."""
    own_id = literal("case/") + cast(Case.id, String) + "/"
    visible = exists().where(
        Case.customer_id == Event.customer_id,
        Case.team_id.in_(teams),
        or_(*(and_(Event.name == name, Event.message_id == own_id + slug) for name, slug in slugs.items())),
    )
    return and_(Event.type == "track", Event.name.in_(list(slugs)), Event.message_id.like("case/%"), ~visible)


async def case_ids_in_teams(
    session: AsyncSession, case_ids: Sequence[int], teams: Sequence[str]
) -> list[int]:
    """Which of these cases belong to these teams now."""
    if not case_ids or not teams:
        return []
    stmt = select(Case.id).where(Case.id.in_(case_ids), Case.team_id.in_(teams))
    return list(await session.scalars(stmt))


async def case_ids_of_customer(session: AsyncSession, customer_id: int) -> list[int]:
    return list(
        await session.scalars(select(Case.id).where(Case.customer_id == customer_id).order_by(Case.id))
    )


async def cases_by_ids(session: AsyncSession, case_ids: Sequence[int]) -> list[Case]:
    return list(await session.scalars(select(Case).where(Case.id.in_(case_ids))))


async def dequeue_changes(session: AsyncSession, outbox_ids: Sequence[int]) -> None:
    if outbox_ids:
        await session.execute(delete(CaseOutbox).where(CaseOutbox.id.in_(outbox_ids)))


# --- the customer's 360 view and case events -------------------------------------------------------


async def insert_event(session: AsyncSession, values: dict[str, Any]) -> None:
    """Store a case event as a track call and queue it for the journey router; once per message id."""
    stmt = insert_ignoring_conflicts(session, Event, ["message_id"]).values(**values).returning(Event.id)
    event_id = await session.scalar(stmt)
    if event_id is not None:
        await session.execute(
            insert_ignoring_conflicts(session, EventOutbox, ["event_id"]).values(event_id=event_id)
        )
