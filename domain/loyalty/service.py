"""Loyalty rules: the programme, reading a member's points, and the movements the API and journey
steps make (redeem, adjust, award, deduct), plus earning from stored events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict, NotFound
from domain.loyalty import events_out, keys, ledger, repository
from domain.loyalty.models import LoyaltyAccount, LoyaltyEntry
from domain.loyalty.postings import InsufficientPoints, account_defaults, append, lock_member
from domain.loyalty.schemas import (
    STORED,
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


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


# ---------------------------------------------------------------------------------------------------
# Programme


def _stored(config: dict[str, Any]) -> ProgramConfig:
    return ProgramConfig.model_validate(config, context={STORED: True})


async def program(session: AsyncSession, *, lock: bool = False) -> ProgramConfig:
    row = await repository.get_program(session, lock=lock)
    return ProgramConfig() if row is None else _stored(row.config)


async def get_program(session: AsyncSession) -> ProgramOut:
    row = await repository.get_program(session)
    if row is None:
        return ProgramOut(config=ProgramConfig(), version=0, updated_at=None)
    return ProgramOut(config=_stored(row.config), version=row.version, updated_at=row.updated_at)


async def put_program(session: AsyncSession, config: ProgramConfig, now: datetime) -> ProgramOut:
    """Replace the programme. A new rule earns from now on unless it names an earlier ``since``; an
    existing rule keeps its start unless given an earlier one, so editing a rule never back-fills or
    forgets history by itself. A rule given a start before what it had (a new rule: before now) goes
    back over the events already read, on its own (see earner.backfill_once): the earner's cursor is
    past them, and rewinding it would have every other rule, as edited now, judge them again.

    Customers without an account are in the first tier. When its name changes, so does the tier of
    every one of them, with no event of theirs for the segment refresher to follow; so, in this same
    transaction, every segment whose rule reads the loyalty tier is rebuilt (recording its Segment
    Entered / Exited events). Balances do not depend on the programme (no account is 0 points).

    Dropping or renaming a tier that a segment rule names is refused (409 ``tier_in_use``, see
    segments.tier_users), nothing stored."""
    before = await program(session, lock=True)  # held: concurrent replacements take turns
    removed = {t.name for t in before.tiers} - {t.name for t in config.tiers}
    if removed:  # imported here for the reason given below
        from domain.segments import tier_users

        await tier_users.refuse_removing_named(session, removed)
    previous = {r.id: r for r in before.rules}
    rules = []
    for rule in config.rules:
        kept = previous.get(rule.id)
        start = kept.since if kept else now  # what the rule has been (or would be) earning from
        if rule.since is None:
            rule = rule.model_copy(update={"since": start or now})
        elif start is not None and rule.since < start:
            await repository.start_backfill(session, rule.id, now)
        rules.append(rule)
    config = config.model_copy(update={"rules": rules})
    row = await repository.save_program(session, config.model_dump(mode="json"), now)
    if config.tiers[0].name != before.tiers[0].name:
        # Imported here, as subscriptions.service does: the segments area builds on this one (its
        # rules read our accounts and tiers), so this is a dependency back up, and at module level the
        # two areas would import each other. Which rules read the tier stays the segments' business.
        from domain.segments import service as segments

        await segments.rebuild_reading_loyalty_tier(session, now=now)
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
# Movements: redeem, adjust, award, deduct


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
    merged_from: int | None = None,
) -> MovementOut:
    who = await _require_customer(session, customer_id)
    if points > 0:
        config = await program(session)
        acct = await lock_member(session, config, customer_id, now)
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
    # A journey step may have been done before a merge brought it here, for the profile merged in, or
    # claimed by the merge: the same step of the person's other enrollment gave it (loyalty.merging).
    if merged_from is not None and await repository.folded_into(session, keys.done_as(key)) == customer_id:
        return MovementOut(entry=None, balance=acct.balance, tier=acct.tier, replayed=True)
    entry = await append(
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


def _journey_key(customer_id: int, idempotency_key: str, enrolled_as: int | None) -> str:
    # Named after the customer the journey was started for, not the profile that became: a step
    # retried after a merge then finds its first attempt, under either profile.
    return f"journey:{enrolled_as or customer_id}:{idempotency_key}"


async def award(
    session: AsyncSession,
    customer_id: int,
    idempotency_key: str,
    points: int,
    reason: str,
    now: datetime,
    *,
    enrolled_as: int | None = None,
) -> MovementOut:
    """Points a journey step gives; they earn, count towards the tier and expire like any other.
    ``enrolled_as`` is the customer id the journey started with, when that profile was merged into
    ``customer_id`` since."""
    return await _move(
        session,
        customer_id,
        kind="earn",
        points=points,
        key=_journey_key(customer_id, idempotency_key, enrolled_as),
        merged_from=enrolled_as,
        source="journey",
        now=now,
        reason=reason,
    )


async def deduct(
    session: AsyncSession,
    customer_id: int,
    idempotency_key: str,
    points: int,
    reason: str,
    now: datetime,
    *,
    enrolled_as: int | None = None,
) -> MovementOut:
    return await _move(
        session,
        customer_id,
        kind="redeem",
        points=-points,
        key=_journey_key(customer_id, idempotency_key, enrolled_as),
        merged_from=enrolled_as,
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


async def on_events(
    session: AsyncSession,
    events: list[StoredEvent],
    now: datetime,
    *,
    config: ProgramConfig | None = None,
    rule_id: str | None = None,
) -> int:
    """Earn for stored events under the programme's rules (only ``rule_id``'s, when given); returns
    how many entries were written.

    Safe to call any number of times for the same events: each award's key is
    ``event:{event_id}:{rule_id}``, so an event earns once per rule however often it is seen.
    """
    config = config or await program(session)
    work = [
        (event, rule, f"event:{event.id}:{rule.id}")
        for event in events
        if event.type == "track"
        for rule in config.rules
        if rule_id in (None, rule.id)
        and ledger.matches(rule, event.name, event.properties or {})
        and (rule.since is None or event.timestamp >= rule.since)
        # Points that would have expired by now are not awarded: the member never had them, and an
        # award expired at once would send Points Earned, Expiring Soon and Expired for nothing.
        and not ledger.expired_by(config, event.timestamp, now)
    ]
    if not work:
        return 0
    customers = [e.customer_id for e, _, _ in work]
    accounts = await repository.lock_accounts(session, customers, account_defaults(config, now))
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
        await append(
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
