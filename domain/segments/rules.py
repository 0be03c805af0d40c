"""The segment rule language: JSON in, a validated tree out, errors naming the path inside the rule.

A rule is one of::

    {"all": [rule, ...]}   {"any": [rule, ...]}   {"not": rule}
    {"trait": "city", "op": "equals", "value": "Berlin"}
    {"event": "Order Completed", "where": [{"property": "revenue", "op": "gte", "value": 50}],
     "times": {"at_least": 2}, "within_days": 30}
    {"value_tier": ["key", "major"]}
    {"rfm": "recency", "op": "gte", "value": 4}
    {"message": "opened", "template_id": "welcome", "within_days": 30}
    {"segment": "vip"}
    {"subscription": "newsletter"}   {"subscription": "*"}   (may be mailed that group / any marketing)
    {"loyalty_tier": ["gold", "platinum"]}   {"loyalty_balance": {"gte": 500, "lt": 1000}}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from domain.loyalty.schemas import OWN_EVENTS as LOYALTY_EVENTS
from domain.subscriptions.events import SUBSCRIPTION_CHANGED

# Whole-string patterns (used with fullmatch: ``$`` would also accept a trailing newline).
KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# Operators on a JSON value (customer trait or event property), grouped by the type of `value`.
SCALAR_OPS = {"equals", "not_equals"}
LIST_OPS = {"in", "not_in"}
STRING_OPS = {"contains"}
PRESENCE_OPS = {"exists", "not_exists"}
NUMBER_OPS = {"gt", "gte", "lt", "lte"}
DATE_OPS = {"before", "after"}
DAYS_OPS = {"within_last_days", "within_next_days"}
ANNIVERSARY_OPS = {"anniversary_today", "anniversary_this_month"}
VALUE_OPS = SCALAR_OPS | LIST_OPS | STRING_OPS | PRESENCE_OPS | NUMBER_OPS | DATE_OPS
TRAIT_OPS = VALUE_OPS | DAYS_OPS | ANNIVERSARY_OPS
# Ops whose truth changes with the clock alone (the window-edge pass re-evaluates them); "today" is
# the customer's, so a new time zone can change it too.
CLOCK_OPS = DAYS_OPS | ANNIVERSARY_OPS

TIERS = ("key", "major", "ordinary", "small")
RFM_DIMENSIONS = ("recency", "frequency", "monetary")
RFM_OPS = {"equals", "gt", "gte", "lt", "lte"}
COUNT_OPS = ("at_least", "at_most", "exactly")
MESSAGE_ACTIONS = ("received", "opened", "clicked")
# Engagement is recorded as these events (property `template_id`).
# The events the email area records for opens and clicks (domain/email/tracking.py), with template_id.
ENGAGEMENT_EVENTS = {"opened": "Email Opened", "clicked": "Email Link Clicked"}
# Conditions of the language not available in this installation (none at present).
NOT_YET: dict[str, str] = {}
# `{"subscription": "*"}`: may receive marketing at all (the subscriptions area's "all groups").
ALL_MARKETING = "*"
BALANCE_OPS = ("gt", "gte", "lt", "lte", "equals")
MAX_POINTS = 10**15
MAX_DAYS = 36_500
# Beyond these a rule compiles into SQL no database takes (SQLite's expression depth, PostgreSQL's
# 32 767 parameters) and no marketer can read; both include what segment references expand to, and an
# event condition's property tests count as conditions. An `in` list is one parameter, whatever its
# length (compiler.one_of).
MAX_DEPTH = 20
MAX_CONDITIONS = 100
MAX_LIST_VALUES = 1_000


class RuleError(Exception):
    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class NotAvailable(RuleError):
    """A condition of the language whose data this installation does not have yet."""


@dataclass(frozen=True)
class All:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Any_:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    rule: Rule


@dataclass(frozen=True)
class ValueTest:
    """One test on a JSON value: ``key`` looked up in traits or event properties."""

    key: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class Trait:
    test: ValueTest


@dataclass(frozen=True)
class Event:
    name: str
    where: tuple[ValueTest, ...] = ()
    count_op: str = "at_least"
    count: int = 1
    within_days: int | None = None


@dataclass(frozen=True)
class Tier:
    tiers: tuple[str, ...]


@dataclass(frozen=True)
class Rfm:
    dimension: str
    op: str
    value: int


@dataclass(frozen=True)
class MessageEngagement:
    action: str
    template_id: str | None = None
    within_days: int | None = None


@dataclass(frozen=True)
class Subscribed:
    """Would a marketing email of ``group_id`` reach the customer now (the send-time check)?"""

    group_id: str
    path: str = field(default="", compare=False)


@dataclass(frozen=True)
class LoyaltyTier:
    tiers: tuple[str, ...]
    path: str = field(default="", compare=False)


@dataclass(frozen=True)
class LoyaltyBalance:
    tests: tuple[tuple[str, int], ...]  # (op, points), all must hold


@dataclass(frozen=True)
class SegmentRef:
    segment_id: str
    path: str = field(default="", compare=False)


Rule = (
    All
    | Any_
    | Not
    | Trait
    | Event
    | Tier
    | Rfm
    | MessageEngagement
    | Subscribed
    | LoyaltyTier
    | LoyaltyBalance
    | SegmentRef
)
KINDS = (
    "all",
    "any",
    "not",
    "trait",
    "event",
    "value_tier",
    "rfm",
    "message",
    "subscription",
    "loyalty_tier",
    "loyalty_balance",
    "segment",
)


def check_size(rule: Rule, path: str = "rule") -> None:
    """A rule a marketer saves (stored ones are not re-checked: a limit may not unmake them)."""
    conditions = sum(_conditions(node) for node in walk(rule))
    if conditions > MAX_CONDITIONS:
        raise RuleError(path, f"a rule has at most {MAX_CONDITIONS} conditions (this one has {conditions})")


def _conditions(node: Rule) -> int:
    if isinstance(node, All | Any_ | Not):
        return 0
    return 1 + len(node.where) if isinstance(node, Event) else 1  # each property test is a condition


def check_expanded_depth(rule: Rule, segments: dict[str, Rule]) -> None:
    """``rule`` nests at most MAX_DEPTH levels deep with its segment references expanded (each stored
    rule is within the limit, a chain of them need not be); the error names the reference."""
    for ref, depth in _references_at(rule, 0):
        total = depth + nesting(expand(segments[ref.segment_id], segments))
        if total > MAX_DEPTH:
            raise RuleError(
                ref.path,
                f"with the segments it refers to expanded, rules nest at most {MAX_DEPTH} levels deep "
                f"(through segment {ref.segment_id!r} this one nests {total})",
            )


def _references_at(rule: Rule, depth: int):
    """Each segment reference of ``rule`` with the levels of all, any and not above it."""
    if isinstance(rule, SegmentRef):
        yield rule, depth
    elif isinstance(rule, All | Any_):
        for child in rule.rules:
            yield from _references_at(child, depth + 1)
    elif isinstance(rule, Not):
        yield from _references_at(rule.rule, depth + 1)


def nesting(rule: Rule) -> int:
    """Levels of all, any and not above the deepest condition (as ``parse`` counts them)."""
    if isinstance(rule, All | Any_):
        return 1 + max(nesting(child) for child in rule.rules)
    if isinstance(rule, Not):
        return 1 + nesting(rule.rule)
    return 0


def parse(raw: Any, path: str = "rule", depth: int = 0) -> Rule:
    if depth > MAX_DEPTH:
        raise RuleError(path, f"rules nest at most {MAX_DEPTH} levels deep")
    if not isinstance(raw, dict):
        raise RuleError(path, "must be an object")
    for key, label in NOT_YET.items():
        if key in raw:
            raise NotAvailable(path, f"{label} conditions are not available yet")
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        found = ", ".join(sorted(raw)) or "nothing"
        raise RuleError(path, f"must have exactly one of {', '.join(KINDS)} (found {found})")
    kind = kinds[0]
    return _PARSERS[kind](raw, path, depth)


def _allowed(raw: dict, path: str, keys: set[str]) -> None:
    extra = sorted(set(raw) - keys)
    if extra:
        raise RuleError(f"{path}.{extra[0]}", f"unknown field (allowed: {', '.join(sorted(keys))})")


def _group(raw: dict, path: str, depth: int) -> Rule:
    kind = "all" if "all" in raw else "any"
    _allowed(raw, path, {kind})
    items = raw[kind]
    if not isinstance(items, list) or not items:
        raise RuleError(f"{path}.{kind}", "must be a non-empty list of rules")
    rules = tuple(parse(item, f"{path}.{kind}[{i}]", depth + 1) for i, item in enumerate(items))
    return All(rules) if kind == "all" else Any_(rules)


def _not(raw: dict, path: str, depth: int) -> Rule:
    _allowed(raw, path, {"not"})
    return Not(parse(raw["not"], f"{path}.not", depth + 1))


def _key(value: Any, path: str, what: str) -> str:
    if not isinstance(value, str) or not KEY.fullmatch(value):
        raise RuleError(path, f"{what} must be 1-64 letters, digits, '_' or '-'")
    return value


def _days(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DAYS:
        raise RuleError(path, f"must be a whole number of days between 0 and {MAX_DAYS}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e15


def _is_date(value: Any) -> bool:
    """A calendar date written YYYY-MM-DD (2024-02-30 is no date)."""
    if not (isinstance(value, str) and DATE.fullmatch(value)):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _operator(raw: dict, path: str, ops: set[str]) -> str:
    op, known = raw.get("op"), ", ".join(sorted(ops))
    if not isinstance(op, str):  # a list or an object cannot even be looked up among the operators
        raise RuleError(f"{path}.op", f"must be the name of an operator (known: {known})")
    if op not in ops:
        raise RuleError(f"{path}.op", f"unknown operator {op[:60]!r} (known: {known})")
    return op


def parse_value_test(raw: dict, path: str, key_field: str, ops: set[str]) -> ValueTest:
    _allowed(raw, path, {key_field, "op", "value"})
    key = _key(raw.get(key_field), f"{path}.{key_field}", key_field)
    op = _operator(raw, path, ops)
    value = raw.get("value")
    vpath = f"{path}.value"
    needs_value = op not in PRESENCE_OPS | ANNIVERSARY_OPS
    if not needs_value:
        if "value" in raw:
            raise RuleError(vpath, f"operator {op} takes no value")
        return ValueTest(key, op)
    if "value" not in raw:
        raise RuleError(vpath, f"operator {op} needs a value")
    if op in SCALAR_OPS and not _is_scalar(value):
        raise RuleError(vpath, f"operator {op} needs a string, number or boolean")
    if op in LIST_OPS:
        if not isinstance(value, list) or not value or not all(_is_scalar(v) for v in value):
            raise RuleError(vpath, f"operator {op} needs a non-empty list of strings, numbers or booleans")
        if len(value) > MAX_LIST_VALUES:
            raise RuleError(vpath, f"operator {op} takes at most {MAX_LIST_VALUES} values")
        value = tuple(value)
    if op in STRING_OPS and not isinstance(value, str):
        raise RuleError(vpath, f"operator {op} needs a string")
    if op in NUMBER_OPS and not _is_number(value):
        raise RuleError(vpath, f"operator {op} needs a number")
    if op in DATE_OPS and not _is_date(value):
        raise RuleError(vpath, f"operator {op} needs a date as YYYY-MM-DD")
    if op in DAYS_OPS:
        value = _days(value, vpath)
    return ValueTest(key, op, value)


def _trait(raw: dict, path: str, _depth: int) -> Rule:
    return Trait(parse_value_test(raw, path, "trait", TRAIT_OPS))


def _event(raw: dict, path: str, _depth: int) -> Rule:
    _allowed(raw, path, {"event", "where", "times", "within_days"})
    name = raw["event"]
    if not isinstance(name, str) or not 0 < len(name) <= 255:
        raise RuleError(f"{path}.event", "must be an event name (1-255 characters)")
    where_raw = raw.get("where", [])
    if not isinstance(where_raw, list):
        raise RuleError(f"{path}.where", "must be a list of property tests")
    where = []
    for i, item in enumerate(where_raw):
        ipath = f"{path}.where[{i}]"
        if not isinstance(item, dict):
            raise RuleError(ipath, "must be an object")
        where.append(parse_value_test(item, ipath, "property", VALUE_OPS))
    count_op, count = "at_least", 1
    if "times" in raw:
        times = raw["times"]
        tpath = f"{path}.times"
        if not isinstance(times, dict) or len(times) != 1:
            raise RuleError(tpath, "must be one of {at_least: N}, {at_most: N}, {exactly: N}")
        ((count_op, count),) = times.items()
        if count_op not in COUNT_OPS:
            raise RuleError(f"{tpath}.{count_op}", f"unknown operator (known: {', '.join(COUNT_OPS)})")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1_000_000:
            raise RuleError(f"{tpath}.{count_op}", "must be a whole number from 0 to 1000000")
    within = raw.get("within_days")
    if within is not None:
        within = _days(within, f"{path}.within_days")
    return Event(name, tuple(where), count_op, count, within)


def _tier(raw: dict, path: str, _depth: int) -> Rule:
    _allowed(raw, path, {"value_tier"})
    tiers = raw["value_tier"]
    if isinstance(tiers, str):
        tiers = [tiers]
    if not isinstance(tiers, list) or not tiers or not all(t in TIERS for t in tiers):
        raise RuleError(f"{path}.value_tier", f"must be one or more of {', '.join(TIERS)}")
    return Tier(tuple(dict.fromkeys(tiers)))


def _rfm(raw: dict, path: str, _depth: int) -> Rule:
    _allowed(raw, path, {"rfm", "op", "value"})
    if raw["rfm"] not in RFM_DIMENSIONS:
        raise RuleError(f"{path}.rfm", f"must be one of {', '.join(RFM_DIMENSIONS)}")
    _operator(raw, path, RFM_OPS)
    value = raw.get("value")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise RuleError(f"{path}.value", "must be a score from 1 to 5")
    return Rfm(raw["rfm"], raw["op"], value)


def _message(raw: dict, path: str, _depth: int) -> Rule:
    _allowed(raw, path, {"message", "template_id", "within_days"})
    if raw["message"] not in MESSAGE_ACTIONS:
        raise RuleError(f"{path}.message", f"must be one of {', '.join(MESSAGE_ACTIONS)}")
    template_id = raw.get("template_id")
    if template_id is not None:
        _key(template_id, f"{path}.template_id", "template_id")
    within = raw.get("within_days")
    if within is not None:
        within = _days(within, f"{path}.within_days")
    return MessageEngagement(raw["message"], template_id, within)


def _subscription(raw: dict, path: str, _depth: int) -> Rule:
    _allowed(raw, path, {"subscription"})
    group = raw["subscription"]
    gpath = f"{path}.subscription"
    if group != ALL_MARKETING:
        _key(group, gpath, "subscription (a subscription group id, or '*' for any marketing)")
    return Subscribed(group, path=gpath)


def _loyalty_tier(raw: dict, path: str, _depth: int) -> Rule:
    _allowed(raw, path, {"loyalty_tier"})
    tiers = raw["loyalty_tier"]
    tpath = f"{path}.loyalty_tier"
    if isinstance(tiers, str):
        tiers = [tiers]
    if not isinstance(tiers, list) or not tiers:
        raise RuleError(tpath, "must be a tier name or a non-empty list of tier names")
    for i, tier in enumerate(tiers):
        if not isinstance(tier, str) or not 0 < len(tier) <= 64:
            raise RuleError(f"{tpath}[{i}]", "must be a tier name (1-64 characters)")
    return LoyaltyTier(tuple(dict.fromkeys(tiers)), path=tpath)


def _loyalty_balance(raw: dict, path: str, _depth: int) -> Rule:
    _allowed(raw, path, {"loyalty_balance"})
    tests = raw["loyalty_balance"]
    bpath = f"{path}.loyalty_balance"
    if not isinstance(tests, dict) or not tests:
        raise RuleError(
            bpath, f'must be an object of one or more of {", ".join(BALANCE_OPS)}, e.g. {{"gte": 500}}'
        )
    out = []
    for op, points in tests.items():
        if op not in BALANCE_OPS:
            raise RuleError(f"{bpath}.{op}", f"unknown operator (known: {', '.join(BALANCE_OPS)})")
        if isinstance(points, bool) or not isinstance(points, int) or not 0 <= points <= MAX_POINTS:
            raise RuleError(f"{bpath}.{op}", "must be a whole number of points, 0 or more")
        out.append((op, points))
    return LoyaltyBalance(tuple(out))


def _segment(raw: dict, path: str, _depth: int) -> Rule:
    _allowed(raw, path, {"segment"})
    return SegmentRef(_key(raw["segment"], f"{path}.segment", "segment"), path=f"{path}.segment")


_PARSERS = {
    "all": _group,
    "any": _group,
    "not": _not,
    "trait": _trait,
    "event": _event,
    "value_tier": _tier,
    "rfm": _rfm,
    "message": _message,
    "subscription": _subscription,
    "loyalty_tier": _loyalty_tier,
    "loyalty_balance": _loyalty_balance,
    "segment": _segment,
}


def walk(rule: Rule):
    """Every node of a rule, depth first (segment references are not expanded)."""
    yield rule
    if isinstance(rule, All | Any_):
        for child in rule.rules:
            yield from walk(child)
    elif isinstance(rule, Not):
        yield from walk(rule.rule)


def references(rule: Rule) -> list[SegmentRef]:
    return [node for node in walk(rule) if isinstance(node, SegmentRef)]


def expand(rule: Rule, segments: dict[str, Rule]) -> Rule:
    """Replace segment references by the referenced rules (references are checked acyclic on save)."""
    if isinstance(rule, SegmentRef):
        return expand(segments[rule.segment_id], segments)
    if isinstance(rule, All):
        return All(tuple(expand(r, segments) for r in rule.rules))
    if isinstance(rule, Any_):
        return Any_(tuple(expand(r, segments) for r in rule.rules))
    if isinstance(rule, Not):
        return Not(expand(rule.rule, segments))
    return rule


def engagement_event(rule: MessageEngagement) -> Event:
    """Opens and clicks are events carrying the template id; received is the delivery ledger."""
    where = (ValueTest("template_id", "equals", rule.template_id),) if rule.template_id else ()
    return Event(ENGAGEMENT_EVENTS[rule.action], where, "at_least", 1, rule.within_days)


# How a change can move a rule's outcome: make it start to hold, make it stop holding, or either.
RAISES, LOWERS = 1, 2
EITHER = RAISES | LOWERS
_COUNT_EFFECTS = {"at_least": RAISES, "at_most": LOWERS, "exactly": EITHER}


def event_effects(expanded: Rule) -> list[tuple[Event, int]]:
    """Each event condition of ``expanded`` with how one more matching event can move the whole rule.

    New events only add to counts: more of them can make "at least N" start to hold and "at most N"
    (and "not performed") stop holding; "exactly N" can do both. A ``not`` above a condition swaps
    the two. So a customer whose new events only raise the rule needs a check only while outside the
    segment, and one whose new events only lower it only while inside. Conditions that hold whatever
    the count ("at least 0") are left out.
    """
    found: list[tuple[Event, int]] = []

    def visit(node: Rule, positive: bool) -> None:
        if isinstance(node, All | Any_):
            for child in node.rules:
                visit(child, positive)
        elif isinstance(node, Not):
            visit(node.rule, not positive)
        elif isinstance(node, MessageEngagement) and node.action != "received":
            visit(engagement_event(node), positive)
        elif isinstance(node, Event) and not (node.count_op == "at_least" and node.count == 0):
            effect = _COUNT_EFFECTS[node.count_op]
            found.append((node, effect if positive or effect == EITHER else EITHER ^ effect))

    visit(expanded, True)
    return found


@dataclass(frozen=True)
class Dependencies:
    """What can change a rule's outcome for a customer, so refreshes touch only what they must."""

    event_names: frozenset[str]
    messages: bool
    scores: bool
    traits: bool
    event_windows: tuple[tuple[str, int], ...]  # (event name, days) windows whose edge moves with time
    message_windows: tuple[int, ...]  # received-message windows in days
    clock_traits: bool  # date traits relative to today


def dependencies(expanded: Rule) -> Dependencies:
    names, windows, message_windows = set(), set(), set()
    messages = scores = traits = clock = False
    for node in walk(expanded):
        if isinstance(node, Event):
            names.add(node.name)
            if node.within_days is not None:
                windows.add((node.name, node.within_days))
        elif isinstance(node, MessageEngagement):
            if node.action == "received":
                messages = True
                if node.within_days is not None:
                    message_windows.add(node.within_days)
            else:
                names.add(ENGAGEMENT_EVENTS[node.action])
                if node.within_days is not None:
                    windows.add((ENGAGEMENT_EVENTS[node.action], node.within_days))
        elif isinstance(node, Tier | Rfm):
            scores = True
        elif isinstance(node, Subscribed):
            # Choices and suppressions are recorded as this event on every customer they concern.
            names.add(SUBSCRIPTION_CHANGED)
        elif isinstance(node, LoyaltyTier | LoyaltyBalance):
            # Every ledger entry and tier change is an event of the member (earn, redeem, expire, ...).
            names |= LOYALTY_EVENTS
        elif isinstance(node, Trait):
            traits = True
            clock = clock or node.test.op in CLOCK_OPS
    return Dependencies(
        frozenset(names),
        messages,
        scores,
        traits,
        tuple(sorted(windows)),
        tuple(sorted(message_windows)),
        clock,
    )
