from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from domain.customers.models import Customer
from domain.db import Base, BigId, Json, UTCDateTime, utcnow
from domain.events.models import Event

# Segment evaluation scans events by name and time; with the customer id in the index the count per
# customer is answered from the index alone (PostgreSQL index-only scan).
EVENTS_BY_NAME_TIME = Index("ix_events_name_time_customer", Event.name, Event.timestamp, Event.customer_id)
# The refresher evaluates customers created since its last pass against every segment.
CUSTOMERS_BY_CREATION = Index("ix_customers_created_at", Customer.created_at)


class Segment(Base):
    """A named rule. Its rule lives in immutable versions; ``current_version`` is the one evaluated."""

    __tablename__ = "segments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Set when a background pass could not evaluate the segment (its membership was left as it was),
    # cleared by the next pass that can: the API and /api/health show a stale segment.
    refresh_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_error: Mapped[str | None] = mapped_column(Text)


class SegmentVersion(Base):
    __tablename__ = "segment_versions"
    __table_args__ = (UniqueConstraint("segment_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    rule: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SegmentMembership(Base):
    """One stay of a customer in a segment: open while ``exited_at`` is null."""

    __tablename__ = "segment_memberships"
    __table_args__ = (
        Index(
            "uq_segment_memberships_current",
            "segment_id",
            "customer_id",
            unique=True,
            sqlite_where=text("exited_at IS NULL"),
            postgresql_where=text("exited_at IS NULL"),
        ),
        Index("ix_segment_memberships_customer", "customer_id"),
        # Open stays by segment, the narrowest index that holds them: GET /api/segments counts each
        # segment's members from it alone (migration 0031).
        Index(
            "ix_segment_memberships_open",
            "segment_id",
            sqlite_where=text("exited_at IS NULL"),
            postgresql_where=text("exited_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys: checking them cost two lookups per stay opened, a large share of a refresh.
    # Opening stays locks the segment row and the customers entered (FOR KEY SHARE) in the same
    # statement, so neither can be deleted meanwhile; deleting either deletes its stays.
    segment_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int] = mapped_column(BigId)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    exited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CustomerScore(Base):
    """Value tier and RFM per customer, recomputed on a schedule from purchase events."""

    __tablename__ = "customer_scores"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    ltv: Mapped[float] = mapped_column(Float, default=0.0)
    order_count: Mapped[int] = mapped_column(Integer, default=0)
    last_order_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tier: Mapped[str] = mapped_column(String(16), index=True)  # key | major | ordinary | small
    recency: Mapped[int | None] = mapped_column(Integer)  # 1-5, null without orders
    frequency: Mapped[int | None] = mapped_column(Integer)
    monetary: Mapped[int | None] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SegmentRefreshState(Base):
    """Progress of the background passes: the event cursor of the refresher, the last window-edge pass."""

    __tablename__ = "segment_refresh_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), default=0)
    # Event ids skipped because their transaction had not committed yet; retried for a while.
    pending: Mapped[list[Any]] = mapped_column(Json, default=list)
    ran_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SegmentNewcomer(Base):
    """Customers created since the refresher's last pass. A new profile is blank (its traits and facts
    arrive with its events, which the pass reads anyway), so the pass checks it only against the
    segments a blank profile matches ("never ordered"), once, and removes it from here in the same
    transaction. Queued in the transaction that creates the customer, so none is missed however late
    it commits."""

    __tablename__ = "segment_newcomers"

    # No foreign key, as for rechecks: erasure removes the row itself.
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SegmentRecheck(Base):
    """Customers whose membership may have changed without a new event of theirs saying so: a profile
    merge re-attributed another profile's events to them, a journey step set their traits. The next
    refresher pass re-evaluates them against every segment, both ways, and removes them from here in
    the same transaction."""

    __tablename__ = "segment_rechecks"

    # No foreign key, as for stays: erasure removes the row itself, and a pass ignores ids it cannot
    # find (the evaluation joins the customers).
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SegmentNewSend(Base):
    """Customers sent a message since the window-edge pass last ran: segments on received messages
    re-evaluate them there and the pass removes these rows in the same transaction. Queued in the
    transaction that records the send as sent, so one that commits late (after a pass read the
    messages) is taken by the next pass, never lost. One row per send, no unique key: senders append
    without waiting for each other."""

    __tablename__ = "segment_new_sends"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign key, as for rechecks: erasure removes the rows itself, and a pass ignores ids it
    # cannot find (the evaluation joins the customers).
    customer_id: Mapped[int] = mapped_column(BigId)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
