"""The loyalty ledger.

``loyalty_entries`` is the truth: append-only, one row per movement of points, each under a unique
idempotency key. Accounts (balance, tier) and lots (what is left of each credit) are derived state kept in
step in the same transaction, so they can always be recomputed from the entries and compared.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, BigId, Json, UTCDateTime, utcnow


class LoyaltyProgram(Base):
    """The programme configuration (earning rules, tiers, expiry): one row, validated on write."""

    __tablename__ = "loyalty_programs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(Json)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyAccount(Base):
    """One member's balance and tier. Every ledger write locks this row first (FOR UPDATE on
    PostgreSQL, BEGIN IMMEDIATE on SQLite), so concurrent writers for one member queue here."""

    __tablename__ = "loyalty_accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    tier: Mapped[str] = mapped_column(String(64), index=True)
    # Points that counted towards the tier when it was last evaluated, and when that was.
    tier_points: Mapped[int] = mapped_column(BigInteger, default=0)
    tier_evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyEntry(Base):
    """One movement of points. ``points`` is signed: earn and positive adjust credit, redeem, expire and
    negative adjust debit. Never updated, never deleted (except with the customer)."""

    __tablename__ = "loyalty_entries"
    __table_args__ = (
        Index("ix_loyalty_entries_customer_id_id", "customer_id", "id"),
        Index("ix_loyalty_entries_customer_kind_time", "customer_id", "kind", "occurred_at"),
        CheckConstraint("points <> 0", name="points_not_zero"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(400), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # earn | redeem | expire | adjust
    points: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(16))  # event | api | journey | schedule
    rule_id: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[int | None] = mapped_column(BigId)
    # The lot an expire entry closed, or the one a merge's reversal took from (not oldest first).
    lot_entry_id: Mapped[int | None] = mapped_column(BigId)
    # When the points were earned (the event's time), which is what expiry and tier windows count from.
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    meta: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyLot(Base):
    """What is left of one credit. Debits consume lots oldest first; expiry closes a lot."""

    __tablename__ = "loyalty_lots"
    __table_args__ = (
        Index("ix_loyalty_lots_customer_earned", "customer_id", "earned_at", "entry_id"),
        Index("ix_loyalty_lots_open_expiry", "remaining", "expires_at"),
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_in_range"),
    )

    entry_id: Mapped[int] = mapped_column(
        ForeignKey("loyalty_entries.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoyaltyTierChange(Base):
    """Every tier change, so a `Tier Changed` event has a stable id and support can see the history."""

    __tablename__ = "loyalty_tier_changes"
    __table_args__ = (Index("ix_loyalty_tier_changes_customer", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    from_tier: Mapped[str | None] = mapped_column(String(64))
    to_tier: Mapped[str] = mapped_column(String(64))
    tier_points: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int | None] = mapped_column(BigId)  # the ledger entry that caused it, if any
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoyaltyFoldedKey(Base):
    """The idempotency key of an entry whose profile was merged into one with an account of its own.

    The merge credits the visitor's open points to the customer as new entries and deletes the
    visitor's ledger; its keys stay here, so a step retried after the merge (an award whose reply was
    lost) is recognised as done instead of applied again. A merge also claims here, as ``step:...``,
    a journey step the person's other enrollment already gave (see loyalty.merging)."""

    __tablename__ = "loyalty_folded_keys"

    idempotency_key: Mapped[str] = mapped_column(String(400), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    folded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoyaltyCursor(Base):
    """How far the earner has read the events table (every event id at or below is settled)."""

    __tablename__ = "loyalty_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
