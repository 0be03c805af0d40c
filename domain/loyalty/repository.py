"""All SQL of the loyalty area."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, literal, literal_column, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers.models import Customer
from domain.db import insert_ignoring_conflicts
from domain.events.models import Event, EventOutbox
from domain.loyalty.models import (
    LoyaltyAccount,
    LoyaltyCursor,
    LoyaltyEntry,
    LoyaltyFoldedKey,
    LoyaltyLot,
    LoyaltyProgram,
    LoyaltyTierChange,
)

PROGRAM_ID = 1
EVENTS_CURSOR = "events"  # the earner's, over every event
BACKFILL = "backfill:"  # + a rule: one rule's pass back over the events the earner read before


async def get_program(session: AsyncSession, *, lock: bool = False) -> LoyaltyProgram | None:
    if lock:  # read as it is now, and hold it until the transaction ends (a replacement of it)
        return await session.get(LoyaltyProgram, PROGRAM_ID, with_for_update=True, populate_existing=True)
    return await session.get(LoyaltyProgram, PROGRAM_ID)


async def save_program(session: AsyncSession, config: dict, at: datetime) -> LoyaltyProgram:
    row = await session.get(LoyaltyProgram, PROGRAM_ID, with_for_update=True)
    if row is None:
        row = LoyaltyProgram(id=PROGRAM_ID, config=config, version=1, updated_at=at)
        session.add(row)
    else:
        row.config, row.version, row.updated_at = config, row.version + 1, at
    await session.flush()
    return row


Identity = tuple[str | None, str | None]  # (user_id, anonymous_id), as events carry them


async def identities(session: AsyncSession, customer_ids: list[int]) -> dict[int, Identity]:
    """user_id and anonymous_id of each customer that exists."""
    if not customer_ids:
        return {}
    rows = await session.execute(
        select(Customer.id, Customer.user_id, Customer.anonymous_id).where(Customer.id.in_(set(customer_ids)))
    )
    return {r[0]: (r[1], r[2]) for r in rows}


async def lock_accounts(
    session: AsyncSession, customer_ids: list[int], defaults: dict[str, Any]
) -> dict[int, LoyaltyAccount]:
    """The members' account rows, created on first use and locked until the transaction ends (FOR
    UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers). Rows are locked in
    ascending id order, the one order every writer uses, so two writers never deadlock."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    await session.execute(
        insert_ignoring_conflicts(session, LoyaltyAccount, ["customer_id"]),
        [{"customer_id": i, **defaults} for i in ids],
    )
    rows = await session.scalars(
        select(LoyaltyAccount)
        .where(LoyaltyAccount.customer_id.in_(ids))
        .order_by(LoyaltyAccount.customer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.customer_id: row for row in rows}


async def lock_existing_accounts(session: AsyncSession, customer_ids: list[int]) -> dict[int, LoyaltyAccount]:
    """The accounts these customers have, locked in ascending id order (none is created)."""
    rows = await session.scalars(
        select(LoyaltyAccount)
        .where(LoyaltyAccount.customer_id.in_(sorted(set(customer_ids))))
        .order_by(LoyaltyAccount.customer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.customer_id: row for row in rows}


async def hand_over(session: AsyncSession, source_id: int, target_id: int) -> None:
    """Give ``source``'s whole account and ledger to ``target``, who has none: it stays one
    consistent ledger, only under another customer."""
    for model in (LoyaltyAccount, LoyaltyEntry, LoyaltyLot, LoyaltyTierChange, LoyaltyFoldedKey):
        table = model.__table__
        await session.execute(
            update(table).where(table.c.customer_id == source_id).values(customer_id=target_id)
        )


async def keep_folded_keys(session: AsyncSession, source_id: int, target_id: int, at: datetime) -> None:
    """Before ``source``'s ledger is deleted with its profile: its entries' keys, and the keys it had
    kept from earlier merges, now belong to ``target``."""
    folded = LoyaltyFoldedKey.__table__
    await session.execute(
        update(folded).where(folded.c.customer_id == source_id).values(customer_id=target_id)
    )
    await session.execute(
        insert(folded).from_select(
            ["idempotency_key", "customer_id", "folded_at"],
            select(
                LoyaltyEntry.idempotency_key, literal(target_id), literal(at, folded.c.folded_at.type)
            ).where(LoyaltyEntry.customer_id == source_id),
        )
    )


async def folded_into(session: AsyncSession, keys: list[str]) -> int | None:
    """The customer a merged-away ledger's entry (or a step claimed by a merge) with one of these keys
    now belongs to."""
    return await session.scalar(
        select(LoyaltyFoldedKey.customer_id).where(LoyaltyFoldedKey.idempotency_key.in_(keys)).limit(1)
    )


async def claim_keys(session: AsyncSession, keys: list[str], customer_id: int, at: datetime) -> None:
    """Keys the customer's ledger counts as done though no entry of theirs has them."""
    if keys:
        await session.execute(
            insert_ignoring_conflicts(session, LoyaltyFoldedKey, ["idempotency_key"]),
            [{"idempotency_key": k, "customer_id": customer_id, "folded_at": at} for k in sorted(set(keys))],
        )


async def journey_awards(session: AsyncSession, customer_id: int) -> list[LoyaltyEntry]:
    """The points journey steps gave the customer, oldest first."""
    return list(
        await session.scalars(
            select(LoyaltyEntry)
            .where(
                LoyaltyEntry.customer_id == customer_id,
                LoyaltyEntry.kind == "earn",
                LoyaltyEntry.source == "journey",
            )
            .order_by(LoyaltyEntry.id)
        )
    )


async def expired_of(session: AsyncSession, customer_id: int, lot_ids: list[int]) -> dict[int, int]:
    """Points expiry took from each of these lots of the customer's."""
    if not lot_ids:
        return {}
    rows = await session.execute(
        select(LoyaltyEntry.lot_entry_id, func.sum(-LoyaltyEntry.points))
        .where(
            LoyaltyEntry.customer_id == customer_id,
            LoyaltyEntry.kind == "expire",
            LoyaltyEntry.lot_entry_id.in_(lot_ids),
        )
        .group_by(LoyaltyEntry.lot_entry_id)
    )
    return {lot: int(points) for lot, points in rows}


async def lock_existing_account(session: AsyncSession, customer_id: int) -> LoyaltyAccount | None:
    return await session.scalar(
        select(LoyaltyAccount)
        .where(LoyaltyAccount.customer_id == customer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def lock_account(session: AsyncSession, customer_id: int, defaults: dict[str, Any]) -> LoyaltyAccount:
    return (await lock_accounts(session, [customer_id], defaults))[customer_id]


async def get_account(session: AsyncSession, customer_id: int) -> LoyaltyAccount | None:
    return await session.get(LoyaltyAccount, customer_id)


async def entry_by_key(session: AsyncSession, key: str) -> LoyaltyEntry | None:
    return await session.scalar(select(LoyaltyEntry).where(LoyaltyEntry.idempotency_key == key))


async def existing_keys(session: AsyncSession, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    return set(
        await session.scalars(
            union_all(
                select(LoyaltyEntry.idempotency_key).where(LoyaltyEntry.idempotency_key.in_(keys)),
                select(LoyaltyFoldedKey.idempotency_key).where(LoyaltyFoldedKey.idempotency_key.in_(keys)),
            )
        )
    )


async def add_entry(session: AsyncSession, entry: LoyaltyEntry) -> LoyaltyEntry:
    session.add(entry)
    await session.flush()
    return entry


def add_lot(session: AsyncSession, lot: LoyaltyLot) -> None:
    session.add(lot)  # flushed with the next statement; nothing needs its key before then


async def open_lots(session: AsyncSession, customer_id: int) -> list[LoyaltyLot]:
    return list(
        await session.scalars(
            select(LoyaltyLot)
            .where(LoyaltyLot.customer_id == customer_id, LoyaltyLot.remaining > 0)
            .order_by(LoyaltyLot.earned_at, LoyaltyLot.entry_id)
        )
    )


async def lots_expiring(
    session: AsyncSession, customer_id: int, until: datetime, *, unwarned_only: bool = False
) -> list[LoyaltyLot]:
    stmt = (
        select(LoyaltyLot)
        .where(
            LoyaltyLot.customer_id == customer_id,
            LoyaltyLot.remaining > 0,
            LoyaltyLot.expires_at.is_not(None),
            LoyaltyLot.expires_at <= until,
        )
        .order_by(LoyaltyLot.expires_at, LoyaltyLot.entry_id)
    )
    if unwarned_only:
        stmt = stmt.where(LoyaltyLot.warned_at.is_(None))
    return list(await session.scalars(stmt))


async def customers_with_lots_expiring(
    session: AsyncSession, until: datetime, limit: int, *, unwarned_only: bool
) -> list[int]:
    stmt = (
        select(LoyaltyLot.customer_id)
        .where(LoyaltyLot.remaining > 0, LoyaltyLot.expires_at.is_not(None), LoyaltyLot.expires_at <= until)
        .group_by(LoyaltyLot.customer_id)
        .order_by(LoyaltyLot.customer_id)
        .limit(limit)
    )
    if unwarned_only:
        stmt = stmt.where(LoyaltyLot.warned_at.is_(None))
    return list(await session.scalars(stmt))


async def account_ids_after(session: AsyncSession, after: int, limit: int) -> list[int]:
    return list(
        await session.scalars(
            select(LoyaltyAccount.customer_id)
            .where(LoyaltyAccount.customer_id > after)
            .order_by(LoyaltyAccount.customer_id)
            .limit(limit)
        )
    )


async def earned_between(
    session: AsyncSession,
    customer_id: int,
    *,
    after: datetime | None,
    until: datetime | None,
    rule_id: str | None = None,
    inclusive_start: bool = False,
) -> int:
    """Sum of `earn` entries with ``after < occurred_at <= until`` (or ``>=`` start when inclusive)."""
    stmt = select(func.coalesce(func.sum(LoyaltyEntry.points), 0)).where(
        LoyaltyEntry.customer_id == customer_id, LoyaltyEntry.kind == "earn"
    )
    if after is not None:
        stmt = stmt.where(
            LoyaltyEntry.occurred_at >= after if inclusive_start else LoyaltyEntry.occurred_at > after
        )
    if until is not None:
        stmt = stmt.where(LoyaltyEntry.occurred_at <= until)
    if rule_id is not None:
        stmt = stmt.where(LoyaltyEntry.rule_id == rule_id)
    return int(await session.scalar(stmt) or 0)


async def entries_of(
    session: AsyncSession, customer_id: int, *, limit: int | None = None, before_id: int | None = None
) -> list[LoyaltyEntry]:
    stmt = select(LoyaltyEntry).where(LoyaltyEntry.customer_id == customer_id)
    if before_id is not None:
        stmt = stmt.where(LoyaltyEntry.id < before_id)
    if limit is None:
        return list(await session.scalars(stmt.order_by(LoyaltyEntry.id)))
    return list(await session.scalars(stmt.order_by(LoyaltyEntry.id.desc()).limit(limit)))


async def add_tier_change(session: AsyncSession, change: LoyaltyTierChange) -> LoyaltyTierChange:
    session.add(change)
    await session.flush()
    return change


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Store events the programme emits and queue them for routing; a message id already stored is
    skipped. Returns how many were new."""
    if not rows:
        return 0
    ids = list(
        await session.scalars(
            insert_ignoring_conflicts(session, Event, ["message_id"]).values(rows).returning(Event.id)
        )
    )
    if ids:
        await session.execute(
            insert_ignoring_conflicts(session, EventOutbox, ["event_id"]), [{"event_id": i} for i in ids]
        )
    return len(ids)


async def lock_cursor(session: AsyncSession, name: str) -> LoyaltyCursor:
    await session.execute(
        insert_ignoring_conflicts(session, LoyaltyCursor, ["name"]).values(name=name, position=0)
    )
    return await session.scalar(
        select(LoyaltyCursor)
        .where(LoyaltyCursor.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


_EVENT_COLUMNS = (Event.id, Event.type, Event.name, Event.customer_id, Event.properties, Event.timestamp)


async def any_event_after(session: AsyncSession, position: int) -> bool:
    return bool(await session.scalar(select(select(Event.id).where(Event.id > position).exists())))


async def events_after(session: AsyncSession, position: int, limit: int) -> list[tuple]:
    """(id, type, name, customer_id, properties, timestamp) of stored events above ``position``."""
    rows = await session.execute(
        select(*_EVENT_COLUMNS).where(Event.id > position).order_by(Event.id).limit(limit)
    )
    return [tuple(r) for r in rows]


async def events_with_ids(session: AsyncSession, ids: list[int]) -> list[tuple]:
    if not ids:
        return []
    rows = await session.execute(select(*_EVENT_COLUMNS).where(Event.id.in_(ids)).order_by(Event.id))
    return [tuple(r) for r in rows]


def backfill_cursor(rule_id: str) -> str:
    """The cursor row of a rule's back-fill. Names hold 64 characters, as a rule id can: a long id is
    hashed ('#' is never part of one, so the two forms cannot meet)."""
    name = BACKFILL + rule_id
    return name if len(name) <= 64 else f"{BACKFILL}#{hashlib.sha256(rule_id.encode()).hexdigest()[:32]}"


async def start_backfill(session: AsyncSession, rule_id: str, at: datetime) -> None:
    """Have the rule go back over every event stored so far (again from the top, if it already was).

    The earner's cursor is held meanwhile: a pass that read events under the programme before this one
    has committed, so each of its events is at or below the last id now, and every later pass reads
    the new programme."""
    await lock_cursor(session, EVENTS_CURSOR)
    last = await session.scalar(select(func.coalesce(func.max(Event.id), 0)))
    state = await lock_cursor(session, backfill_cursor(rule_id))
    state.position, state.updated_at = last + 1, at  # back-fills read downwards, below ``position``


async def next_backfill(session: AsyncSession) -> str | None:
    """A back-fill under way, if any (a plain read: the earner asks on every pass)."""
    return await session.scalar(
        select(LoyaltyCursor.name)
        .where(LoyaltyCursor.name.startswith(BACKFILL, autoescape=True))
        .order_by(LoyaltyCursor.name)
        .limit(1)
    )


async def lock_existing_cursor(session: AsyncSession, name: str) -> LoyaltyCursor | None:
    return await session.scalar(
        select(LoyaltyCursor)
        .where(LoyaltyCursor.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def drop_cursor(session: AsyncSession, name: str) -> None:
    await session.execute(delete(LoyaltyCursor).where(LoyaltyCursor.name == name))


async def track_events_below(session: AsyncSession, high: int, name: str, limit: int) -> list[tuple]:
    """The newest ``limit`` track events called ``name`` with ids below ``high``, oldest first, as
    events_after: read from ix_events_track_name_id, whose condition is written out (not a bound
    parameter) so the planner can use the partial index. Bounded by ``limit`` rows however old the
    events are; the earning rules then judge their times."""
    stmt = (
        select(*_EVENT_COLUMNS)
        .where(Event.name == name, Event.id < high, Event.type == literal_column("'track'"))
        .order_by(Event.name.desc(), Event.id.desc())
        .limit(limit)
    )
    return [tuple(r) for r in await session.execute(stmt)][::-1]
