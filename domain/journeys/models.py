from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, BigId, Json, UTCDateTime, utcnow


class Journey(Base):
    """A journey and its editable draft. What runs is always a published, immutable version."""

    __tablename__ = "journeys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft|published|paused|archived
    draft: Mapped[dict[str, Any]] = mapped_column(Json)
    published_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class JourneyVersion(Base):
    __tablename__ = "journey_versions"
    __table_args__ = (UniqueConstraint("journey_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    # The definition as published, with each template's version pinned.
    definition: Mapped[dict[str, Any]] = mapped_column(Json)
    trigger_event: Mapped[str] = mapped_column(String(255), index=True)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Enrollment(Base):
    """One customer's pass through one journey: one Temporal workflow."""

    __tablename__ = "enrollments"
    __table_args__ = (Index("ix_enrollments_journey_customer", "journey_id", "customer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255), unique=True)
    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    entry_event_id: Mapped[int | None] = mapped_column(BigId)
    # active | completed | converted (reached the goal) | exited (exit criterion, archive) | failed
    status: Mapped[str] = mapped_column(String(16), default="active")
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when a merge of two profiles found the person in this journey twice where its re-entry
    # policy allows one: this (the later-entered) enrollment was ended ("exited") in the merge, in
    # favour of the enrollment named here. Its workflow leaves at its next step with an effect (send,
    # points, case, webhook, trait, listeners), doing nothing there; its status is not overwritten
    # when it finishes.
    superseded_by: Mapped[str | None] = mapped_column(String(255))


class JourneyListener(Base):
    """An enrollment that waits for an event (a wait_for_event node, a goal, an exit criterion).

    The router signals only the enrollments listed here for a customer's event, never every running
    enrollment of the customer. A wait's row goes once the wait ends (unless a goal or exit criterion
    listens for the same event), the others when the enrollment finishes.
    """

    __tablename__ = "journey_listeners"
    __table_args__ = (
        UniqueConstraint("workflow_id", "event_name"),
        Index("ix_journey_listeners_customer_event", "customer_id", "event_name"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    event_name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JourneyStep(Base):
    """One visit of one enrollment to one node: when it entered, when it left, and how."""

    __tablename__ = "journey_steps"
    __table_args__ = (
        UniqueConstraint("workflow_id", "node_id", "visit"),
        Index("ix_journey_steps_journey_node", "journey_id", "node_id"),
        # A journey's steps in each enrollment's order, with what the analytics' transitions read
        # beside them (PostgreSQL): the window over them needs no sort (migration 0036).
        Index(
            "ix_journey_steps_journey_path",
            "journey_id",
            "workflow_id",
            "entered_at",
            "id",
            postgresql_include=["node_id", "left_at", "outcome"],
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(64))
    visit: Mapped[int] = mapped_column(Integer, default=1)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(32))  # sent, deferred, timeout, matched, ...


class JourneySendSlot(Base):
    """When one rate-limited send of a journey may go: the journey's shared slot clock.

    One row per send key, so a retried plan finds its slot instead of taking another.
    """

    __tablename__ = "journey_send_slots"
    __table_args__ = (Index("ix_journey_send_slots_journey_slot", "journey_id", "slot_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    send_key: Mapped[str] = mapped_column(String(512), unique=True)
    slot_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CapReservation(Base):
    """A frequency-capped send that its plan let go, counted by the cap until its ledger row exists.

    The plan counts the customer's recent sends and takes this row in one transaction, with the
    customer locked, so a concurrent plan (another journey, another enrollment) counts it too: the
    send itself is recorded later, by the send activity. Once the ledger has a row under the same key
    the row counts instead (a skipped or failed send, none); a reservation whose send never comes
    stops counting after a while. One row per send key, so a retried plan keeps its reservation.
    """

    __tablename__ = "cap_reservations"
    __table_args__ = (Index("ix_cap_reservations_customer_reserved", "customer_id", "reserved_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    send_key: Mapped[str] = mapped_column(String(512), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    reserved_at: Mapped[datetime] = mapped_column(UTCDateTime)
