from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, BigId, UTCDateTime, utcnow
from domain.subscriptions.addresses import DIGEST_ENTRIES


class SubscriptionGroup(Base):
    """A kind of marketing mail a customer can opt in to or out of (newsletter, offers, ...)."""

    __tablename__ = "subscription_groups"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # opt-out groups send until the customer unsubscribes; opt-in groups only after they subscribe
    opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Subscription(Base):
    """A customer's explicit choice for one group (absent: the group's default applies)."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("customer_id", "group_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    group_id: Mapped[str] = mapped_column(ForeignKey("subscription_groups.id", ondelete="CASCADE"))
    subscribed: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(32))  # one_click | mailto | preferences | api
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Suppression(Base):
    """An address we must not mail: unsubscribed from all marketing, hard-bounced, or complained."""

    __tablename__ = "suppressions"
    # The entries an erasure keeps only as a digest, few beside the named ones: segment evaluations
    # look them up (domain/segments/repository.erased_address_customers; migration 0033).
    __table_args__ = (
        Index(
            "ix_suppressions_digests",
            "address",
            postgresql_where=text(DIGEST_ENTRIES),
            sqlite_where=text(DIGEST_ENTRIES),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(16))  # unsubscribed | bounced | complained
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UnsubscribeMail(Base):
    """A mail to the unsubscribe mailbox that was acted on, by ``unsubscribe_mail.mail_key``: a
    provider's retry of it (the same mail, after the person re-subscribed) then changes nothing. Only
    the digest is kept, which names no one."""

    __tablename__ = "unsubscribe_mails"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
