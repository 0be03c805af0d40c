"""Ingestion: store a request's Segment calls durably, once, and queue the triggers for routing.

The hot path is built for throughput: one multi-row INSERT for the events, one for the outbox, one
executemany UPDATE for the profile facts, and customer lookups in bulk; no per-event ORM flush.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.customers import repository as profiles
from domain.customers import service as customers
from domain.db import create_engine, session_factory, transaction, utcnow
from domain.events import postgres_batch, sqlite_batch
from domain.events.schemas import (
    AliasCall,
    Call,
    IdentifyCall,
    SegmentCall,
    TrackCall,
    is_timezone,
    normalise_locale,
)

CENT = Decimal("0.01")


@dataclass(frozen=True)
class PurchaseRule:
    """Which track event is an order, and which of its properties adds to lifetime value."""

    event: str = "Order Completed"
    revenue_property: str = "revenue"

    def revenue(self, properties: dict[str, Any]) -> Decimal:
        value = properties.get(self.revenue_property)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return Decimal(0)
        try:
            amount = Decimal(str(value)).quantize(CENT)
        except (InvalidOperation, ValueError):
            return Decimal(0)
        return amount if amount.is_finite() else Decimal(0)


@dataclass
class IngestResult:
    received: int
    stored: int

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


def utc(value: datetime | None) -> datetime | None:
    """Aware: a time sent without a zone is taken as UTC. (Storing converts any zone to UTC.)"""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def corrected_timestamp(call: SegmentCall, received_at: datetime) -> datetime:
    """Segment's clock-skew correction: receivedAt - (sentAt - timestamp)."""
    if call.timestamp is None:
        return received_at
    if call.sentAt is None:
        return utc(call.timestamp)  # type: ignore[return-value]
    return received_at - (utc(call.sentAt) - utc(call.timestamp))  # type: ignore[operator]


def _contribution(call: Call, purchase: PurchaseRule) -> dict[str, Any]:
    """What one stored call adds to its customer's profile."""
    is_order = isinstance(call, TrackCall) and call.event == purchase.event
    context = call.context
    timezone, locale = context.get("timezone"), context.get("locale")
    out: dict[str, Any] = {
        "is_order": is_order,
        "revenue": purchase.revenue(call.properties) if is_order else Decimal(0),  # type: ignore[union-attr]
        "profile_traits": None,
        "email": None,
        "timezone": timezone if isinstance(timezone, str) and is_timezone(timezone) else None,
        "locale": normalise_locale(locale) if isinstance(locale, str) else None,
    }
    if isinstance(call, IdentifyCall) and call.traits:
        # Traits were validated and normalised by the schema (email, timezone, locale).
        out["profile_traits"] = call.traits
        out["email"] = call.traits.get("email")
        out["timezone"] = call.traits.get("timezone", out["timezone"])
        out["locale"] = call.traits.get("locale", out["locale"])
    return out


@dataclass
class _Facts:
    """A batch's contributions to one customer, added up (SQLite path; PostgreSQL does it in SQL)."""

    events: int = 0
    orders: int = 0
    value: Decimal = field(default_factory=lambda: Decimal(0))
    first: datetime | None = None
    last: datetime | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    email: str | None = None
    timezone: str | None = None
    locale: str | None = None

    def add(self, at: datetime, c: dict[str, Any]) -> None:
        self.events += 1
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)
        self.orders += c["is_order"]
        self.value += c["revenue"]
        self.traits.update(c["profile_traits"] or {})
        self.email = c["email"] or self.email
        self.timezone = c["timezone"] or self.timezone
        self.locale = c["locale"] or self.locale


Key = tuple[str | None, str | None]


def _unique(calls: Sequence[Call], received_at: datetime) -> dict[str, tuple[Call, datetime]]:
    """The request's calls by messageId (first occurrence wins), each with its corrected timestamp."""
    unique: dict[str, tuple[Call, datetime]] = {}
    for call in calls:
        message_id = call.messageId or str(uuid.uuid4())
        if message_id not in unique:
            unique[message_id] = (call, corrected_timestamp(call, received_at))
    return unique


def _identities(
    unique: dict[str, tuple[Call, datetime]],
) -> tuple[dict[Key, datetime], list[tuple[str, str]]]:
    keys: dict[Key, datetime] = {}
    aliases: list[tuple[str, str]] = []
    for call, at in unique.values():
        if isinstance(call, AliasCall):
            aliases.append((call.userId, call.previousId))
            key: Key = (call.userId, None)
        else:
            key = (call.userId, call.anonymousId)
        keys[key] = min(at, keys.get(key, at))
    return keys, aliases


def _rows(
    unique: dict[str, tuple[Call, datetime]], owners: customers.Resolution | None, purchase: PurchaseRule
) -> list[dict[str, Any]]:
    """One row per event, sorted by messageId: one lock order for every writer, so concurrent batches
    cannot deadlock on the unique index. Without ``owners`` the customer is left for the database
    to find (PostgreSQL hot path)."""
    seq = {message_id: n for n, message_id in enumerate(unique)}  # request order: the last identify wins
    rows = []
    for message_id in sorted(unique):
        call, at = unique[message_id]
        rows.append(
            {
                "message_id": message_id,
                "type": call.type,
                "name": call.event_name,
                "customer_id": owners.customer_id(call.userId, call.anonymousId) if owners else None,
                "user_id": call.userId,
                "anonymous_id": call.anonymousId,
                "properties": call.event_properties,
                "traits": call.event_traits,
                "context": call.context,
                "timestamp": at,
                "original_timestamp": utc(call.timestamp),
                "sent_at": utc(call.sentAt),
                "seq": seq[message_id],
                **_contribution(call, purchase),
            }
        )
    return rows


async def ingest(
    session: AsyncSession,
    calls: Sequence[Call],
    *,
    source_key_id: int | None,
    purchase: PurchaseRule | None = None,
) -> IngestResult:
    """Store the calls of one request in the caller's transaction. A messageId seen before (in an
    earlier request, a concurrent retry or earlier in this one) is acknowledged and neither stored nor
    routed again."""
    purchase = purchase or PurchaseRule()
    received_at = utcnow()
    unique = _unique(calls, received_at)
    keys, aliases = _identities(unique)
    owners = await customers.resolve_many(session, keys, aliases)
    rows = _rows(unique, owners, purchase)
    if session.bind.dialect.name == "postgresql":
        inserted = await postgres_batch.store_batch(
            session, rows, received_at=received_at, source_key_id=source_key_id
        )
        return IngestResult(received=len(calls), stored=len(inserted or ()))

    inserted = await sqlite_batch.insert_events(
        session, rows, received_at=received_at, source_key_id=source_key_id
    )
    stored = {message_id for _, message_id in inserted}
    facts: dict[int, _Facts] = {}
    for row in sorted(rows, key=lambda r: r["seq"]):
        if row["message_id"] in stored:
            facts.setdefault(row["customer_id"], _Facts()).add(row["timestamp"], row)
    await sqlite_batch.enqueue(
        session, sorted(i for i, m in inserted if unique[m][0].type == "track"), received_at
    )
    await _apply(session, facts, received_at)
    return IngestResult(received=len(calls), stored=len(inserted))


class Ingestor:
    """Stores each request's calls, all or nothing, retrying a deadlock or a dropped connection.

    SQLite: one transaction per request. PostgreSQL, the hot path: the customers are looked up, and
    the whole batch is then stored by ONE statement in autocommit mode (``postgres_batch``), so a
    request costs two round trips and holds row locks only for that statement. Only a request that
    must create customers or merge identities runs a (short) transaction for that first.
    """

    RETRIES = 3

    def __init__(self, sessions: async_sessionmaker[AsyncSession], database_url: str):
        self._sessions = sessions
        self._engine = None
        # SQLite has one writer at a time. Queueing our own requests here is far cheaper than letting
        # them collide on the database lock, whose busy handler sleeps between retries.
        self._sqlite_writer = asyncio.Lock()
        if database_url.startswith("postgresql"):
            # Its own small pool: autocommit, and no pre-ping round trip (a dropped connection is
            # retried below instead).
            self._engine = create_engine(
                database_url, pool_pre_ping=False, pool_reset_on_return=None, isolation_level="AUTOCOMMIT"
            )
            self._autocommit = session_factory(self._engine)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    async def store(
        self, calls: Sequence[Call], *, source_key_id: int | None, purchase: PurchaseRule
    ) -> IngestResult:
        for attempt in range(1, self.RETRIES + 1):
            try:
                if self._engine is None:
                    async with self._sqlite_writer, transaction(self._sessions) as session:
                        return await ingest(session, calls, source_key_id=source_key_id, purchase=purchase)
                return await self._store_postgres(calls, source_key_id=source_key_id, purchase=purchase)
            except DBAPIError as exc:
                if attempt == self.RETRIES or not _retryable(exc):
                    raise
        raise AssertionError("unreachable")

    async def _store_postgres(
        self, calls: Sequence[Call], *, source_key_id: int | None, purchase: PurchaseRule
    ) -> IngestResult:
        received_at = utcnow()
        unique = _unique(calls, received_at)
        keys, aliases = _identities(unique)
        # Ids that only look a customer up (userId alone, or anonymousId alone) are resolved by the
        # storing statement itself; identity changes (both ids, alias) are settled here first.
        linking = bool(aliases) or any(u is not None and a is not None for u, a in keys)
        async with self._autocommit() as session:
            owners = None
            if linking:  # an alias always links; both ids may already be linked (read-only check)
                owners = None if aliases else await customers.resolve_known(session, keys)
                owners = owners or await self._resolve(keys, aliases)
            inserted = await postgres_batch.store_batch(
                session, _rows(unique, owners, purchase), received_at=received_at, source_key_id=source_key_id
            )
            if inserted is None:  # new customers: create them, then store with their ids
                owners = await self._resolve(keys, aliases)
                inserted = await postgres_batch.store_batch(
                    session,
                    _rows(unique, owners, purchase),
                    received_at=received_at,
                    source_key_id=source_key_id,
                )
        return IngestResult(received=len(calls), stored=len(inserted or ()))

    async def _resolve(
        self, keys: dict[Key, datetime], aliases: list[tuple[str, str]]
    ) -> customers.Resolution:
        async with transaction(self._sessions) as session:
            return await customers.resolve_many(session, keys, aliases)


def _retryable(exc: DBAPIError) -> bool:
    """A deadlock or serialisation failure (PostgreSQL), a busy database (SQLite) or a connection
    that dropped: the attempt rolled back whole, so running it again is safe."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return exc.connection_invalidated or code in ("40P01", "40001") or "database is locked" in str(exc.orig)


async def _apply(session: AsyncSession, facts: dict[int, _Facts], now: datetime) -> None:
    patched = [cid for cid, f in facts.items() if f.traits]
    current = await profiles.traits_of(session, patched) if patched else {}
    rows = []
    for customer_id, f in facts.items():
        row = {
            "id": customer_id,
            "events": f.events,
            "orders": f.orders,
            "value": f.value,
            "first": f.first,
            "last": f.last,
            "email": f.email,
            "timezone": f.timezone,
            "locale": f.locale,
        }
        if f.traits:  # SQLite has one writer at a time, so merging here is safe
            row["traits"] = {**current.get(customer_id, {}), **f.traits}
        rows.append(row)
    await sqlite_batch.apply_facts(session, rows, now)
