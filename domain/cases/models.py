"""Cases: what a journey (or an agent) escalates to a person, the teams that work them, their SLAs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, BigId, Json, UTCDateTime, utcnow


class Team(Base):
    """A queue of cases. A breached case moves to the team's supervisor team."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    supervisor_team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    # Assign new cases round-robin to available agents below their cap (otherwise agents pull).
    auto_assign: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Agent(Base):
    """A person working cases, authenticated by one management key of role ``agent``."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), unique=True)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    max_open_cases: Mapped[int] = mapped_column(Integer, default=10)
    last_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)


class SlaPolicy(Base):
    """First-response and resolution targets for one priority (defaults apply when no row exists)."""

    __tablename__ = "case_sla_policies"

    priority: Mapped[str] = mapped_column(String(16), primary_key=True)
    first_response_minutes: Mapped[int] = mapped_column(Integer)
    resolution_minutes: Mapped[int] = mapped_column(Integer)
    # {"timezone", "days" (0 = Monday), "start", "end" ("HH:MM")}; NULL = the clock runs around the clock.
    business_hours: Mapped[dict[str, Any] | None] = mapped_column(Json)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        # The queue: a team's cases in one status, most urgent deadline first.
        Index("ix_cases_team_status_due", "team_id", "status", "due_at"),
        Index("ix_cases_assignee_status", "assignee_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Derived from workflow id + node id when a journey opens the case: a retried activity finds it.
    idempotency_key: Mapped[str | None] = mapped_column(String(400), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(16))  # low | normal | high | urgent
    priority_rank: Mapped[int] = mapped_column(SmallInteger)  # 0..3, for ordering
    # The rank before a breach raised it (the queue's later pages order cases as they stood); NULL: as now.
    opened_priority_rank: Mapped[int | None] = mapped_column(SmallInteger)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    status: Mapped[str] = mapped_column(String(16))  # open | assigned | pending | resolved | closed
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    journey_id: Mapped[str | None] = mapped_column(String(64))
    node_id: Mapped[str | None] = mapped_column(String(64))
    waiting_workflow_id: Mapped[str | None] = mapped_column(String(400))
    context: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    outcome: Mapped[str | None] = mapped_column(String(32))
    resolution_comment: Mapped[str | None] = mapped_column(Text)
    first_response_due: Mapped[datetime] = mapped_column(UTCDateTime)
    resolution_due: Mapped[datetime] = mapped_column(UTCDateTime)
    # The deadline that matters now (first response, then resolution); NULL once resolved.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated_from_team_id: Mapped[str | None] = mapped_column(String(64))
    csat_rating: Mapped[int | None] = mapped_column(SmallInteger)
    csat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped on every change; the SLA workflow ignores a state older than the one it has.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CaseNote(Base):
    __tablename__ = "case_notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))  # note | claimed | released | pending | resolved | ...
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CaseOutbox(Base):
    """Case changes the SLA workflow has not been told about yet. Written in the changing transaction
    and deleted by the worker's dispatcher once Temporal has the signal, so none is lost."""

    __tablename__ = "case_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
