"""The ledger's arithmetic, free of I/O: what a rule earns, which lots a debit spends, and a replay of
the entries that recomputes balance, lots and tier from nothing but the ledger.

The service uses the same functions on live rows, so the stored state and the replay cannot drift
apart by construction; the audit and the property tests check that they do not drift in practice.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Protocol

from domain.loyalty.schemas import MAX_POINTS, EarnRule, ProgramConfig
from domain.revenue import MAX_REVENUE

CREDIT_KINDS = ("earn", "adjust")


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months, clamping the day (31 Jan + 1 month = 28/29 Feb)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def expiry_for(program: ProgramConfig, earned_at: datetime) -> datetime | None:
    return add_months(earned_at, program.expiry_months) if program.expiry_months else None


def expired_by(program: ProgramConfig, earned_at: datetime, now: datetime) -> bool:
    """Whether points earned at ``earned_at`` would have expired by ``now`` (an old event read late)."""
    expires_at = expiry_for(program, earned_at)
    return expires_at is not None and expires_at <= now


def tier_window_start(program: ProgramConfig, as_of: datetime) -> datetime | None:
    """Earn entries after this moment count towards the tier; ``None`` counts all of them."""
    return add_months(as_of, -program.tier_window_months) if program.tier_window_months else None


def matches(rule: EarnRule, event_name: str | None, properties: Mapping[str, Any]) -> bool:
    if rule.event != event_name:
        return False
    return all(properties.get(key) == value for key, value in rule.where.items())


def base_points(rule: EarnRule, properties: Mapping[str, Any]) -> int:
    """Points an event earns before tier multiplier and caps; 0 when its amount is missing or bad."""
    if rule.points is not None:
        return rule.points
    amount = properties.get(rule.amount_property)
    if isinstance(amount, bool) or not isinstance(amount, (int, float, str)):
        return 0
    try:
        value = Decimal(str(amount))
    except ArithmeticError:
        return 0
    if not value.is_finite() or value <= 0 or value >= MAX_REVENUE:
        # Refunds and zero-value orders earn nothing (a refund is an explicit adjustment), and an amount
        # lifetime value also ignores is a mistake, not an order.
        return 0
    # Decimal(str(float)) keeps 19.99 as 19.99, so 19.99 * 100 is 1999, not 1998.
    return int((value * Decimal(str(rule.points_per_unit))).to_integral_value(ROUND_FLOOR))


def with_multiplier(points: int, multiplier: float) -> int:
    """Points after the tier's multiplier, at most MAX_POINTS, as any one movement: a large order at a
    generous rate made a number no 64-bit column holds, and the earning pass failed on it for ever."""
    return min(int((Decimal(points) * Decimal(str(multiplier))).to_integral_value(ROUND_FLOOR)), MAX_POINTS)


class LotLike(Protocol):
    entry_id: int
    remaining: int
    earned_at: datetime


def spend_order(lots: Iterable[LotLike]) -> list[LotLike]:
    """Oldest points first; ties by entry id so every run agrees."""
    return sorted((lot for lot in lots if lot.remaining > 0), key=lambda lot: (lot.earned_at, lot.entry_id))


def spend(lots: Iterable[LotLike], points: int) -> list[tuple[LotLike, int]]:
    """Take ``points`` from the lots, oldest first. Returns (lot, taken) and mutates ``remaining``."""
    taken: list[tuple[LotLike, int]] = []
    left = points
    for lot in spend_order(lots):
        if left == 0:
            break
        take = min(lot.remaining, left)
        lot.remaining -= take
        left -= take
        taken.append((lot, take))
    if left:
        raise ValueError(f"lots hold {points - left} points, {points} needed")
    return taken


class EntryLike(Protocol):
    id: int
    kind: str
    points: int
    balance_after: int
    occurred_at: datetime
    lot_entry_id: int | None


@dataclass
class _Lot:
    entry_id: int
    remaining: int
    earned_at: datetime


@dataclass
class Replayed:
    balance: int = 0
    lifetime_earned: int = 0
    tier_points: int = 0
    tier: str = ""
    lots: dict[int, int] = field(default_factory=dict)  # open lots only
    problems: list[str] = field(default_factory=list)


def replay(entries: Iterable[EntryLike], program: ProgramConfig, tier_as_of: datetime) -> Replayed:
    """Rebuild a member's state from their entries alone, noting every rule the ledger breaks."""
    out = Replayed()
    lots: dict[int, _Lot] = {}
    since = tier_window_start(program, tier_as_of)
    for entry in sorted(entries, key=lambda e: e.id):
        if entry.points > 0 and entry.kind in CREDIT_KINDS:
            lots[entry.id] = _Lot(entry.id, entry.points, entry.occurred_at)
        elif entry.kind == "expire":
            lot = lots.get(entry.lot_entry_id or -1)
            if lot is None or lot.remaining != -entry.points:
                out.problems.append(
                    f"entry {entry.id} expires {-entry.points} points of a lot that holds "
                    f"{lot.remaining if lot else 'nothing'}"
                )
            if lot is not None:
                lot.remaining = max(0, lot.remaining + entry.points)
        elif entry.points < 0 and entry.lot_entry_id is not None:  # a reversal names the lot it takes from
            lot = lots.get(entry.lot_entry_id)
            if lot is None or lot.remaining < -entry.points:
                out.problems.append(
                    f"entry {entry.id} takes {-entry.points} points from a lot that holds "
                    f"{lot.remaining if lot else 'nothing'}"
                )
            if lot is not None:
                lot.remaining = max(0, lot.remaining + entry.points)
        elif entry.points < 0:
            try:
                spend(lots.values(), -entry.points)
            except ValueError as exc:
                out.problems.append(f"entry {entry.id} overdraws: {exc}")
        else:
            out.problems.append(f"entry {entry.id} has kind {entry.kind!r} with {entry.points} points")
        out.balance += entry.points
        if entry.balance_after != out.balance:
            out.problems.append(
                f"entry {entry.id} says balance {entry.balance_after}, replay has {out.balance}"
            )
        if out.balance < 0:
            out.problems.append(f"entry {entry.id} takes the balance below zero")
        if entry.kind == "earn":
            out.lifetime_earned += entry.points
            if entry.occurred_at <= tier_as_of and (since is None or entry.occurred_at > since):
                out.tier_points += entry.points
    out.lots = {lot.entry_id: lot.remaining for lot in lots.values() if lot.remaining > 0}
    out.tier = program.tier_for(out.tier_points).name
    return out
