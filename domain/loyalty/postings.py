"""Postings: the one path every movement of points takes, and the tier that follows from them.

Callers lock the member's account first and check the idempotency key is unused; ``append`` then applies
the movement to lots and balance, appends the entry and queues its event, all in the caller's
transaction. The lock makes concurrent writers for one member queue; the unique key makes a retry a no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict
from domain.loyalty import events_out, ledger, repository
from domain.loyalty.models import LoyaltyAccount, LoyaltyEntry, LoyaltyLot, LoyaltyTierChange
from domain.loyalty.schemas import (
    POINTS_ADJUSTED,
    POINTS_EARNED,
    POINTS_EXPIRED,
    POINTS_REDEEMED,
    TIER_CHANGED,
    ProgramConfig,
)

ENTRY_EVENT = {
    "earn": POINTS_EARNED,
    "redeem": POINTS_REDEEMED,
    "adjust": POINTS_ADJUSTED,
    "expire": POINTS_EXPIRED,
}


# ``append``'s default expiry: the programme's, counted from when the points were earned.
FROM_PROGRAM: Any = object()


class InsufficientPoints(Conflict):
    code = "insufficient_points"


def account_defaults(config: ProgramConfig, now: datetime) -> dict[str, Any]:
    return {
        "balance": 0,
        "tier": config.tiers[0].name,
        "tier_points": 0,
        "tier_evaluated_at": now,
        "lifetime_earned": 0,
        "created_at": now,
        "updated_at": now,
    }


async def lock_member(
    session: AsyncSession, config: ProgramConfig, customer_id: int, now: datetime
) -> LoyaltyAccount:
    return await repository.lock_account(session, customer_id, account_defaults(config, now))


async def append(
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
    expires_at: datetime | None = FROM_PROGRAM,
    warned_at: datetime | None = None,  # a credit's lot already warned about (points moved by a merge)
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
        if lot is not None:  # expiry closes exactly this lot; a merge's reversal takes from it
            lot.remaining += points
        else:
            ledger.spend(await repository.open_lots(session, acct.customer_id), -points)
    if points <= 0 or config is None:
        expires_at = None
    elif expires_at is FROM_PROGRAM:
        expires_at = ledger.expiry_for(config, occurred_at)
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
                warned_at=warned_at,
            ),
        )
    tier_points = None
    if kind == "earn":  # counted before the account changes, so the account is written once
        cached = tier_cache.get(acct.customer_id) if tier_cache is not None else None
        if cached is None:
            tier_points = await count_tier_points(session, config, acct.customer_id, now)
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
        await set_tier(session, config, acct, tier_points, now, cause=entry.id, who=who)
    return entry


async def count_tier_points(
    session: AsyncSession, config: ProgramConfig, customer_id: int, as_of: datetime
) -> int:
    return await repository.earned_between(
        session, customer_id, after=ledger.tier_window_start(config, as_of), until=as_of
    )


async def set_tier(
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
