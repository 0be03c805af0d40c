"""All SQL of the segments area."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Float,
    Select,
    and_,
    any_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    union,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import SelectBase

from domain.broadcasts.models import Broadcast
from domain.customers.models import Customer
from domain.db import UTCDateTime, utcnow
from domain.email.models import Message
from domain.events import repository as events_repository
from domain.events.models import LANE_SEGMENTS, Event, EventOutbox
from domain.journeys.models import Journey, JourneyVersion
from domain.loyalty.models import LoyaltyAccount
from domain.revenue_sql import order_amount
from domain.segments import compiler
from domain.segments import rules as r
from domain.segments.compiler import ids_filter
from domain.segments.evaluate import DEFAULT_LOWEST_TIER, CustomerFacts, EventFact, MessageFact, Score
from domain.segments.models import (
    CustomerScore,
    Segment,
    SegmentMembership,
    SegmentNewcomer,
    SegmentNewSend,
    SegmentRecheck,
    SegmentRefreshState,
    SegmentVersion,
)
from domain.subscriptions.addresses import DIGEST_ENTRIES, forms, stored_digest
from domain.subscriptions.models import Subscription, SubscriptionGroup, Suppression

CHUNK = 5_000
_customers = Customer.__table__
_segments = Segment.__table__


def chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    """Sorted ids in lists of at most CHUNK (one bound parameter each)."""
    ids = sorted(ids)
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name


# -- segments and versions ---------------------------------------------------------------------------
async def get(session: AsyncSession, segment_id: str, *, lock: bool = False) -> Segment | None:
    """``lock``: for a new version, row-locked (PostgreSQL, no-key update: passes that key-share lock
    the segment go on) until the transaction ends, so concurrent saves take turns."""
    if lock:
        return await session.get(
            Segment, segment_id, with_for_update={"key_share": True}, populate_existing=True
        )
    return await session.get(Segment, segment_id)


async def hold(session: AsyncSession, segment_id: str) -> bool:
    """Whether the segment exists, key-share locking its row (PostgreSQL) until the transaction ends:
    a broadcast or journey being saved with it as audience then either commits before a delete of the
    segment looks for its users (and is found), or waits for the delete and finds the segment gone.
    SQLite needs no lock: every transaction there takes the write lock when it begins."""
    stmt = select(Segment.id).where(Segment.id == segment_id)
    if _dialect(session) == "postgresql":
        stmt = stmt.with_for_update(read=True, key_share=True)
    return await session.scalar(stmt) is not None


RULE_CHANGES_LOCK = 7_301_955_118  # any constant; it names this lock in pg_locks


async def lock_rule_changes(session: AsyncSession) -> None:
    """Saves of segment rules take turns until the transaction ends (PostgreSQL): each checks its
    references against the others' rules, and two saves each adding a reference to the other would
    both pass (a cycle), or each stay within the limits and together go beyond them. SQLite runs one
    writer at a time anyway."""
    if _dialect(session) == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(RULE_CHANGES_LOCK)))


async def share_rule_changes(session: AsyncSession) -> None:
    """Evaluations by the current rules take turns with saves (``lock_rule_changes``) until the
    transaction ends (PostgreSQL): a pass evaluating a rule while a new one is saved would enter or
    exit customers by the old rule after the save rebuilt the segment by the new one."""
    if _dialect(session) == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock_shared(RULE_CHANGES_LOCK)))


async def lock_for_delete(session: AsyncSession, segment_id: str) -> Segment | None:
    """The segment, row-locked as its DELETE would (FOR UPDATE, which waits for key-share holders)
    before the delete checks what uses it, so no broadcast or journey can take it up meanwhile."""
    return await session.get(Segment, segment_id, with_for_update=True, populate_existing=True)


async def add(session: AsyncSession, row) -> None:
    session.add(row)
    await session.flush()


async def list_all(session: AsyncSession) -> list[tuple[Segment, dict[str, Any], int]]:
    """Every segment with its current rule and member count, oldest first: one query, however many
    segments there are.

    Each count is a range of ix_segment_memberships_open (open stays by segment, an index-only scan
    on PostgreSQL), asked per segment: grouping every open stay by segment, PostgreSQL read the
    table instead (15 ms at 127 000 open stays, 7 ms now). It still counts every open stay."""
    members = (
        select(func.count())
        .where(SegmentMembership.segment_id == Segment.id, SegmentMembership.exited_at.is_(None))
        .correlate(Segment)
        .scalar_subquery()
    )
    stmt = (
        select(Segment, SegmentVersion.rule, members)
        .join(
            SegmentVersion,
            (SegmentVersion.segment_id == Segment.id) & (SegmentVersion.version == Segment.current_version),
        )
        .order_by(Segment.created_at, Segment.id)
    )
    return [(row[0], row[1], row[2]) for row in await session.execute(stmt)]


async def delete_segment(session: AsyncSession, segment_id: str) -> None:
    """The segment, its versions and its stays. The segment row goes first: a statement opening stays
    holds it key-share locked, so it either finishes before this delete (whose stay delete then sees
    its stays) or waits for it and finds the segment gone (memberships have no foreign key)."""
    await session.execute(delete(Segment).where(Segment.id == segment_id))
    await session.execute(delete(SegmentVersion).where(SegmentVersion.segment_id == segment_id))
    await session.execute(delete(SegmentMembership).where(SegmentMembership.segment_id == segment_id))


async def get_version(session: AsyncSession, segment_id: str, version: int) -> SegmentVersion | None:
    return await session.scalar(
        select(SegmentVersion).where(
            SegmentVersion.segment_id == segment_id, SegmentVersion.version == version
        )
    )


async def versions(session: AsyncSession, segment_id: str) -> list[SegmentVersion]:
    return list(
        await session.scalars(
            select(SegmentVersion)
            .where(SegmentVersion.segment_id == segment_id)
            .order_by(SegmentVersion.version)
        )
    )


async def current_rules(session: AsyncSession) -> list[tuple[str, int, dict[str, Any]]]:
    """(segment id, version, rule JSON) of every segment's current version."""
    stmt = select(Segment.id, SegmentVersion.version, SegmentVersion.rule).join(
        SegmentVersion,
        (SegmentVersion.segment_id == Segment.id) & (SegmentVersion.version == Segment.current_version),
    )
    return [(row[0], row[1], row[2]) for row in await session.execute(stmt)]


async def failing_ids(session: AsyncSession) -> set[str]:
    """Segments the last background pass could not evaluate."""
    return set(await session.scalars(select(Segment.id).where(Segment.refresh_failed_at.is_not(None))))


async def note_refresh(
    session: AsyncSession, segment_id: str, at: datetime | None, error: str | None
) -> None:
    """Record a pass's failure to evaluate a segment (``at``, ``error``) or clear it (None, None)."""
    # A Core update: it neither loads the segment nor moves its updated_at.
    await session.execute(
        update(Segment.__table__)
        .where(Segment.__table__.c.id == segment_id)
        .values(refresh_failed_at=at, refresh_error=error)
    )


async def published_journey_definitions(session: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
    """(journey id, definition) of every version of the published or paused journeys: customers may
    still be running an older version."""
    stmt = (
        select(JourneyVersion.journey_id, JourneyVersion.definition)
        .join(Journey, Journey.id == JourneyVersion.journey_id)
        .where(Journey.status.in_(("published", "paused")))
    )
    return [(row[0], row[1]) for row in await session.execute(stmt)]


async def unfinished_broadcast_audiences(session: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
    """(broadcast id, audience) of every broadcast still to send (starting, scheduled, running or
    paused): it reads its segment's members page by page as it runs."""
    stmt = select(Broadcast.id, Broadcast.audience).where(
        Broadcast.status.in_(("starting", "scheduled", "running", "paused"))
    )
    return [(row[0], row[1]) for row in await session.execute(stmt.order_by(Broadcast.id))]


# -- evaluation ------------------------------------------------------------------------------------------
async def matching_ids(session: AsyncSession, query: Select) -> set[int]:
    conn = await session.connection()
    return set((await conn.execute(query)).scalars().all())


async def scalar(session: AsyncSession, query: Select):
    return await session.scalar(query)


async def erased_address_customers(session: AsyncSession) -> frozenset[int]:
    """Customers whose address the suppression list keeps only as an erased person's digest: by the
    list's few digest entries (a partial index) and the digest stored with each address (its index)."""
    entries = await session.scalars(select(Suppression.address).where(text(DIGEST_ENTRIES)))
    digests = {d for d in map(stored_digest, entries) if d is not None}
    found: set[int] = set()
    for part in chunks(digests):
        found.update(await session.scalars(select(Customer.id).where(Customer.email_sha256.in_(part))))
    return frozenset(found)


async def customer_facts(
    session: AsyncSession, customer_id: int, event_names: set[str], *, lowest_tier: str = DEFAULT_LOWEST_TIER
) -> CustomerFacts | None:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        return None
    facts = CustomerFacts(
        traits=dict(customer.traits or {}),
        timezone=customer.timezone,
        email=customer.email,
        unsubscribed_all=customer.unsubscribed_all_at is not None,
    )
    if event_names:
        rows = await session.execute(
            select(Event.name, Event.properties, Event.timestamp).where(
                Event.customer_id == customer_id, Event.name.in_(event_names)
            )
        )
        facts.events = [EventFact(name, props or {}, ts) for name, props, ts in rows]
    rows = await session.execute(
        select(Message.template_id, Message.status, func.coalesce(Message.sent_at, Message.created_at)).where(
            Message.customer_id == customer_id
        )
    )
    facts.messages = [MessageFact(template, status, at) for template, status, at in rows]
    score = await session.get(CustomerScore, customer_id)
    if score is not None:
        facts.score = Score(score.tier, score.recency, score.frequency, score.monetary)
    if customer.email:
        # Named, or (an erased person's entry) by its digest, as the send-time check.
        facts.suppressed = (
            await session.scalar(
                select(Suppression.id).where(Suppression.address.in_(forms(customer.email))).limit(1)
            )
        ) is not None
    rows = await session.execute(
        select(Subscription.group_id, Subscription.subscribed).where(Subscription.customer_id == customer_id)
    )
    facts.choices = {group: bool(chosen) for group, chosen in rows}
    facts.opt_in_groups = frozenset(
        (await session.scalars(select(SubscriptionGroup.id).where(SubscriptionGroup.opt_in.is_(True)))).all()
    )
    account = await session.get(LoyaltyAccount, customer_id)
    facts.loyalty_tier = account.tier if account is not None else lowest_tier
    facts.loyalty_balance = account.balance if account is not None else 0
    return facts


# -- membership --------------------------------------------------------------------------------------
async def current_members(session: AsyncSession, segment_id: str) -> set[int]:
    table = SegmentMembership.__table__
    return await matching_ids(
        session,
        select(table.c.customer_id).where(table.c.segment_id == segment_id, table.c.exited_at.is_(None)),
    )


def _insert(dialect: str, table):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table)


# Customers to re-evaluate: ids, or a SELECT of customer ids (the customers of a batch's events).
Scope = set[int] | SelectBase


def _scopes(scope: Scope) -> Iterable[list[int] | SelectBase]:
    return chunks(scope) if isinstance(scope, set) else [scope]


async def enter_matching(
    session: AsyncSession,
    segment_id: str,
    rule: r.Rule,
    scope: Scope,
    at: datetime,
    *,
    lowest_tier: str,
    erased: frozenset[int],
    record: tuple[str, dict],
) -> list[int]:
    """Start a stay for the customers of ``scope`` outside the segment who match ``rule`` at ``at``,
    and record a ``record`` (name, properties) event for each: the evaluation, the comparison with
    stored membership and the writes are one statement on PostgreSQL. Returns those entered
    (customers deleted meanwhile simply drop out)."""
    dialect = _dialect(session)
    entered: list[int] = []
    for part in _scopes(scope):
        matching = compiler.members_query(rule, dialect, at, part, lowest_tier=lowest_tier, erased=erased)
        # Members already in are left out before their rows are locked (the insert would skip them).
        who = _customers_locked(
            dialect, _customers.c.id.in_(matching.correlate(None)), ~_in_segment(segment_id, _customers.c.id)
        )
        if dialect != "postgresql":
            opened = _open_stays(dialect, segment_id, who.subquery("who"), at)
            changed = list((await session.execute(opened)).scalars())
            await record_events(session, *record, changed, at)
            entered += changed
            continue
        # The customers' rows are read once: locked for the stays, copied into their events.
        who_cte = who.cte("who")
        changed_cte = _open_stays(dialect, segment_id, who_cte, at).cte("changed")
        recorded = _segment_events(
            *record, at, select(who_cte).where(who_cte.c.id.in_(select(changed_cte.c.customer_id)))
        )
        queued = _queued(recorded.cte("recorded").c.id, at).cte("queued")
        entered += (await session.execute(select(changed_cte.c.customer_id).add_cte(queued))).scalars()
    return entered


def _in_segment(segment_id: str, customer_id: ColumnElement[int]) -> ColumnElement[bool]:
    """Whether the customer has an open stay in the segment (the unique index on open stays)."""
    table = SegmentMembership.__table__
    return (
        select(table.c.id)
        .where(
            table.c.segment_id == segment_id, table.c.customer_id == customer_id, table.c.exited_at.is_(None)
        )
        .exists()
    )


def _customers_locked(dialect: str, *where: ColumnElement[bool]) -> Select:
    """The customers ``where`` selects (id, user_id, anonymous_id), key-share locked on PostgreSQL:
    what is written for them (stays, events; no foreign keys) cannot be overtaken by their deletion,
    which deletes those rows after the customer's. SQLite serialises writers anyway."""
    who = select(_customers.c.id, _customers.c.user_id, _customers.c.anonymous_id).where(*where)
    return who.with_for_update(read=True, key_share=True, of=_customers) if dialect == "postgresql" else who


def _open_stays(dialect: str, segment_id: str, who, at: datetime):
    """INSERT of a stay in the segment for each customer of ``who`` not already in it, returning
    their ids. The segment row is key-share locked (once, not per stay), so a segment deleted
    meanwhile gets no stays."""
    table = SegmentMembership.__table__
    segment = (
        select(_segments.c.id)
        .where(_segments.c.id == segment_id)
        .with_for_update(read=True, key_share=True)
        .subquery("segment")
    )
    source = select(segment.c.id, who.c.id, literal(at, table.c.entered_at.type)).select_from(
        who.join(segment, true())
    )
    # Members already in are skipped by the unique index on open stays, and not returned.
    return (
        _insert(dialect, table)
        .from_select(["segment_id", "customer_id", "entered_at"], source)
        .on_conflict_do_nothing(
            index_elements=["segment_id", "customer_id"], index_where=table.c.exited_at.is_(None)
        )
        .returning(table.c.customer_id)
    )


async def exit_unmatched(
    session: AsyncSession,
    segment_id: str,
    rule: r.Rule,
    scope: Scope,
    at: datetime,
    *,
    lowest_tier: str,
    erased: frozenset[int],
    record: tuple[str, dict],
) -> list[int]:
    """End the stay of the customers of ``scope`` inside the segment who no longer match ``rule`` at
    ``at``, and record a ``record`` event for each; one statement on PostgreSQL. Returns those
    exited."""
    table = SegmentMembership.__table__
    dialect = _dialect(session)
    exited: list[int] = []
    for part in _scopes(scope):
        stmt = (
            update(table)
            .where(
                _open_stays_of(dialect, segment_id, part),
                ~compiler.holds(
                    rule, dialect, at, table.c.customer_id, lowest_tier=lowest_tier, erased=erased
                ),
            )
            .values(exited_at=at)
            .returning(table.c.customer_id)
        )
        exited += await _change_and_record(session, stmt, record, at)
    return exited


def _open_stays_of(dialect: str, segment_id: str, scope: list[int] | SelectBase) -> ColumnElement[bool]:
    """The open stays in the segment of the customers of ``scope``.

    On PostgreSQL the stays are looked up customer by customer (an array of their ids, then the primary
    key), whatever the planner believes of the membership table: right after a segment is built its
    statistics can claim a handful of rows, and a plan driven by the membership table would then read
    every stay of the segment once per touched customer."""
    table = SegmentMembership.__table__
    if dialect != "postgresql":
        return and_(
            table.c.segment_id == segment_id,
            table.c.exited_at.is_(None),
            compiler.in_scope(dialect, table.c.customer_id, scope),
        )
    touched = (compiler.ids_select(dialect, scope) if isinstance(scope, list) else scope).subquery("touched")
    stay = table.alias("stay")
    stay_id = (
        select(stay.c.id)
        .where(
            stay.c.segment_id == segment_id, stay.c.customer_id == touched.c[0], stay.c.exited_at.is_(None)
        )
        .scalar_subquery()
    )
    stay_ids = select(func.array_agg(stay_id)).select_from(touched).scalar_subquery()
    # The ids are computed once, before any row lock. An UPDATE that waited for a concurrent pass
    # closing the same stay rechecks only this outer condition against the row that pass left, so it
    # must say "still open" itself: else the stay is closed twice (and its exit recorded twice).
    return and_(
        table.c.id == any_(cast(stay_ids, ARRAY(BigInteger))),  # the cast makes it an array, not a set
        table.c.exited_at.is_(None),
    )


async def _change_and_record(
    session: AsyncSession, change, record: tuple[str, dict], at: datetime
) -> list[int]:
    """Run a membership ``change`` returning customer ids, and record an event for each of them. On
    PostgreSQL the change, the events and their routing queue entries are one statement."""
    dialect = _dialect(session)
    if dialect != "postgresql":
        changed = list((await session.execute(change)).scalars().all())
        await record_events(session, *record, changed, at)
        return changed
    changed_cte = change.cte("changed")
    who = _customers_locked(dialect, _customers.c.id.in_(select(changed_cte.c.customer_id)))
    queued = _queued(_segment_events(*record, at, who).cte("recorded").c.id, at).cte("queued")
    stmt = select(changed_cte.c.customer_id).add_cte(queued)
    return list((await session.execute(stmt)).scalars().all())


async def open_memberships(
    session: AsyncSession, segment_id: str, customer_ids: set[int], at: datetime
) -> list[int]:
    """Start a stay for each customer not already in; returns those actually entered (customers
    deleted meanwhile simply drop out)."""
    dialect = _dialect(session)
    entered: list[int] = []
    for chunk in chunks(customer_ids):
        who = _customers_locked(dialect, ids_filter(dialect, _customers.c.id, chunk)).subquery("who")
        entered.extend((await session.execute(_open_stays(dialect, segment_id, who, at))).scalars().all())
    return entered


async def close_memberships(
    session: AsyncSession, segment_id: str, customer_ids: set[int], at: datetime
) -> list[int]:
    table = SegmentMembership.__table__
    exited: list[int] = []
    for chunk in chunks(customer_ids):
        stmt = (
            update(table)
            .where(_open_stays_of(_dialect(session), segment_id, chunk))
            .values(exited_at=at)
            .returning(table.c.customer_id)
        )
        exited.extend((await session.execute(stmt)).scalars().all())
    return exited


def _segment_events(name: str, properties: dict, at: datetime, who: Select):
    """INSERT of one ``name`` event for each customer of ``who`` (a SELECT of id, user_id and
    anonymous_id: _customers_locked), returning the event ids."""
    # Unique per segment, customer, kind and moment: a repeated pass cannot store the same change twice.
    prefix = f"segment/{properties.get('segment_id')}/{name}/{at.isoformat()}/"
    return events_repository.track_for_each(
        who.subquery("recipient"),
        message_id_prefix=prefix,
        name=name,
        properties=properties,
        context={},
        at=at,
    )


def _queued(event_id, at: datetime, *where: ColumnElement[bool]):
    """INSERT of routing queue entries for the events whose ids ``event_id`` (a column) selects."""
    outbox = EventOutbox.__table__
    # Their own routing lane: a refresh may queue thousands at once (ordinary events keep flowing).
    source = select(event_id, literal(at, outbox.c.created_at.type), literal(LANE_SEGMENTS)).where(*where)
    return insert(outbox).from_select(["event_id", "created_at", "lane"], source)


async def record_events(
    session: AsyncSession, name: str, properties: dict, customer_ids: list[int], at: datetime
) -> None:
    """Store ``name`` events for these customers and queue them for the router (journey triggers)."""
    dialect = _dialect(session)
    for chunk in chunks(customer_ids):
        who = _customers_locked(dialect, ids_filter(dialect, _customers.c.id, chunk))
        recorded = _segment_events(name, properties, at, who)
        if dialect == "postgresql":
            await session.execute(_queued(recorded.cte("recorded").c.id, at))
            continue
        ids = list((await session.execute(recorded)).scalars().all())
        if ids:
            events = Event.__table__
            await session.execute(_queued(events.c.id, at, ids_filter(dialect, events.c.id, ids)))


async def members_page(session: AsyncSession, segment_id: str, after: int, limit: int) -> list[tuple]:
    stmt = (
        select(SegmentMembership.customer_id, Customer.user_id, Customer.email, SegmentMembership.entered_at)
        .join(Customer, Customer.id == SegmentMembership.customer_id)
        .where(
            SegmentMembership.segment_id == segment_id,
            SegmentMembership.exited_at.is_(None),
            SegmentMembership.customer_id > after,
        )
        .order_by(SegmentMembership.customer_id)
        .limit(limit)
    )
    return list(await session.execute(stmt))


async def stays_of(session: AsyncSession, customer_id: int, limit: int) -> list[tuple]:
    """The customer's stays in segments (current ones first, then the latest ended), with the names."""
    stmt = (
        select(
            SegmentMembership.segment_id,
            Segment.name,
            SegmentMembership.entered_at,
            SegmentMembership.exited_at,
        )
        .join(Segment, Segment.id == SegmentMembership.segment_id)
        .where(SegmentMembership.customer_id == customer_id)
        .order_by(
            SegmentMembership.exited_at.is_not(None),
            SegmentMembership.exited_at.desc(),
            SegmentMembership.entered_at.desc(),
        )
        .limit(limit)
    )
    return list(await session.execute(stmt))


async def member_count(session: AsyncSession, segment_id: str) -> int:
    return await session.scalar(
        select(func.count()).where(
            SegmentMembership.segment_id == segment_id, SegmentMembership.exited_at.is_(None)
        )
    )


async def customers_brief(session: AsyncSession, ids: list[int]) -> list[tuple]:
    if not ids:
        return []
    stmt = (
        select(Customer.id, Customer.user_id, Customer.email)
        .where(Customer.id.in_(ids))
        .order_by(Customer.id)
    )
    return list(await session.execute(stmt))


# -- background passes -----------------------------------------------------------------------------------
async def state(session: AsyncSession, name: str) -> SegmentRefreshState:
    found = await session.get(SegmentRefreshState, name, with_for_update=_dialect(session) == "postgresql")
    if found is None:
        found = SegmentRefreshState(name=name, cursor=0, pending=[], ran_at=None)
        session.add(found)
        await session.flush()
    return found


async def has_work(session: AsyncSession, name: str) -> bool:
    """Whether a refresher pass would find anything: events past the cursor, skipped ids still looked
    for, customers queued for a recheck or new. Reads without locking, so an idle pass writes nothing (it
    runs twice a second)."""
    table = SegmentRefreshState.__table__
    progress = (
        await session.execute(select(table.c.cursor, table.c.pending).where(table.c.name == name))
    ).first()
    if progress is None or progress.pending:
        return True
    newer = select(Event.__table__.c.id).where(Event.__table__.c.id > progress.cursor).exists()
    queued = [select(t.c.customer_id).exists() for t in (SegmentRecheck.__table__, SegmentNewcomer.__table__)]
    return bool(await session.scalar(select(or_(newer, *queued))))


@dataclass(frozen=True)
class EventBatch:
    """The events of one refresher pass: ids in (``after``, ``upto``], plus ``retried`` earlier ids
    (skipped by a previous pass while their transaction was open)."""

    after: int
    upto: int
    fresh: int  # how many ids of (after, upto] exist
    retried: tuple[int, ...] = ()
    kinds: frozenset[tuple[str, str | None]] = frozenset()  # the (type, name) of the batch's events

    @property
    def size(self) -> int:
        return self.fresh + len(self.retried)

    @property
    def has_gaps(self) -> bool:
        return self.fresh < self.upto - self.after

    def where(self, dialect: str) -> ColumnElement[bool]:
        events = Event.__table__
        fresh = and_(events.c.id > self.after, events.c.id <= self.upto)
        return or_(fresh, ids_filter(dialect, events.c.id, list(self.retried))) if self.retried else fresh


async def event_batch(session: AsyncSession, cursor: int, retry_ids: list[int], limit: int) -> EventBatch:
    """The next ``limit`` events past the cursor, and which of ``retry_ids`` exist now. Only counts
    and the kinds of event travel: the refresh statements read the events where they are."""
    events = Event.__table__
    conn = await session.connection()
    window = (
        select(events.c.id, events.c.type, events.c.name)
        .where(events.c.id > cursor)
        .order_by(events.c.id)
        .limit(limit)
        .subquery()
    )
    kinds = select(window.c.type, window.c.name, func.count(), func.max(window.c.id))
    rows = (await conn.execute(kinds.group_by(window.c.type, window.c.name))).all()
    fresh, upto = sum(row[2] for row in rows), max((row[3] for row in rows), default=cursor)
    retried: list[tuple] = []
    if retry_ids:
        found = select(events.c.id, events.c.type, events.c.name).where(
            ids_filter(_dialect(session), events.c.id, retry_ids)
        )
        retried = sorted((await conn.execute(found)).all())
    return EventBatch(
        cursor,
        upto,
        fresh,
        tuple(row[0] for row in retried),
        frozenset((row[0], row[1]) for row in rows) | {(row[1], row[2]) for row in retried},
    )


async def event_ids(session: AsyncSession, batch: EventBatch) -> list[int]:
    """The ids of (after, upto] that exist, ascending (to find the gaps)."""
    events = Event.__table__
    stmt = (
        select(events.c.id).where(events.c.id > batch.after, events.c.id <= batch.upto).order_by(events.c.id)
    )
    return list((await (await session.connection()).execute(stmt)).scalars().all())


def batch_customers(
    dialect: str, batch: EventBatch, signal: ColumnElement[bool] | None, also: set[int]
) -> Scope:
    """Customers with an event in ``batch`` for which ``signal`` holds, and the customers ``also``."""
    if signal is None:
        return also
    events = Event.__table__
    # Never correlated: the statements it is used in also read the events table.
    touched = select(events.c.customer_id).where(batch.where(dialect), signal).correlate(None)
    return union(touched, compiler.ids_select(dialect, sorted(also))) if also else touched


async def _queue(session: AsyncSession, table, customer_ids: Iterable[int]) -> None:
    rows = [{"customer_id": i, "queued_at": utcnow()} for i in sorted(set(customer_ids))]
    if rows:
        await session.execute(_insert(_dialect(session), table).values(rows).on_conflict_do_nothing())


async def move_stays(session: AsyncSession, source_id: int, target_id: int) -> None:
    """A merge: ``source``'s stays become ``target``'s, as its events (its Segment Entered among them)
    do, so the recheck that follows closes with a Segment Exited a stay the merged profile no longer
    matches, and one it matches keeps its entry time. Where both are in a segment, ``target``'s stay
    is kept. The caller holds both customers locked, so no pass opens a stay for either meanwhile."""
    stays = SegmentMembership.__table__
    theirs = stays.alias("theirs")
    both_in = (
        select(theirs.c.id)
        .where(
            theirs.c.customer_id == target_id,
            theirs.c.segment_id == stays.c.segment_id,
            theirs.c.exited_at.is_(None),
        )
        .exists()
    )
    open_stay = and_(stays.c.customer_id == source_id, stays.c.exited_at.is_(None))
    await session.execute(delete(stays).where(open_stay, both_in))
    await session.execute(update(stays).where(stays.c.customer_id == source_id).values(customer_id=target_id))


async def queue_rechecks(session: AsyncSession, customer_ids: Iterable[int]) -> None:
    """Have the next refresher pass re-evaluate these customers against every segment."""
    await _queue(session, SegmentRecheck.__table__, customer_ids)


async def queue_newcomers(session: AsyncSession, customer_ids: Iterable[int]) -> None:
    """Customers just created (SegmentNewcomer): the next pass checks them against the segments a
    blank profile matches."""
    await _queue(session, SegmentNewcomer.__table__, customer_ids)


async def _take(session: AsyncSession, table, limit: int) -> set[int]:
    oldest = select(table.c.customer_id).order_by(table.c.customer_id).limit(limit)
    taken = delete(table).where(table.c.customer_id.in_(oldest)).returning(table.c.customer_id)
    return set((await session.execute(taken)).scalars().all())


async def take_rechecks(session: AsyncSession, limit: int) -> set[int]:
    """Remove and return up to ``limit`` queued customers (in the pass's transaction: a pass that fails
    leaves them queued)."""
    return await _take(session, SegmentRecheck.__table__, limit)


async def take_newcomers(session: AsyncSession, limit: int) -> set[int]:
    """As take_rechecks, for the queue of new customers."""
    return await _take(session, SegmentNewcomer.__table__, limit)


async def customers_with_events_between(
    session: AsyncSession, name: str, start: datetime, end: datetime
) -> set[int]:
    stmt = (
        select(Event.customer_id)
        .where(Event.name == name, Event.timestamp >= start, Event.timestamp < end)
        .distinct()
    )
    return set((await session.scalars(stmt)).all())


async def queue_sends(session: AsyncSession, message_keys: list[str]) -> None:
    """Queue the customers of these messages, just recorded as sent, for the window-edge pass (in the
    send's own transaction: the pass sees them exactly when the send commits)."""
    if not message_keys:
        return
    m = Message.__table__.c
    sent = select(m.customer_id, literal(utcnow(), UTCDateTime())).where(
        m.idempotency_key.in_(message_keys), m.customer_id.is_not(None), m.status == "sent"
    )
    sends = SegmentNewSend.__table__
    await session.execute(sends.insert().from_select(["customer_id", "queued_at"], sent))


async def take_sends(session: AsyncSession) -> set[int]:
    """Remove and return every queued send's customer (in the pass's transaction: a pass that fails
    leaves them queued; a send committing meanwhile stays for the next pass)."""
    sends = SegmentNewSend.__table__
    taken = delete(sends).returning(sends.c.customer_id)
    return set((await session.execute(taken)).scalars().all())


async def customers_with_messages_between(session: AsyncSession, start: datetime, end: datetime) -> set[int]:
    sent = func.coalesce(Message.sent_at, Message.created_at)
    stmt = (
        select(Message.customer_id)
        .where(Message.customer_id.is_not(None), Message.status == "sent", sent >= start, sent < end)
        .distinct()
    )
    return set((await session.scalars(stmt)).all())


# -- value tiers and RFM ------------------------------------------------------------------------------
TIER_SHARES = (("key", 0.01), ("major", 0.05), ("ordinary", 0.20))


async def recompute_scores(
    session: AsyncSession, purchase_event: str, revenue_property: str, now: datetime
) -> list[int]:
    """Recompute ltv, tier and RFM for every customer in one statement; returns customers whose
    scores changed (only those rows are written)."""
    total = await session.scalar(select(func.count()).select_from(Customer))
    if not total:
        return []
    events = Event.__table__
    amount = order_amount(_dialect(session), events.c.properties, revenue_property)
    purchases = (
        select(
            events.c.customer_id,
            # To the cent, as the profile keeps it (and the same sum whatever the order of the rows).
            cast(func.round(func.sum(amount), 2), Float).label("ltv"),
            func.count().label("orders"),
            func.max(events.c.timestamp).label("last_order_at"),
        )
        .where(events.c.name == purchase_event)
        .group_by(events.c.customer_id)
        .subquery("purchases")
    )
    customers = Customer.__table__
    ltv = func.coalesce(purchases.c.ltv, 0.0)
    orders = func.coalesce(purchases.c.orders, 0)
    buyer = purchases.c.customer_id.is_not(None)
    # Customers who spent as much or more, ties counted together (the window's frame takes in the
    # row's peers): customers who spent alike share a tier, the one the last of them reaches, so a
    # tier never holds more than its share and nobody is ahead of an equal by customer id.
    reached = func.count().over(order_by=ltv.desc())
    tier_cases = [(ltv <= 0, literal("small"))]
    tier_cases += [(reached <= math.ceil(total * share), literal(name)) for name, share in TIER_SHARES]

    def quintile(column):
        return case((buyer, func.ntile(5).over(partition_by=buyer, order_by=(column, customers.c.id))))

    ranked = (
        select(
            customers.c.id.label("customer_id"),
            ltv.label("ltv"),
            orders.label("order_count"),
            purchases.c.last_order_at,
            case(*tier_cases, else_=literal("small")).label("tier"),
            purchases.c.orders.label("orders"),
            purchases.c.ltv.label("spent"),
            quintile(purchases.c.last_order_at).label("recency"),
            quintile(purchases.c.orders).label("frequency"),
            quintile(purchases.c.ltv).label("monetary"),
        )
        .select_from(customers.outerjoin(purchases, purchases.c.customer_id == customers.c.id))
        .subquery("ranked")
    )

    def shared(score: str, value: str):
        """Buyers alike in ``value`` share the lowest quintile any of them falls in: a quintile is a
        fifth of the buyers, so a run of equals (most customers order once) can span several, which
        would score equals apart by customer id. Non-buyers have no value and no score."""
        return func.min(ranked.c[score]).over(partition_by=ranked.c[value])

    scored = select(
        ranked.c.customer_id,
        ranked.c.ltv,
        ranked.c.order_count,
        ranked.c.last_order_at,
        ranked.c.tier,
        shared("recency", "last_order_at").label("recency"),
        shared("frequency", "orders").label("frequency"),
        shared("monetary", "spent").label("monetary"),
        literal(now, CustomerScore.__table__.c.computed_at.type).label("computed_at"),
    ).where(true())  # SQLite needs a WHERE before ON CONFLICT in INSERT ... SELECT
    table = CustomerScore.__table__
    columns = [
        "customer_id",
        "ltv",
        "order_count",
        "last_order_at",
        "tier",
        "recency",
        "frequency",
        "monetary",
        "computed_at",
    ]
    stmt = _insert(_dialect(session), table).from_select(columns, scored)
    changing = [c for c in columns if c not in ("customer_id", "computed_at")]
    stmt = stmt.on_conflict_do_update(
        index_elements=["customer_id"],
        set_={c: stmt.excluded[c] for c in columns if c != "customer_id"},
        where=or_(*[table.c[c].is_distinct_from(stmt.excluded[c]) for c in changing]),
    ).returning(table.c.customer_id)
    return list((await session.execute(stmt)).scalars().all())


async def score(session: AsyncSession, customer_id: int) -> CustomerScore | None:
    return await session.get(CustomerScore, customer_id)


async def tier_summary(session: AsyncSession) -> list[tuple]:
    """Per tier: customers, min and max ltv, revenue."""
    stmt = select(
        CustomerScore.tier,
        func.count(),
        func.min(CustomerScore.ltv),
        func.max(CustomerScore.ltv),
        func.coalesce(func.sum(CustomerScore.ltv), 0.0),
    ).group_by(CustomerScore.tier)
    return list(await session.execute(stmt))


# -- names the rules refer to ---------------------------------------------------------------------------
async def subscription_group_ids(session: AsyncSession) -> set[str]:
    return set((await session.scalars(select(SubscriptionGroup.id))).all())
