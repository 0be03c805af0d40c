"""Scheduled maintenance: expiry warnings, expiry and tier re-evaluation. Each call handles one page of
members in the caller's transaction and is safe to run twice."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from domain.loyalty import events_out, repository
from domain.loyalty.models import LoyaltyAccount, LoyaltyLot
from domain.loyalty.postings import account_defaults, append, count_tier_points, set_tier
from domain.loyalty.schemas import POINTS_EXPIRING_SOON
from domain.loyalty.service import program


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
    accounts = await repository.lock_accounts(session, customers, account_defaults(config, now))
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
    accounts = await repository.lock_accounts(session, customers, account_defaults(config, now))
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
            await append(
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
    accounts = await repository.lock_accounts(session, customers, account_defaults(config, now))
    people = await repository.identities(session, customers)
    changed = 0
    for customer_id in customers:
        points = await count_tier_points(session, config, customer_id, now)
        change = await set_tier(
            session, config, accounts[customer_id], points, now, cause=None, who=people[customer_id]
        )
        changed += change is not None
    await events_out.flush(session)
    return changed, (customers[-1] if customers else None)
