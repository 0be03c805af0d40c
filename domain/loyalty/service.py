"""Loyalty rules: the programme, earning, spending, expiry and tiers.

Every write to a member's points follows one pattern: lock the account row, look the idempotency key
up, apply the movement to lots and balance, append the entry, emit the event, all in one transaction.
The lock makes concurrent writers for one member queue; the unique key makes a retry a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict, NotFound
from domain.loyalty import events_out, ledger, repository
from domain.loyalty.models import LoyaltyAccount, LoyaltyEntry, LoyaltyLot, LoyaltyTierChange
from domain.loyalty.schemas import (
    POINTS_ADJUSTED,
    POINTS_EARNED,
    POINTS_EXPIRED,
    POINTS_EXPIRING_SOON,
    POINTS_REDEEMED,
    TIER_CHANGED,
    AccountOut,
    AdjustIn,
    AuditOut,
    EntryOut,
    LedgerState,
    LotOut,
    MovementOut,
    ProgramConfig,
    ProgramOut,
    RedeemIn,
)

ENTRY_EVENT = {
    "earn": POINTS_EARNED,
    "redeem": POINTS_REDEEMED,
    "adjust": POINTS_ADJUSTED,
    "expire": POINTS_EXPIRED,
}


class InsufficientPoints(Conflict):
    code = "insufficient_points"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


# ---------------------------------------------------------------------------------------------------
# Programme


async def program(session: AsyncSession) -> ProgramConfig:
    row = await repository.get_program(session)
    return ProgramConfig() if row is None else ProgramConfig.model_validate(row.config)


async def get_program(session: AsyncSession) -> ProgramOut:
    row = await repository.get_program(session)
    if row is None:
        return ProgramOut(config=ProgramConfig(), version=0, updated_at=None)
    return ProgramOut(
        config=ProgramConfig.model_validate(row.config), version=row.version, updated_at=row.updated_at
    )


async def put_program(session: AsyncSession, config: ProgramConfig, now: datetime) -> ProgramOut:
    """Replace the programme. A new rule earns from now on unless it names an earlier ``since``; an
    existing rule keeps its start, so editing a rule never back-fills or forgets history."""
    previous = {r.id: r for r in (await program(session)).rules}
    rules = []
    for rule in config.rules:
        if rule.since is None:
            kept = previous.get(rule.id)
            rule = rule.model_copy(update={"since": kept.since if kept and kept.since else now})
        rules.append(rule)
    config = config.model_copy(update={"rules": rules})
    row = await repository.save_program(session, config.model_dump(mode="json"), now)
    return ProgramOut(config=config, version=row.version, updated_at=row.updated_at)


# ---------------------------------------------------------------------------------------------------
# Reading


async def _require_customer(session: AsyncSession, customer_id: int) -> repository.Identity:
    found = await repository.identities(session, [customer_id])
    if customer_id not in found:
        raise NotFound(f"no customer {customer_id}")
    return found[customer_id]


async def account(
    session: AsyncSession, customer_id: int, now: datetime, *, expiring_within_days: int = 30
) -> AccountOut:
    await _require_customer(session, customer_id)
    config = await program(session)
    row = await repository.get_account(session, customer_id)
    balance = row.balance if row else 0
    tier_points = row.tier_points if row else 0
    tier = row.tier if row else config.tiers[0].name
    upcoming = await repository.lots_expiring(
        session, customer_id, now + timedelta(days=expiring_within_days)
    )
    nxt = config.next_tier(tier_points)
    return AccountOut(
        customer_id=customer_id,
        balance=balance,
        tier=tier,
        tier_points=tier_points,
        next_tier=nxt.name if nxt else None,
        points_to_next_tier=nxt.threshold - tier_points if nxt else None,
        lifetime_earned=row.lifetime_earned if row else 0,
        expiring_points=sum(lot.remaining for lot in upcoming),
        expiring=[LotOut.model_validate(lot) for lot in upcoming],
    )


@dataclass
class Status:
    balance: int
    tier: str
    tier_points: int


async def status(session: AsyncSession, customer_id: int) -> Status:
    """Balance and tier for branching and for other areas (customer view, segments)."""
    await _require_customer(session, customer_id)
    row = await repository.get_account(session, customer_id)
    if row is None:
        return Status(balance=0, tier=(await program(session)).tiers[0].name, tier_points=0)
    return Status(balance=row.balance, tier=row.tier, tier_points=row.tier_points)


async def history(
    session: AsyncSession, customer_id: int, *, limit: int, before_id: int | None
) -> list[EntryOut]:
    await _require_customer(session, customer_id)
    rows = await repository.entries_of(session, customer_id, limit=limit, before_id=before_id)
    return [EntryOut.model_validate(e) for e in rows]


async def audit(session: AsyncSession, customer_id: int) -> AuditOut:
    """Recompute the member's state from the ledger alone and compare it with what is stored."""
    await _require_customer(session, customer_id)
    config = await program(session)
    row = await repository.get_account(session, customer_id)
    entries = await repository.entries_of(session, customer_id)
    lots = await repository.open_lots(session, customer_id)
    as_of = row.tier_evaluated_at if row else None
    replayed = ledger.replay(entries, config, as_of) if as_of else ledger.Replayed(tier=config.tiers[0].name)
    stored = LedgerState(
        balance=row.balance if row else 0,
        tier=row.tier if row else config.tiers[0].name,
        tier_points=row.tier_points if row else 0,
        lots={lot.entry_id: lot.remaining for lot in lots},
    )
    recomputed = LedgerState(
        balance=replayed.balance, tier=replayed.tier, tier_points=replayed.tier_points, lots=replayed.lots
    )
    problems = list(replayed.problems)
    for name in ("balance", "tier", "tier_points", "lots"):
        if getattr(stored, name) != getattr(recomputed, name):
            problems.append(
                f"stored {name} {getattr(stored, name)!r} != recomputed {getattr(recomputed, name)!r}"
            )
    if row is not None and row.lifetime_earned != replayed.lifetime_earned:
        problems.append(
            f"stored lifetime_earned {row.lifetime_earned} != recomputed {replayed.lifetime_earned}"
        )
    return AuditOut(
        customer_id=customer_id,
        stored=stored,
        recomputed=recomputed,
        problems=problems,
        consistent=not problems,
    )


# ---------------------------------------------------------------------------------------------------
# Writing: the one path every movement takes


def _defaults(config: ProgramConfig, now: datetime) -> dict[str, Any]:
    return {
        "balance": 0,
        "tier": config.tiers[0].name,
        "tier_points": 0,
        "tier_evaluated_at": now,
        "lifetime_earned": 0,
        "created_at": now,
        "updated_at": now,
    }


async def _lock(
    session: AsyncSession, config: ProgramConfig, customer_id: int, now: datetime
) -> LoyaltyAccount:
    return await repository.lock_account(session, customer_id, _defaults(config, now))


def _same_request(entry: LoyaltyEntry, customer_id: int, kind: str, points: int) -> bool:
    return entry.customer_id == customer_id and entry.kind == kind and entry.points == points


async def _replay_or_none(
    session: AsyncSession, key: str, customer_id: int, kind: str, points: int
) -> LoyaltyEntry | None:
    existing = await repository.entry_by_key(session, key)
    if existing is not None and not _same_request(existing, customer_id, kind, points):
        raise IdempotencyKeyReused(
            {
                "field": "Idempotency-Key",
                "problem": f"this key was already used for a {existing.kind} of {existing.points} points "
                f"for customer {existing.customer_id}; use a new key for a new request",
            }
        )
    return existing


async def _append(
    session: AsyncSession,
    config: ProgramConfig | None,  # needed for credits (expiry, tier) only
    acct: LoyaltyAccount,
    *,
    kind: str,
    points: int,
    key: str,
    source: str,
    now: datetime,
    occurred_at: datetime | None = None,
    reason: str | None = None,
    rule_id: str | None = None,
    event_id: int | None = None,
    who: repository.Identity,
    lot: LoyaltyLot | None = None,
    meta: dict[str, Any] | None = None,
    tier_cache: dict[int, int] | None = None,
) -> LoyaltyEntry:
    """Apply one movement to a locked account whose key is known to be unused.

    ``tier_cache`` (customer id -> tier points as of ``now``) lets a batch with one ``now`` count
    tier points once per member and add each earn to it, instead of summing the ledger per entry."""
    occurred_at = occurred_at or now
    if points < 0:
        if acct.balance + points < 0:
            raise InsufficientPoints(
                {"field": "points", "problem": f"the balance is {acct.balance}; {-points} cannot be taken"}
            )
        if lot is not None:  # expiry closes exactly this lot
            lot.remaining += points
        else:
            ledger.spend(await repository.open_lots(session, acct.customer_id), -points)
    expires_at = ledger.expiry_for(config, occurred_at) if config is not None and points > 0 else None
    entry = await repository.add_entry(
        session,
        LoyaltyEntry(
            idempotency_key=key,
            customer_id=acct.customer_id,
            kind=kind,
            points=points,
            balance_after=acct.balance + points,
            reason=reason,
            source=source,
            rule_id=rule_id,
            event_id=event_id,
            lot_entry_id=lot.entry_id if lot is not None else None,
            occurred_at=occurred_at,
            expires_at=expires_at,
            meta=meta or {},
            created_at=now,
        ),
    )
    if points > 0:
        repository.add_lot(
            session,
            LoyaltyLot(
                entry_id=entry.id,
                customer_id=acct.customer_id,
                points=points,
                remaining=points,
                earned_at=occurred_at,
                expires_at=expires_at,
            ),
        )
    tier_points = None
    if kind == "earn":  # counted before the account changes, so the account is written once
        cached = tier_cache.get(acct.customer_id) if tier_cache is not None else None
        if cached is None:
            tier_points = await _tier_points(session, config, acct.customer_id, now)
        else:
            since = ledger.tier_window_start(config, now)
            counts = occurred_at <= now and (since is None or occurred_at > since)
            tier_points = cached + (points if counts else 0)
        if tier_cache is not None:
            tier_cache[acct.customer_id] = tier_points
    acct.balance += points
    acct.updated_at = now
    if kind == "earn":
        acct.lifetime_earned += points
    properties: dict[str, Any] = {
        "points": abs(points),
        "balance": acct.balance,
        "tier": acct.tier,
        "entry_id": entry.id,
        "reason": reason,
    }
    if rule_id:
        properties["rule_id"] = rule_id
    if event_id:
        properties["source_event_id"] = event_id
    if expires_at:
        properties["expires_at"] = expires_at.isoformat()
    if kind == "adjust":
        properties["points"] = points
    events_out.emit(
        session,
        customer_id=acct.customer_id,
        who=who,
        name=ENTRY_EVENT[kind],
        message_id=events_out.entry_message_id(entry.id),
        properties=properties,
        at=now,
    )
    if tier_points is not None:
        await _set_tier(session, config, acct, tier_points, now, cause=entry.id, who=who)
    return entry


async def _tier_points(
    session: AsyncSession, config: ProgramConfig, customer_id: int, as_of: datetime
) -> int:
    return await repository.earned_between(
        session, customer_id, after=ledger.tier_window_start(config, as_of), until=as_of
    )


async def _set_tier(
    session: AsyncSession,
    config: ProgramConfig,
    acct: LoyaltyAccount,
    points: int,
    as_of: datetime,
    *,
    cause: int | None,
    who: repository.Identity,
) -> LoyaltyTierChange | None:
    tier = config.tier_for(points).name
    acct.tier_points, acct.tier_evaluated_at = points, as_of
    if tier == acct.tier:
        return None
    previous, acct.tier = acct.tier, tier
    change = await repository.add_tier_change(
        session,
        LoyaltyTierChange(
            customer_id=acct.customer_id,
            from_tier=previous,
            to_tier=tier,
            tier_points=points,
            entry_id=cause,
            changed_at=as_of,
        ),
    )
    old = config.tier_named(previous)
    events_out.emit(
        session,
        customer_id=acct.customer_id,
        who=who,
        name=TIER_CHANGED,
        message_id=events_out.tier_change_message_id(change.id),
        properties={
            "from_tier": previous,
            "to_tier": tier,
            "direction": "up" if old is None or config.tier_for(points).threshold > old.threshold else "down",
            "tier_points": points,
            "balance": acct.balance,
        },
        at=as_of,
    )
    return change


def _movement(entry: LoyaltyEntry, acct: LoyaltyAccount, replayed: bool) -> MovementOut:
    return MovementOut(
        entry=EntryOut.model_validate(entry), balance=acct.balance, tier=acct.tier, replayed=replayed
    )


async def _move(
    session: AsyncSession,
    customer_id: int,
    *,
    kind: str,
    points: int,
    key: str,
    source: str,
    now: datetime,
    reason: str | None,
    meta: dict[str, Any] | None = None,
) -> MovementOut:
    who = await _require_customer(session, customer_id)
    if points > 0:
        config = await program(session)
        acct = await _lock(session, config, customer_id, now)
    else:  # a debit needs no programme, and a member without an account has nothing to spend
        config = None
        acct = await repository.lock_existing_account(session, customer_id)
        if acct is None:
            raise InsufficientPoints(
                {"field": "points", "problem": f"the balance is 0; {-points} cannot be taken"}
            )
    existing = await _replay_or_none(session, key, customer_id, kind, points)
    if existing is not None:
        return _movement(existing, acct, replayed=True)
    entry = await _append(
        session,
        config,
        acct,
        kind=kind,
        points=points,
        key=key,
        source=source,
        now=now,
        reason=reason,
        meta=meta,
        who=who,
    )
    await events_out.flush(session)
    return _movement(entry, acct, replayed=False)


async def redeem(
    session: AsyncSession, customer_id: int, idempotency_key: str, spec: RedeemIn, now: datetime
) -> MovementOut:
    """Spend points, oldest first. The same key again returns the first result and spends nothing."""
    return await _move(
        session,
        customer_id,
        kind="redeem",
        points=-spec.points,
        key=f"redeem:{customer_id}:{idempotency_key}",
        source="api",
        now=now,
        reason=spec.reason,
    )


async def adjust(
    session: AsyncSession,
    customer_id: int,
    idempotency_key: str,
    spec: AdjustIn,
    now: datetime,
    *,
    by: str | None = None,
) -> MovementOut:
    """An admin's correction, with its reason. A debit cannot take the balance below zero."""
    return await _move(
        session,
        customer_id,
        kind="adjust",
        points=spec.points,
        key=f"adjust:{customer_id}:{idempotency_key}",
        source="api",
        now=now,
        reason=spec.reason,
        meta={"by": by} if by else None,
    )


async def award(
    session: AsyncSession, customer_id: int, idempotency_key: str, points: int, reason: str, now: datetime
) -> MovementOut:
    """Points a journey step gives; they earn, count towards the tier and expire like any other."""
    return await _move(
        session,
        customer_id,
        kind="earn",
        points=points,
        key=f"journey:{customer_id}:{idempotency_key}",
        source="journey",
        now=now,
        reason=reason,
    )


async def deduct(
    session: AsyncSession, customer_id: int, idempotency_key: str, points: int, reason: str, now: datetime
) -> MovementOut:
    return await _move(
        session,
        customer_id,
        kind="redeem",
        points=-points,
        key=f"journey:{customer_id}:{idempotency_key}",
        source="journey",
        now=now,
        reason=reason,
    )


# ---------------------------------------------------------------------------------------------------
# Earning from stored events


@dataclass
class StoredEvent:
    id: int
    type: str
    name: str | None
    customer_id: int
    properties: dict[str, Any]
    timestamp: datetime


def _day_and_month(moment: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    tick = timedelta(microseconds=1)
    return day, day + timedelta(days=1) - tick, month, ledger.add_months(month, 1) - tick


async def _capped(session: AsyncSession, rule, customer_id: int, points: int, at: datetime) -> int:
    day, day_end, month, month_end = _day_and_month(at)
    if rule.cap_per_day:
        used = await repository.earned_between(
            session, customer_id, after=day, until=day_end, rule_id=rule.id, inclusive_start=True
        )
        points = min(points, rule.cap_per_day - used)
    if rule.cap_per_month and points > 0:
        used = await repository.earned_between(
            session, customer_id, after=month, until=month_end, rule_id=rule.id, inclusive_start=True
        )
        points = min(points, rule.cap_per_month - used)
    return max(points, 0)


async def on_events(session: AsyncSession, events: list[StoredEvent], now: datetime) -> int:
    """Earn for stored events under the programme's rules; returns how many entries were written.

    Safe to call any number of times for the same events: each award's key is
    ``event:{event_id}:{rule_id}``, so an event earns once per rule however often it is seen.
    """
    config = await program(session)
    work = [
        (event, rule, f"event:{event.id}:{rule.id}")
        for event in events
        if event.type == "track"
        for rule in config.rules
        if ledger.matches(rule, event.name, event.properties or {})
        and (rule.since is None or event.timestamp >= rule.since)
    ]
    if not work:
        return 0
    customers = [e.customer_id for e, _, _ in work]
    accounts = await repository.lock_accounts(session, customers, _defaults(config, now))
    people = await repository.identities(session, customers)
    done = await repository.existing_keys(session, [key for _, _, key in work])
    tier_cache: dict[int, int] = {}
    written = 0
    for event, rule, key in work:
        if key in done:
            continue
        acct = accounts[event.customer_id]
        tier = config.tier_named(acct.tier) or config.tiers[0]
        points = ledger.with_multiplier(ledger.base_points(rule, event.properties or {}), tier.multiplier)
        points = await _capped(session, rule, event.customer_id, points, event.timestamp)
        if points <= 0:
            continue
        await _append(
            session,
            config,
            acct,
            kind="earn",
            points=points,
            key=key,
            source="event",
            now=now,
            occurred_at=event.timestamp,
            reason=f"{event.name} ({rule.id})",
            rule_id=rule.id,
            event_id=event.id,
            meta={"tier_multiplier": tier.multiplier} if tier.multiplier != 1 else None,
            who=people[event.customer_id],
            tier_cache=tier_cache,
        )
        written += 1
    await events_out.flush(session)
    return written


# ---------------------------------------------------------------------------------------------------
# Scheduled maintenance: each pass handles one page of members and is safe to run twice


def _warn(
    session: AsyncSession,
    acct: LoyaltyAccount,
    lots: list[LoyaltyLot],
    now: datetime,
    *,
    who: repository.Identity,
) -> None:
    if not lots:
        return
    for lot in lots:
        lot.warned_at = now
    events_out.emit(
        session,
        customer_id=acct.customer_id,
        who=who,
        name=POINTS_EXPIRING_SOON,
        message_id=events_out.expiring_message_id(acct.customer_id, min(lot.entry_id for lot in lots)),
        properties={
            "points": sum(lot.remaining for lot in lots),
            "expires_at": min(lot.expires_at for lot in lots).isoformat(),
            "balance": acct.balance,
            "tier": acct.tier,
            "lots": len(lots),
        },
        at=now,
    )


async def warn_expiring(session: AsyncSession, now: datetime, limit: int) -> int:
    """One `Points Expiring Soon` per member for lots expiring within the warning window and not
    warned yet; lots already past due are included, so no expiry ever comes without a warning."""
    config = await program(session)
    if not config.expiry_months:
        return 0
    until = now + timedelta(days=config.expiry_warning_days)
    customers = await repository.customers_with_lots_expiring(session, until, limit, unwarned_only=True)
    accounts = await repository.lock_accounts(session, customers, _defaults(config, now))
    people = await repository.identities(session, customers)
    for customer_id in customers:
        lots = await repository.lots_expiring(session, customer_id, until, unwarned_only=True)
        _warn(session, accounts[customer_id], lots, now, who=people[customer_id])
    await events_out.flush(session)
    return len(customers)


async def expire_due(session: AsyncSession, now: datetime, limit: int) -> int:
    """Close every lot whose expiry has passed: one `expire` entry per lot, keyed by the lot."""
    config = await program(session)
    customers = await repository.customers_with_lots_expiring(session, now, limit, unwarned_only=False)
    accounts = await repository.lock_accounts(session, customers, _defaults(config, now))
    people = await repository.identities(session, customers)
    expired = 0
    for customer_id in customers:
        due = await repository.lots_expiring(session, customer_id, now)
        # Missed warnings (the schedule was down, or expiry ran alone) are given now, before the points go.
        _warn(
            session,
            accounts[customer_id],
            [lot for lot in due if lot.warned_at is None],
            now,
            who=people[customer_id],
        )
        for lot in due:
            key = f"expire:{lot.entry_id}"
            if await repository.entry_by_key(session, key) is not None:
                continue
            await _append(
                session,
                config,
                accounts[customer_id],
                kind="expire",
                points=-lot.remaining,
                key=key,
                source="schedule",
                now=now,
                reason=f"points earned {lot.earned_at.date().isoformat()} expired",
                lot=lot,
                who=people[customer_id],
            )
            expired += 1
    await events_out.flush(session)
    return expired


async def reevaluate_tiers(
    session: AsyncSession, now: datetime, *, after_customer_id: int, limit: int
) -> tuple[int, int | None]:
    """Re-evaluate one page of members (points leave a rolling window; thresholds change).
    Returns (tier changes, last customer id of the page, or None when done)."""
    config = await program(session)
    customers = await repository.account_ids_after(session, after_customer_id, limit)
    accounts = await repository.lock_accounts(session, customers, _defaults(config, now))
    people = await repository.identities(session, customers)
    changed = 0
    for customer_id in customers:
        points = await _tier_points(session, config, customer_id, now)
        change = await _set_tier(
            session, config, accounts[customer_id], points, now, cause=None, who=people[customer_id]
        )
        changed += change is not None
    await events_out.flush(session)
    return changed, (customers[-1] if customers else None)
