from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, BigId, Json, UTCDateTime, utcnow


class Event(Base):
    """A Segment-format call as received, deduplicated on ``messageId``."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_customer_name_time", "customer_id", "name", "timestamp"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(16))  # track | identify | page | screen | group | alias
    name: Mapped[str | None] = mapped_column(String(255))  # the track event name
    # No foreign key: checking it per stored event cost more than the rest of the insert. Ingestion
    # locks the customer row it attributes an event to (FOR KEY SHARE) in the storing statement, so a
    # merge or an erasure cannot delete it meanwhile; both move or delete the events themselves.
    customer_id: Mapped[int] = mapped_column(BigId)
    user_id: Mapped[str | None] = mapped_column(String(255))
    anonymous_id: Mapped[str | None] = mapped_column(String(255))
    properties: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    traits: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)  # corrected for client clock skew
    original_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The write key that sent it (audit). No foreign key: every event of a source would share-lock
    # the same api_keys row, and PostgreSQL's multixacts make that the slowest part of ingesting.
    source_key_id: Mapped[int | None] = mapped_column(BigId)


LANE_EVENTS = "events"
LANE_SEGMENTS = "segments"


class EventOutbox(Base):
    """Events stored but not yet routed to Temporal. Written in the ingesting transaction, deleted by the
    router once every journey it concerns has been signalled, so a crash in between loses nothing."""

    __tablename__ = "event_outbox"
    __table_args__ = (
        Index("ix_event_outbox_lane_event", "lane", "event_id"),
        Index(
            "ix_event_outbox_claimed_until",
            "claimed_until",
            postgresql_where=text("claimed_until IS NOT NULL"),
            sqlite_where=text("claimed_until IS NOT NULL"),
        ),
    )

    # No foreign key on purpose: checking it costs more than the rest of the insert on PostgreSQL's
    # hot path. Erasure deletes a customer's outbox rows itself; the router drops orphans.
    event_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A router leases rows before routing them; a router that dies lets its lease run out and another
    # takes the rows over (routing is idempotent, so the overlap is harmless).
    # Indexed only while leased (migration 0014): queuing an event writes no entry in it.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    # Which router lane takes the row: segment refreshes queue thousands of rows at once in their own
    # lane, so ordinary events never wait behind them.
    lane: Mapped[str] = mapped_column(String(16), default=LANE_EVENTS, server_default=text("'events'"))
