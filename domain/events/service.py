"""Ingestion: store a request's Segment calls durably, once, and queue the triggers for routing.

A request becomes a ``Submission`` (its validated calls, when it was received, from which source). The
``Ingestor`` (domain/events/ingestor.py) stores the submissions of concurrent requests together;
``ingest`` stores some in the caller's own transaction. PostgreSQL stores a group in one statement
(``postgres_batch``); SQLite goes step by step below, each step one JSON-fed statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers import repository as profiles
from domain.customers import service as customers
from domain.dates import is_zone
from domain.db import utcnow
from domain.events import postgres_batch, sqlite_batch
from domain.events.models import message_ref_of
from domain.events.schemas import (
    AliasCall,
    Call,
    IdentifyCall,
    SegmentCall,
    TrackCall,
    dump_calls,
    normalise_locale,
)
from domain.revenue import amount as order_amount


@dataclass(frozen=True)
class PurchaseRule:
    """Which track event is an order, and which of its properties adds to lifetime value."""

    event: str = "Order Completed"
    revenue_property: str = "revenue"

    def revenue(self, properties: dict[str, Any]) -> Decimal:
        """The order's amount (domain.revenue.amount); the PostgreSQL statement applies the same rule
        in SQL."""
        return order_amount(properties.get(self.revenue_property))


@dataclass
class IngestResult:
    received: int
    stored: int

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


@dataclass
class Submission:
    """One request's validated calls, as they wait to be stored. A batch's ``context`` and ``sent_at``
    apply to each call that lacks its own."""

    calls: Sequence[Call]
    source_key_id: int | None
    purchase: PurchaseRule = field(default_factory=PurchaseRule)
    context: dict[str, Any] | None = None
    sent_at: datetime | None = None
    received_at: datetime = field(default_factory=utcnow)
    _calls_json: bytes | None = field(default=None, init=False, repr=False)

    def dumped_calls(self) -> bytes:
        """The calls as JSON (what ``document`` embeds), made once. Raises ``TypeError`` when a call's
        JSON nests deeper than the encoder writes (the request is refused before it is queued)."""
        if self._calls_json is None:
            self._calls_json = dump_calls(list(self.calls))
        return self._calls_json

    @property
    def links_identities(self) -> bool:
        """Whether a call may merge or claim profiles (an alias, or a call carrying both ids)."""
        return any(
            c.type == "alias" or (c.userId is not None and c.anonymousId is not None) for c in self.calls
        )

    def document(self, pos: int) -> bytes:
        """This submission as the PostgreSQL statement reads it: the calls as validated, with what
        applies to all of them, and the time zone and locale each call's context names when valid
        (Python knows the IANA names)."""
        head = orjson.dumps(
            {
                "pos": pos,
                "received_at": self.received_at,
                "source_key_id": self.source_key_id,
                "sent_at": self.sent_at,
                "context": self.context or None,
                "purchase_event": self.purchase.event,
                "revenue_property": self.purchase.revenue_property,
                "hints": self._context_hints() or None,
            },
            option=orjson.OPT_NAIVE_UTC,
        )
        return head[:-1] + b',"calls":' + self.dumped_calls() + b"}"

    def _context_hints(self) -> dict[str, list[str | None]]:
        shared = self.context or {}
        shared_names_one = "timezone" in shared or "locale" in shared
        hints = {}
        for seq, call in enumerate(self.calls, 1):
            context = call.context
            # Most contexts name neither: a membership test is the cheapest way to skip them.
            if not shared_names_one and "timezone" not in context and "locale" not in context:
                continue
            timezone = context.get("timezone", shared.get("timezone"))
            locale = context.get("locale", shared.get("locale"))
            if timezone is None and locale is None:
                continue
            timezone = timezone if is_zone(timezone) else None
            locale = normalise_locale(locale) if isinstance(locale, str) else None
            if timezone or locale:
                hints[str(seq)] = [timezone, locale]
        return hints

    def applied(self) -> list[Call]:
        """The calls with the batch's context and sentAt applied (the SQLite path works on these)."""
        if not self.context and self.sent_at is None:
            return list(self.calls)
        shared = self.context or {}
        return [
            call.model_copy(
                update={"context": {**shared, **call.context}, "sentAt": call.sentAt or self.sent_at}
            )
            for call in self.calls
        ]


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


Key = tuple[str | None, str | None]


def _unique(calls: Sequence[Call], received_at: datetime) -> dict[str, tuple[Call, datetime]]:
    """The calls by messageId (first occurrence wins), each with its corrected timestamp."""
    unique: dict[str, tuple[Call, datetime]] = {}
    for call in calls:
        message_id = call.messageId or str(uuid.uuid4())
        if message_id not in unique:
            unique[message_id] = (call, corrected_timestamp(call, received_at))
    return unique


def identities(submissions: Sequence[Submission]) -> tuple[dict[Key, datetime], list[tuple[str, str]]]:
    """Every (userId, anonymousId) the submissions' calls carry, with the earliest time each was seen
    (a new profile's first-seen date), and the (userId, previousId) of their aliases."""
    keys: dict[Key, datetime] = {}
    aliases: list[tuple[str, str]] = []
    for submission in submissions:
        for call, at in _unique(submission.applied(), submission.received_at).values():
            if isinstance(call, AliasCall):
                aliases.append((call.userId, call.previousId))
                key: Key = (call.userId, None)
            else:
                key = (call.userId, call.anonymousId)
            keys[key] = min(at, keys.get(key, at))
    return keys, aliases


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
    submission = Submission(calls, source_key_id, purchase or PurchaseRule())
    if session.bind.dialect.name == "postgresql":
        await customers.resolve_many(session, *identities([submission]))
        results = await store_on_postgres(session, [submission], own_connection=False)
        if results is None:  # only if a profile was erased meanwhile
            raise RuntimeError("a customer these events name was deleted while they were stored")
        return results[0]
    return (await store_on_sqlite(session, [submission]))[0]


async def store_on_postgres(
    session: AsyncSession, submissions: Sequence[Submission], *, own_connection: bool = True
) -> list[IngestResult] | None:
    """Store the submissions with one statement; ``None``, having stored nothing, when a customer they
    name does not exist yet (resolve the identities first)."""
    document = b"[" + b",".join(s.document(pos) for pos, s in enumerate(submissions)) + b"]"
    stored = await postgres_batch.store_group(session, document.decode(), own_connection=own_connection)
    if stored is None:
        return None
    return [IngestResult(len(s.calls), stored.get(pos, 0)) for pos, s in enumerate(submissions)]


# --- SQLite, step by step -------------------------------------------------------------------------


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
        "timezone": timezone if is_zone(timezone) else None,
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
    """A request's contributions to one customer, added up."""

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


def _rows(submissions: Sequence[Submission], owners: customers.Resolution) -> list[dict[str, Any]]:
    """One row per new messageId, in request order (the first call of a messageId wins; the last
    identify wins the traits)."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for pos, submission in enumerate(submissions):
        for message_id, (call, at) in _unique(submission.applied(), submission.received_at).items():
            if message_id in seen:
                continue
            seen.add(message_id)
            rows.append(
                {
                    "pos": pos,
                    "message_id": message_id,
                    "type": call.type,
                    "name": call.event_name,
                    "customer_id": owners.customer_id(call.userId, call.anonymousId),
                    "user_id": call.userId,
                    "anonymous_id": call.anonymousId,
                    "properties": (properties := call.event_properties),
                    "message_ref": message_ref_of(properties),
                    "traits": call.event_traits,
                    "context": call.context,
                    "timestamp": at,
                    "original_timestamp": utc(call.timestamp),
                    "sent_at": utc(call.sentAt),
                    "received_at": submission.received_at,
                    "source_key_id": submission.source_key_id,
                    **_contribution(call, submission.purchase),
                }
            )
    return rows


async def store_on_sqlite(session: AsyncSession, submissions: Sequence[Submission]) -> list[IngestResult]:
    """Store the submissions in the caller's transaction, in order (SQLite has one writer at a time,
    so merging traits in Python is safe)."""
    owners = await customers.resolve_many(session, *identities(submissions))
    rows = _rows(submissions, owners)
    inserted = dict(await sqlite_batch.insert_events(session, rows))
    facts: dict[int, _Facts] = {}
    stored = [0] * len(submissions)
    track_ids = []
    for row in rows:
        event_id = inserted.get(row["message_id"])
        if event_id is None:
            continue
        stored[row["pos"]] += 1
        facts.setdefault(row["customer_id"], _Facts()).add(row["timestamp"], row)
        if row["type"] == "track":
            track_ids.append(event_id)
    now = max(s.received_at for s in submissions)
    await sqlite_batch.enqueue(session, sorted(track_ids), now)
    await _apply(session, facts, now)
    return [IngestResult(len(s.calls), n) for s, n in zip(submissions, stored, strict=True)]


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
        if f.traits:
            row["traits"] = {**current.get(customer_id, {}), **f.traits}
        rows.append(row)
    await sqlite_batch.apply_facts(session, rows, now)
