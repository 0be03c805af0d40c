from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, BigId, Json, UTCDateTime, utcnow

# A message's ref is at most 89 characters (24 hex digits, "~", a template id of up to 64). A longer
# string names no message, so it is not copied: the column and its index stay bounded whatever a
# backend sends.
MESSAGE_REF_LENGTH = 96


def _ref_of_row(context) -> str | None:
    return message_ref_of(context.get_current_parameters().get("properties"))


class Event(Base):
    """A Segment-format call as received, deduplicated on ``messageId``."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_customer_name_time", "customer_id", "name", "timestamp"),
        # A loyalty rule's back-fill reads its event's stored track events newest first (migration 0038).
        Index(
            "ix_events_track_name_id",
            "name",
            "id",
            postgresql_where=text("type = 'track'"),
            sqlite_where=text("type = 'track'"),
        ),
        # Opens and clicks by the message they name, for the campaign reports (migration 0035): only
        # the events with a ref have an entry, and the report reads name and time from it too.
        Index(
            "ix_events_message_ref",
            "message_ref",
            "name",
            "timestamp",
            postgresql_where=text("message_ref IS NOT NULL"),
            sqlite_where=text("message_ref IS NOT NULL"),
        ),
    )

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
    # The message an engagement names (``properties.message_ref`` when a string: Email Opened / Email
    # Link Clicked as tracking records them), copied out at ingestion so analytics join it to
    # Message.message_ref without reading each event's JSON (migration 0035). See ``message_ref_of``.
    message_ref: Mapped[str | None] = mapped_column(String(MESSAGE_REF_LENGTH), default=_ref_of_row)


def message_ref_of(properties: Any) -> str | None:
    """What ``Event.message_ref`` holds for an event of these properties: their ``message_ref`` when a
    string that can name a message. Ingestion writes it (in SQL on PostgreSQL: postgres_batch.STORE_GROUP
    has the same rule); an ORM or Core insert that leaves it out gets it as the column's default."""
    ref = properties.get("message_ref") if isinstance(properties, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= MESSAGE_REF_LENGTH else None


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
