from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, Numeric, String, text
from sqlalchemy.orm import Mapped, mapped_column, validates

from domain.db import Base, BigId, Json, UTCDateTime, sha256_prefix, utcnow


class Customer(Base):
    """One person. Known by the source systems' ``userId`` and/or a pre-login ``anonymousId``."""

    __tablename__ = "customers"
    __table_args__ = (
        # Pattern operators on PostgreSQL, so an email-prefix search (LIKE 'ann%') is an index range
        # scan under any collation; equality lookups use it as well (migration 0030).
        Index("ix_customers_email", "email", postgresql_ops={"email": "varchar_pattern_ops"}),
        # Every key and value of the traits (PostgreSQL only): a trait search's containment test reads
        # it, so a value no one has is not looked for in every customer (migration 0031).
        Index(
            "ix_customers_traits",
            "traits",
            postgresql_using="gin",
            postgresql_ops={"traits": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
        # The customers at an address the suppression list keeps only as a digest, found by it
        # (domain/segments/repository.erased_address_customers; migration 0033).
        Index(
            "ix_customers_email_sha256",
            "email_sha256",
            postgresql_where=text("email_sha256 IS NOT NULL"),
            sqlite_where=text("email_sha256 IS NOT NULL"),
        ),
        # Room on each page for the new version of a row ingestion updates: a HOT update, no index
        # entries (migration 0014).
        {"postgresql_with": {"fillfactor": 70}},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    anonymous_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    # The first 16 bytes of the sha256 of ``email`` (``email_digest``): an erased person's suppression
    # entry keeps only ``sha256:`` and the hex digest, so segment evaluations find the customers at such
    # an address by it instead of hashing every address (migration 0033); 16 bytes tell addresses apart
    # and take a quarter of the room of 64 hex digits. The application writes it wherever it sets the
    # email (the ORM does it here): PostgreSQL cannot compute it in a generated column (convert_to(),
    # which gives the UTF-8 bytes to hash, is not immutable), and SQLite has no sha256 of its own, so a
    # generated column there would need our function on every connection that writes, tools included.
    email_sha256: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    traits: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    timezone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(35))
    # When the person unsubscribed from all marketing (null: they have not, or subscribed again). Kept
    # on the person as well as on the address they had: a new address does not undo their choice.
    unsubscribed_all_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Facts kept up to date by ingestion (see domain/events/service.py).
    event_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    order_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lifetime_value: Mapped[Decimal] = mapped_column(
        Numeric(16, 2, asdecimal=True), default=Decimal(0), server_default="0"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @validates("email")
    def _keep_digest(self, _key: str, email: str | None) -> str | None:
        self.email_sha256 = email_digest(email)
        return email


# The most (and, with refunds, the least) lifetime value holds: its column's 16 digits. Adding past it
# stays at it: PostgreSQL refused the update, so a big spender's every later order failed.
MAX_LIFETIME_VALUE = Decimal("99999999999999.99")


def within_lifetime_value(amount: Decimal) -> Decimal:
    return min(max(amount, -MAX_LIFETIME_VALUE), MAX_LIFETIME_VALUE)


def email_digest(email: str | None) -> bytes | None:
    """What ``Customer.email_sha256`` holds for ``email`` (nothing for no address)."""
    return sha256_prefix(email) if email else None


class CustomerAlias(Base):
    """Further anonymous ids of a customer: the visitor ids merged into it by ``alias`` or an identify
    that carried both ids. The customer's own ``anonymous_id`` column holds the first one."""

    __tablename__ = "customer_aliases"

    anonymous_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomerUserAlias(Base):
    """Former userIds of a customer: an ``alias`` whose previousId was a userId renamed the profile or
    merged it into this one. Calls still sent under the old id land here, not on a new profile."""

    __tablename__ = "customer_user_aliases"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomerErasure(Base):
    """The record that a person's data was erased on request (right to be forgotten). It keeps no
    personal data: only SHA-256 digests of the ids, so a later audit can answer "was X erased?"."""

    __tablename__ = "customer_erasures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigId)
    user_id_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    email_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    events_erased: Mapped[int] = mapped_column(Integer)
    # The histories of the person's journeys and case clocks deleted from Temporal (migration 0021).
    workflows_deleted: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Those Temporal no longer knew (an earlier, interrupted attempt deleted them; migration 0023).
    workflows_already_gone: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    erased_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(String(500))
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomerMerge(Base):
    """Where a profile merged away went: a visitor's running journeys were started with its id, and
    their activities look here to act for the known customer it became (chains are kept collapsed:
    every row names a profile that still exists, or went with it on erasure)."""

    __tablename__ = "customer_merges"

    merged_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    merged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
