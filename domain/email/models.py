from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, BigId, Json, UTCDateTime, utcnow
from domain.email.refs import message_ref


class Template(Base):
    """An email template. Its content lives in immutable versions; ``current_version`` is the latest."""

    __tablename__ = "templates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class TemplateVersion(Base):
    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("template_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    template_id: Mapped[str] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    layout: Mapped[str | None] = mapped_column(String(64), default="base")
    # marketing mail honours unsubscribes and carries List-Unsubscribe; transactional mail does not
    category: Mapped[str] = mapped_column(String(16), default="marketing", server_default="marketing")
    subscription_group: Mapped[str | None] = mapped_column(String(64))
    # this version's own Reply-To, as the marketer wrote it; None: JOURNEYS_MAIL_REPLY_TO (or none)
    reply_to: Mapped[str | None] = mapped_column(String(400))
    # per-locale variants: {"fr": {"subject": ..., "html": ..., "text": ...}}
    variants: Mapped[dict[str, Any]] = mapped_column(Json, default=dict, server_default=sql_text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def _ref_of_row(context) -> str:
    row = context.get_current_parameters()
    return message_ref(row["idempotency_key"], row.get("template_id"))


class Message(Base):
    """The delivery ledger: one row per send, keyed by an idempotency key derived from the workflow
    id and node id, so a retried activity finds the row and never sends twice."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_customer_created", "customer_id", "created_at"),
        # A journey's sends, newest first: GET /api/messages?journey_id= pages them by id (migration 0031).
        Index("ix_messages_journey", "journey_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(400), unique=True)
    message_id: Mapped[str] = mapped_column(String(255))  # the RFC 5322 Message-ID header
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    template_id: Mapped[str | None] = mapped_column(String(64))
    template_version: Mapped[int | None] = mapped_column(Integer)
    journey_id: Mapped[str | None] = mapped_column(String(64))
    node_id: Mapped[str | None] = mapped_column(String(64))
    to_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed | skipped
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    meta: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What this message's opens and clicks name it by (refs.message_ref, as Event.message_ref holds
    # it), written with the row from its key and template, which never change: analytics match
    # engagement by equality instead of hashing every key of the ledger at each read (migration 0035).
    message_ref: Mapped[str | None] = mapped_column(String(96), default=_ref_of_row)
