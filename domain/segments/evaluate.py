"""The in-process evaluator: does one customer match a rule? Used by journey branches and entry filters.

It must agree with the SQL compiler (domain/segments/compiler.py) on every rule and every customer; a
property-based test generates both and compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain import dates
from domain.segments import calendar as cal
from domain.segments import rules as r


@dataclass
class Score:
    tier: str | None
    recency: int | None
    frequency: int | None
    monetary: int | None


@dataclass
class MessageFact:
    template_id: str | None
    status: str
    sent_at: datetime


@dataclass
class EventFact:
    name: str | None
    properties: dict[str, Any]
    timestamp: datetime


# The loyalty programme's default tiers start with this one (domain/loyalty/schemas.py).
DEFAULT_LOWEST_TIER = "member"


@dataclass
class CustomerFacts:
    """Everything a rule can look at for one customer."""

    traits: dict[str, Any]
    timezone: str | None = None
    events: list[EventFact] = field(default_factory=list)
    messages: list[MessageFact] = field(default_factory=list)
    score: Score | None = None
    email: str | None = None
    suppressed: bool = False  # the address is on the suppression list (any reason)
    unsubscribed_all: bool = False  # the person unsubscribed from all marketing
    choices: dict[str, bool] = field(default_factory=dict)  # group id -> subscribed
    opt_in_groups: frozenset[str] = frozenset()  # groups that need an explicit opt-in
    # Customers without a loyalty account have no points and the programme's lowest tier.
    loyalty_tier: str = DEFAULT_LOWEST_TIER
    loyalty_balance: int = 0


def subscribed(group_id: str, facts: CustomerFacts) -> bool:
    """The send-time check (domain.subscriptions.service.blocked) for a marketing email of the group:
    an address, not suppressed, not unsubscribed from all, and not opted out (opt-in groups: opted in)."""
    if not facts.email or facts.suppressed or facts.unsubscribed_all:
        return False
    if group_id == r.ALL_MARKETING:
        return True
    choice = facts.choices.get(group_id)
    if choice is None:
        return group_id not in facts.opt_in_groups
    return choice


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(actual: Any, expected: Any) -> bool:
    """JSON equality: types must match (true is not 1), numbers compare by value (1 == 1.0)."""
    if isinstance(expected, bool):
        return isinstance(actual, bool) and actual == expected
    if _is_number(expected):
        return _is_number(actual) and actual == expected
    return isinstance(actual, str) and actual == expected


_NUMBER = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "equals": lambda a, b: a == b,
}


def test_value(test: r.ValueTest, values: dict[str, Any], zone: str | None, now: datetime) -> bool:
    value = values.get(test.key) if isinstance(values, dict) else None
    op = test.op
    if op == "exists":
        return value is not None
    if op == "not_exists":
        return value is None
    if op == "equals":
        return _same(value, test.value)
    if op == "not_equals":
        return not _same(value, test.value)
    if op == "in":
        return any(_same(value, v) for v in test.value)
    if op == "not_in":
        return not any(_same(value, v) for v in test.value)
    if op == "contains":
        return isinstance(value, str) and test.value in value
    if op in r.NUMBER_OPS:
        return _is_number(value) and _NUMBER[op](value, test.value)
    if op in r.ANNIVERSARY_OPS:
        month_day = dates.month_day(value)
        if month_day is None:
            return False
        today = cal.local_date(zone, now)
        if op == "anniversary_today":
            return month_day in cal.anniversary_days(today)
        return month_day[:2] == f"{today.month:02d}"
    day = dates.leading_date(value)
    if day is None:
        return False
    if op == "before":
        return day < test.value
    if op == "after":
        return day > test.value
    today = cal.local_date(zone, now)
    if op in r.DAYS_OPS:
        low, high = cal.day_span(today, test.value, forward=op == "within_next_days")
        return low <= day <= high
    raise AssertionError(f"unhandled operator {op}")


def _count_matches(op: str, count: int, n: int) -> bool:
    return {"at_least": n >= count, "at_most": n <= count, "exactly": n == count}[op]


def evaluate(rule: r.Rule, facts: CustomerFacts, now: datetime) -> bool:
    """``rule`` must be expanded (no segment references)."""
    match rule:
        case r.All(rules):
            return all(evaluate(x, facts, now) for x in rules)
        case r.Any_(rules):
            return any(evaluate(x, facts, now) for x in rules)
        case r.Not(inner):
            return not evaluate(inner, facts, now)
        case r.Trait(test):
            return test_value(test, facts.traits or {}, facts.timezone, now)
        case r.Event():
            since = now - timedelta(days=rule.within_days) if rule.within_days is not None else None
            n = sum(
                1
                for e in facts.events
                if e.name == rule.name
                and (since is None or e.timestamp >= since)
                and all(test_value(t, e.properties or {}, facts.timezone, now) for t in rule.where)
            )
            return _count_matches(rule.count_op, rule.count, n)
        case r.MessageEngagement(action="received"):
            since = now - timedelta(days=rule.within_days) if rule.within_days is not None else None
            return any(
                m.status == "sent"
                and (rule.template_id is None or m.template_id == rule.template_id)
                and (since is None or m.sent_at >= since)
                for m in facts.messages
            )
        case r.MessageEngagement():
            return evaluate(r.engagement_event(rule), facts, now)
        case r.Tier(tiers):
            return facts.score is not None and facts.score.tier in tiers
        case r.Rfm(dimension, op, value):
            score = getattr(facts.score, dimension, None) if facts.score else None
            return score is not None and _NUMBER[op](score, value)
        case r.Subscribed(group_id):
            return subscribed(group_id, facts)
        case r.LoyaltyTier(tiers):
            return facts.loyalty_tier in tiers
        case r.LoyaltyBalance(tests):
            return all(_NUMBER[op](facts.loyalty_balance, points) for op, points in tests)
        case r.SegmentRef():
            raise ValueError("expand segment references before evaluating")
    raise AssertionError(f"unhandled rule {rule!r}")
