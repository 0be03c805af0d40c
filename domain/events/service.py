"""Ingestion: store a request's Segment calls durably, once, and queue the triggers for routing.

The hot path is built for throughput: one multi-row INSERT for the events, one for the outbox, one
executemany UPDATE for the profile facts, and customer lookups in bulk; no per-event ORM flush.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers import repository as profiles
from domain.customers import service as customers
from domain.db import utcnow
from domain.events import repository
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


def corrected_timestamp(call: SegmentCall, received_at: datetime) -> datetime:
    """Segment's clock-skew correction: receivedAt - (sentAt - timestamp)."""
    if call.timestamp is None:
        return received_at
    if call.sentAt is None:
        return call.timestamp
    return received_at - (call.sentAt - call.timestamp)


@dataclass
class _Facts:
    events: int = 0
    orders: int = 0
    value: Decimal = field(default_factory=lambda: Decimal(0))
    first: datetime | None = None
    last: datetime | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    email: str | None = None
    timezone: str | None = None
    locale: str | None = None

    def add(self, call: Call, at: datetime, purchase: PurchaseRule) -> None:
        self.events += 1
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)
        if isinstance(call, TrackCall) and call.event == purchase.event:
            self.orders += 1
            self.value += purchase.revenue(call.properties)
        context = call.context
        timezone, locale = context.get("timezone"), context.get("locale")
        if isinstance(timezone, str) and is_timezone(timezone):
            self.timezone = timezone
        if isinstance(locale, str):
            self.locale = normalise_locale(locale) or self.locale
        if isinstance(call, IdentifyCall) and call.traits:
            # Traits were validated and normalised by the schema (email, timezone, locale).
            self.traits.update(call.traits)
            self.email = call.traits.get("email", self.email)
            self.timezone = call.traits.get("timezone", self.timezone)
            self.locale = call.traits.get("locale", self.locale)


async def ingest(
    session: AsyncSession,
    calls: Sequence[Call],
    *,
    source_key_id: int | None,
    purchase: PurchaseRule | None = None,
) -> IngestResult:
    """Store the calls of one request. A messageId seen before (in an earlier request, a concurrent
    retry or earlier in this one) is acknowledged and neither stored nor routed again."""
    purchase = purchase or PurchaseRule()
    received_at = utcnow()
    unique: dict[str, tuple[Call, datetime]] = {}
    for call in calls:
        message_id = call.messageId or str(uuid.uuid4())
        if message_id not in unique:
            unique[message_id] = (call, corrected_timestamp(call, received_at))

    keys: dict[tuple[str | None, str | None], datetime] = {}
    aliases: list[tuple[str, str]] = []
    for call, at in unique.values():
        if isinstance(call, AliasCall):
            aliases.append((call.userId, call.previousId))
            key = (call.userId, None)
        else:
            key = (call.userId, call.anonymousId)
        keys[key] = min(at, keys.get(key, at))
    owners = await customers.resolve_many(session, keys, aliases)

    rows = []
    for message_id in sorted(unique):  # one lock order for every writer: no deadlocks between batches
        call, at = unique[message_id]
        rows.append(
            {
                "message_id": message_id,
                "type": call.type,
                "name": call.event_name,
                "customer_id": owners.customer_id(call.userId, call.anonymousId),
                "user_id": call.userId,
                "anonymous_id": call.anonymousId,
                "properties": call.event_properties,
                "traits": call.event_traits,
                "context": call.context,
                "timestamp": at,
                "original_timestamp": call.timestamp,
                "sent_at": call.sentAt,
                "received_at": received_at,
                "source_key_id": source_key_id,
            }
        )
    inserted = await repository.insert_events(session, rows)
    if not inserted:
        return IngestResult(received=len(calls), stored=0)

    stored_ids = {message_id: event_id for event_id, message_id in inserted}
    facts: dict[int, _Facts] = {}
    triggers: list[int] = []
    for message_id, (call, at) in unique.items():  # request order: the last identify wins
        event_id = stored_ids.get(message_id)
        if event_id is None:
            continue
        owner = owners.customer_id(call.userId, call.anonymousId)
        facts.setdefault(owner, _Facts()).add(call, at, purchase)
        if isinstance(call, TrackCall):
            triggers.append(event_id)
    await repository.enqueue(session, sorted(triggers))
    await _apply(session, facts, received_at)
    return IngestResult(received=len(calls), stored=len(inserted))


async def _apply(session: AsyncSession, facts: dict[int, _Facts], now: datetime) -> None:
    postgres = session.bind.dialect.name == "postgresql"
    current: dict[int, dict[str, Any]] = {}
    if not postgres:
        patched = [cid for cid, f in facts.items() if f.traits]
        current = await profiles.traits_of(session, patched) if patched else {}
    rows = []
    for customer_id, f in facts.items():
        row = {
            "p_id": customer_id,
            "p_events": f.events,
            "p_orders": f.orders,
            "p_value": f.value,
            "p_first": f.first,
            "p_last": f.last,
            "p_email": f.email,
            "p_timezone": f.timezone,
            "p_locale": f.locale,
            "p_now": now,
        }
        if postgres:
            row["p_traits"] = f.traits
        else:
            row["p_traits"] = {**current.get(customer_id, {}), **f.traits}
            row["p_has_traits"] = 1 if f.traits else 0
        rows.append(row)
    await profiles.apply_facts(session, rows)
