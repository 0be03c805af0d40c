"""Compile a rule into one SQL query (SQLAlchemy Core) that runs on SQLite and PostgreSQL.

Two shapes of the same logic:
- full: every customer. Event conditions become ``id IN (SELECT customer_id ... GROUP BY ... HAVING)``,
  and a positive event condition at the top drives the query (no scan of the customers table when
  nothing else needs it), which is the query one would write by hand.
- scoped: a given set of customers (incremental refresh), a list of ids or a SELECT of them. Event
  conditions become correlated counts answered from the (customer_id, name, timestamp) index, and a
  driving event condition one grouped scan of those customers' entries in it, so the cost follows the
  set, not the table.

``change_signals`` compiles the other question the incremental refresh asks: which stored events can
have changed a rule's outcome for their customer, and in which direction.

Every predicate is two-valued (never NULL) so ``not`` means what it says; the in-Python evaluator
(domain/segments/evaluate.py) implements the same semantics.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Float,
    Select,
    String,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import SelectBase

from domain import dates
from domain.customers.models import Customer
from domain.email.models import Message
from domain.events.models import Event
from domain.loyalty.models import LoyaltyAccount
from domain.segments import calendar as cal
from domain.segments import rules as r
from domain.segments.evaluate import DEFAULT_LOWEST_TIER
from domain.segments.models import CustomerScore
from domain.subscriptions.events import SUBSCRIPTION_CHANGED
from domain.subscriptions.models import Subscription, SubscriptionGroup, Suppression

customers = Customer.__table__
events = Event.__table__
messages = Message.__table__
scores = CustomerScore.__table__
accounts = LoyaltyAccount.__table__
choices = Subscription.__table__
groups = SubscriptionGroup.__table__
suppressions = Suppression.__table__

_DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*"
_DATE_REGEX = "^[0-9]{4}-[0-9]{2}-[0-9]{2}"
_MONTH_DAY_GLOB = "[0-9][0-9]-[0-9][0-9]"  # the whole value
_ANNIVERSARY_REGEX = f"{_DATE_REGEX}|^[0-9]{{2}}-[0-9]{{2}}$"  # a date, or the whole value MM-DD


class JsonValue:
    """One key of a JSON object column, with type tests that match JSON semantics on both backends."""

    def __init__(self, dialect: str, column, key: str):
        self.dialect = dialect
        self.pg = dialect == "postgresql"
        if self.pg:
            self.type = func.jsonb_typeof(column.op("->")(key))
            self.text = column.op("->>", return_type=String)(key)
        else:
            path = f'$."{key}"'  # keys are validated: letters, digits, '_' and '-'
            self.type = func.json_type(column, path)
            self.text = func.json_extract(column, path, type_=String)
            self._raw = func.json_extract(column, path, type_=Float)

    @property
    def is_string(self):
        return self.type == ("string" if self.pg else "text")

    @property
    def is_number(self):
        return self.type == "number" if self.pg else self.type.in_(("integer", "real"))

    @property
    def number(self):
        # CASE guards the cast: PostgreSQL does not promise to evaluate AND operands in order.
        return case((self.is_number, cast(self.text, Float))) if self.pg else self._raw

    def exists(self):
        return and_(self.type.is_not(None), self.type != "null")

    def equals(self, value: Any):
        if isinstance(value, bool):
            if self.pg:
                return and_(self.type == "boolean", self.text == ("true" if value else "false"))
            return self.type == ("true" if value else "false")
        if isinstance(value, int | float):
            return and_(self.is_number, self.number == value)
        return and_(self.is_string, self.text == value)

    def one_of(self, values) -> ColumnElement[bool]:
        """Equal to one of ``values`` (as ``equals`` decides): one SQL IN per JSON type, each over one
        bound list, whatever the number of values. An OR of equals was as deep as the list was long
        (SQLite refuses expression trees deeper than 1 000) and cost a parameter or two per value
        (PostgreSQL takes at most 32 767 a statement)."""
        strings = [x for x in values if isinstance(x, str)]
        numbers = [float(x) for x in values if isinstance(x, int | float) and not isinstance(x, bool)]
        tests = [self.equals(flag) for flag in (True, False) if any(x is flag for x in values)]
        if strings:
            tests.append(and_(self.is_string, one_of(self.dialect, self.text, strings, String)))
        if numbers:
            tests.append(and_(self.is_number, one_of(self.dialect, self.number, numbers, Float)))
        return or_(*tests)

    def contains(self, value: str):
        found = func.strpos(self.text, value) if self.pg else func.instr(self.text, value)
        return and_(self.is_string, found > 0)

    def date(self):
        """The leading YYYY-MM-DD of a string value, the test that it has that shape, and the test that
        it is a real calendar day (as domain.dates.leading_date decides); test the shape first."""
        like = self.text.op("~")(_DATE_REGEX) if self.pg else self.text.op("GLOB")(_DATE_GLOB)
        day = func.substr(self.text, 1, 10)
        return day, and_(self.is_string, like), self._real_date(day)

    def month_day(self):
        """The MM-DD an anniversary recurs on, the test that the value has the shape of one, and the test
        that it is real (as domain.dates.month_day decides): a value with a leading YYYY-MM-DD, or one that
        is only MM-DD (birthdays kept without the year, as journeys read them). Test the shape first and
        reality last: it reads the value again, only for the few customers whose day it is."""
        if self.pg:
            shaped = self.text.op("~")(_ANNIVERSARY_REGEX)
        else:
            shaped = or_(self.text.op("GLOB")(_DATE_GLOB), self.text.op("GLOB")(_MONTH_DAY_GLOB))
        # The last five of the first ten characters, either way; one read of the value, no CASE (the
        # full evaluation reads it once per date some zone is on). SQLite counts a negative start from
        # the end, PostgreSQL does not.
        leading = func.substr(self.text, 1, 10)
        key = func.right(leading, 5) if self.pg else func.substr(leading, -5)
        # A month-day alone is real if it is a day of a leap year (02-29 is a birthday).
        alone = and_(
            func.length(leading) == 5, self._real_date(literal(f"{dates.LEAP_YEAR}-", String) + leading)
        )
        return key, and_(self.is_string, shaped), or_(alone, self._real_date(leading))

    def _real_date(self, day) -> ColumnElement[bool]:
        """``day`` (YYYY-MM-DD, digits) is a calendar day: a year from 0001 and a day its month has."""
        if not self.pg:
            # SQLite's date arithmetic carries an impossible day into the next month (date() without
            # a modifier gives it back as it came); max() turns the year 0000, which SQLite has, into
            # no match. Two reads of the value, where the arithmetic on strings reads it once per part.
            return func.date(day, "+0 days") == func.max(day, "0001")
        year, month, dom = func.substr(day, 1, 4), func.substr(day, 6, 2), func.substr(day, 9, 2)
        century, of_century = func.substr(day, 1, 2), func.substr(day, 3, 2)
        leap = or_(
            and_(of_century != "00", one_of(self.dialect, of_century, _MULTIPLES_OF_4, String)),
            and_(of_century == "00", one_of(self.dialect, century, _MULTIPLES_OF_4, String)),
        )
        return and_(
            year != "0000",
            month >= "01",
            month <= "12",
            dom >= "01",
            or_(
                dom <= "28",
                and_(month != "02", dom <= "30"),
                and_(dom == "31", not_(one_of(self.dialect, month, _SHORT_MONTHS, String))),
                and_(month == "02", dom == "29", leap),
            ),
        )


# Two-digit strings of the multiples of 4 (a year is a leap year when its last two digits are one of
# these but not 00, or they are 00 and its first two are one): strings, no cast that could fail.
_MULTIPLES_OF_4 = [f"{n:02d}" for n in range(0, 100, 4)]
_SHORT_MONTHS = ["02", "04", "06", "09", "11"]


_COMPARE = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "equals": lambda a, b: a == b,
}


def one_of(dialect: str, expr, values: list, type_) -> ColumnElement[bool]:
    """``expr IN values`` with one bound parameter however many values: an array on PostgreSQL, a
    JSON list read by json_each on SQLite."""
    if dialect == "postgresql":
        return expr == any_(bindparam(None, list(values), type_=ARRAY(type_)))
    listed = func.json_each(json.dumps(list(values), ensure_ascii=False)).table_valued("value")
    return expr.in_(select(listed.c.value))


def _two_valued(expr) -> ColumnElement[bool]:
    """True or false, never NULL. A CASE rather than coalesce(expr, false): SQLite evaluates every
    operand of an AND or OR that is a function's argument, but stops at the first that decides it in
    a CASE's WHEN, as in a WHERE (a birthday condition read the trait once per date zones are on)."""
    return case((expr, true()), else_=false())


class Compiler:
    def __init__(
        self,
        dialect: str,
        now: datetime,
        *,
        scoped: bool = False,
        lowest_tier: str = DEFAULT_LOWEST_TIER,
        erased: frozenset[int] = frozenset(),
    ):
        self.dialect = dialect
        self.now = now
        self.scoped = scoped
        self.lowest_tier = lowest_tier  # the tier of customers without a loyalty account
        self.erased = erased  # customers at an address the suppression list keeps only as a digest

    # -- value tests ------------------------------------------------------------------------------
    def value_test(self, test: r.ValueTest, column) -> ColumnElement[bool]:
        v = JsonValue(self.dialect, column, test.key)
        op = test.op
        if op == "exists":
            return _two_valued(v.exists())
        if op == "not_exists":
            return not_(_two_valued(v.exists()))
        if op in ("equals", "not_equals"):
            positive = _two_valued(v.equals(test.value))
            return positive if op == "equals" else not_(positive)
        if op in ("in", "not_in"):
            positive = _two_valued(v.one_of(test.value))
            return positive if op == "in" else not_(positive)
        if op == "contains":
            return _two_valued(v.contains(test.value))
        if op in r.NUMBER_OPS:
            return _two_valued(and_(v.is_number, _COMPARE[op](v.number, test.value)))
        if op in r.ANNIVERSARY_OPS:
            month_day, recurs, real = v.month_day()
            on_today = self._on_local_date(lambda today: self._anniversary(op, month_day, today))
            return _two_valued(and_(recurs, on_today, real))
        day, dated, real = v.date()
        if op == "before":
            return _two_valued(and_(dated, day < test.value, real))
        if op == "after":
            return _two_valued(and_(dated, day > test.value, real))
        if op in r.DAYS_OPS:
            forward = op == "within_next_days"

            def within(today: date) -> ColumnElement[bool]:
                low, high = cal.day_span(today, test.value, forward=forward)
                return and_(day >= low, day <= high)

            return _two_valued(and_(dated, self._on_local_date(within), real))
        raise AssertionError(f"unhandled operator {op}")

    def _on_local_date(self, test: Callable[[date], ColumnElement[bool]]) -> ColumnElement[bool]:
        """``test`` of the customer's today, which differs by time zone: one branch per date some zone
        is on right now (customers without a known zone are on UTC's)."""
        utc_today, others = cal.dates_by_zone(self.now)
        zone = customers.c.timezone
        elsewhere = [z for _, zones in others for z in zones]
        # Hundreds of zones can be on another date: each list is one bound parameter (one_of).
        here = or_(zone.is_(None), not_(one_of(self.dialect, zone, elsewhere, String)))
        groups = [(utc_today, here if elsewhere else true())]
        groups += [(day, one_of(self.dialect, zone, zones, String)) for day, zones in others]
        return or_(*[and_(in_zone, test(today)) for today, in_zone in groups])

    @staticmethod
    def _anniversary(op: str, month_day, today: date) -> ColumnElement[bool]:
        if op == "anniversary_today":
            return month_day.in_(sorted(cal.anniversary_days(today)))
        return func.substr(month_day, 1, 2) == f"{today.month:02d}"

    # -- conditions ----------------------------------------------------------------------------
    def condition(self, rule: r.Rule, id_col) -> ColumnElement[bool]:
        match rule:
            case r.All(rules):
                return and_(*[self.condition(x, id_col) for x in rules])
            case r.Any_(rules):
                return or_(*[self.condition(x, id_col) for x in rules])
            case r.Not(inner):
                return not_(self.condition(inner, id_col))
            case r.Trait(test):
                return self.value_test(test, customers.c.traits)
            case r.Event():
                return self._event(rule, id_col)
            case r.MessageEngagement(action="received"):
                return self._received(rule, id_col)
            case r.MessageEngagement():
                return self._event(r.engagement_event(rule), id_col)
            case r.Tier(tiers):
                return self._scored(scores.c.tier.in_(tiers), id_col)
            case r.Rfm(dimension, op, value):
                return self._scored(_COMPARE[op](scores.c[dimension], value), id_col)
            case r.Subscribed(group_id):
                return self._subscribed(group_id, id_col)
            case r.LoyaltyTier(tiers):
                return self._account(accounts.c.tier.in_(tiers), self.lowest_tier in tiers, id_col)
            case r.LoyaltyBalance(tests):
                cond = and_(*[_COMPARE[op](accounts.c.balance, points) for op, points in tests])
                no_account = all(_COMPARE[op](0, points) for op, points in tests)
                return self._account(cond, no_account, id_col)
            case r.SegmentRef():
                raise ValueError("expand segment references before compiling")
        raise AssertionError(f"unhandled rule {rule!r}")

    def event_filter(self, rule: r.Event) -> list:
        conds = [events.c.name == rule.name]
        if rule.within_days is not None:
            conds.append(events.c.timestamp >= self.now - timedelta(days=rule.within_days))
        conds += [self.value_test(t, events.c.properties) for t in rule.where]
        return conds

    def grouped(self, rule: r.Event, having_op: str, n: int) -> Select:
        """Customers whose matching-event count satisfies ``count <having_op> n``."""
        stmt = select(events.c.customer_id).where(*self.event_filter(rule)).group_by(events.c.customer_id)
        if not (having_op == "gte" and n <= 1):
            stmt = stmt.having(_COMPARE[having_op](func.count(), n))
        return stmt

    def _event(self, rule: r.Event, id_col) -> ColumnElement[bool]:
        op, n = rule.count_op, rule.count
        if op == "at_least" and n == 0:
            return true()
        none = op in ("at_most", "exactly") and n == 0
        if self.scoped:
            matching = select(events.c.id).where(events.c.customer_id == id_col, *self.event_filter(rule))
            if op == "at_least" and n == 1:
                return exists(matching)
            if none:
                return not_(exists(matching))
            counted = (
                select(func.count())
                .select_from(events)
                .where(events.c.customer_id == id_col, *self.event_filter(rule))
                .scalar_subquery()
            )
            return _COMPARE[{"at_least": "gte", "at_most": "lte", "exactly": "equals"}[op]](counted, n)
        if op == "at_least":
            return id_col.in_(self.grouped(rule, "gte", n))
        if op == "at_most":
            return not_(id_col.in_(self.grouped(rule, "gt", n)))
        if none:
            return not_(id_col.in_(self.grouped(rule, "gte", 1)))
        return id_col.in_(self.grouped(rule, "equals", n))

    def _received(self, rule: r.MessageEngagement, id_col) -> ColumnElement[bool]:
        conds = [messages.c.customer_id.is_not(None), messages.c.status == "sent"]
        if rule.template_id is not None:
            conds.append(messages.c.template_id == rule.template_id)
        if rule.within_days is not None:
            sent = func.coalesce(messages.c.sent_at, messages.c.created_at)
            conds.append(
                sent
                >= bindparam(None, self.now - timedelta(days=rule.within_days), type_=messages.c.sent_at.type)
            )
        if self.scoped:
            return exists(select(messages.c.id).where(messages.c.customer_id == id_col, *conds))
        return id_col.in_(select(messages.c.customer_id).where(*conds))

    def _subscribed(self, group_id: str, id_col) -> ColumnElement[bool]:
        """Mirror of evaluate.subscribed: the send-time check for a marketing email of the group."""
        email = customers.c.email
        reachable = and_(
            email.is_not(None),
            email != "",
            customers.c.unsubscribed_all_at.is_(None),
            not_(exists(select(suppressions.c.id).where(suppressions.c.address == email))),
        )
        if self.erased:
            # An erased person's entry keeps only the digest of the address; the few customers at such
            # an address are looked up beforehand (repository.erased_address_customers). Their ids,
            # written into the statement, cost PostgreSQL a hashed constant list, where a per-customer
            # probe of the list by digest doubled the time (most of it JIT-compiling the probe).
            listed = bindparam(None, sorted(self.erased), expanding=True, literal_execute=True)
            reachable = and_(reachable, customers.c.id.not_in(listed))
        if group_id == r.ALL_MARKETING:
            return _two_valued(reachable)
        mine = [choices.c.customer_id == id_col, choices.c.group_id == group_id]
        opted_in = exists(select(choices.c.id).where(*mine, choices.c.subscribed.is_(True)))
        chose = exists(select(choices.c.id).where(*mine))
        opt_in_group = exists(select(groups.c.id).where(groups.c.id == group_id, groups.c.opt_in.is_(True)))
        return _two_valued(and_(reachable, or_(opted_in, and_(not_(chose), not_(opt_in_group)))))

    def _account(self, cond, without_account: bool, id_col) -> ColumnElement[bool]:
        """Members whose loyalty account satisfies ``cond``, plus, when ``without_account``, customers
        with no account (balance 0, lowest tier)."""
        if self.scoped:
            has = exists(select(accounts.c.customer_id).where(accounts.c.customer_id == id_col, cond))
            none = not_(exists(select(accounts.c.customer_id).where(accounts.c.customer_id == id_col)))
        else:
            has = id_col.in_(select(accounts.c.customer_id).where(cond))
            none = not_(id_col.in_(select(accounts.c.customer_id)))
        return or_(has, none) if without_account else has

    def _scored(self, cond, id_col) -> ColumnElement[bool]:
        if self.scoped:
            return exists(select(scores.c.customer_id).where(scores.c.customer_id == id_col, cond))
        return id_col.in_(select(scores.c.customer_id).where(cond))


def shallow(rule: r.Rule, dialect: str) -> r.Rule:
    """The same test, shaped for SQL that parses however the rule nests: ``not`` pushed down to the
    conditions (De Morgan, which holds in SQL's three-valued logic too), a group directly inside a
    group of its kind merged into it, and on SQLite each group's nested groups written first.

    SQLite parses with a fixed stack (100 entries), and ``a AND (b OR (c AND ...))`` keeps every
    level's ``a AND (`` on it until the innermost closes: rules nested within the limit, once their
    segment references were expanded and the scoped statements of the refresher wrapped them, ran out
    ("parser stack overflow"). ``((... AND c) OR b) AND a`` keeps only the open parentheses."""
    if isinstance(rule, r.All | r.Any_ | r.Not):
        return _shallow(rule, False, dialect == "sqlite")
    return rule


def _shallow(rule: r.Rule, negated: bool, groups_first: bool) -> r.Rule:
    if isinstance(rule, r.Not):
        return _shallow(rule.rule, not negated, groups_first)
    if not isinstance(rule, r.All | r.Any_):
        return r.Not(rule) if negated else rule
    kind = r.All if isinstance(rule, r.All) != negated else r.Any_  # not all = any not
    members: list[r.Rule] = []
    for child in rule.rules:
        shaped = _shallow(child, negated, groups_first)
        members.extend(shaped.rules if isinstance(shaped, kind) else [shaped])
    if len(members) == 1:
        return members[0]
    if groups_first:
        members.sort(key=lambda member: -_height(member))  # stable: conditions keep their order
    return kind(tuple(members))


def _height(rule: r.Rule) -> int:
    """Levels of groups in a shaped rule (``not`` sits only on conditions there)."""
    return 1 + max(map(_height, rule.rules)) if isinstance(rule, r.All | r.Any_) else 0


def _needs_customer_row(rules: list[r.Rule]) -> bool:
    return any(isinstance(node, r.Trait | r.Subscribed) for rule in rules for node in r.walk(rule))


def _driver(rule: r.Rule) -> tuple[r.Event | None, list[r.Rule]]:
    """A positive event condition that every member must satisfy, and the rest of the rule."""
    if isinstance(rule, r.Event) and rule.count_op in ("at_least", "exactly") and rule.count > 0:
        return rule, []
    if isinstance(rule, r.All):
        for i, child in enumerate(rule.rules):
            driver, rest = _driver(child)
            if driver is not None and not rest:
                return driver, [*rule.rules[:i], *rule.rules[i + 1 :]]
    return None, []


def ids_filter(dialect: str, id_col, customer_ids: list[int]) -> ColumnElement[bool]:
    """``id_col IN ids`` with one bound parameter, whatever the number of ids."""
    if dialect == "postgresql":
        return id_col == any_(bindparam(None, list(customer_ids), type_=ARRAY(BigInteger)))
    return id_col.in_(ids_select(dialect, customer_ids))


def ids_select(dialect: str, customer_ids: list[int]) -> Select:
    """SELECT of the given ids (one bound parameter)."""
    if dialect == "postgresql":
        return select(func.unnest(bindparam(None, list(customer_ids), type_=ARRAY(BigInteger))))
    listed = func.json_each(json.dumps(list(customer_ids))).table_valued("value")
    return select(listed.c.value)


def in_scope(dialect: str, id_col, scope: list[int] | SelectBase) -> ColumnElement[bool]:
    """``id_col`` among a list of ids, or among the ids a SELECT returns."""
    return ids_filter(dialect, id_col, scope) if isinstance(scope, list) else id_col.in_(scope)


def members_query(
    rule: r.Rule,
    dialect: str,
    now: datetime,
    customer_ids: list[int] | SelectBase | None = None,
    *,
    lowest_tier: str = DEFAULT_LOWEST_TIER,
    erased: frozenset[int] = frozenset(),
) -> Select:
    """SELECT the ids of customers matching an expanded ``rule`` (all customers, or ``customer_ids``:
    a list, or a SELECT of ids). ``lowest_tier`` is the loyalty programme's first tier, the tier of
    customers without an account; ``erased`` the customers at an address kept on the suppression list
    only as an erased person's digest (repository.erased_address_customers), whom ``subscription``
    conditions do not reach."""
    rule = shallow(rule, dialect)
    if customer_ids is not None:
        return _scoped_members(rule, dialect, now, customer_ids, lowest_tier, erased)
    compiler = Compiler(dialect, now, lowest_tier=lowest_tier, erased=erased)
    driver, rest = _driver(rule)
    if driver is None:
        return select(customers.c.id).where(compiler.condition(rule, customers.c.id))
    having = "gte" if driver.count_op == "at_least" else "equals"
    grouped = compiler.grouped(driver, having, driver.count).subquery("driver")
    if not rest:
        return select(grouped.c.customer_id.label("id"))
    if not _needs_customer_row(rest):
        return select(grouped.c.customer_id.label("id")).where(
            and_(*[compiler.condition(x, grouped.c.customer_id) for x in rest])
        )
    joined = grouped.join(customers, customers.c.id == grouped.c.customer_id)
    return (
        select(customers.c.id)
        .select_from(joined)
        .where(and_(*[compiler.condition(x, customers.c.id) for x in rest]))
    )


def _scoped_members(
    rule: r.Rule,
    dialect: str,
    now: datetime,
    scope: list[int] | SelectBase,
    lowest_tier: str,
    erased: frozenset[int],
) -> Select:
    """The scoped shape. With a driving event condition, one grouped scan of the given customers'
    events (an index range per customer) finds who satisfies it, and only they are looked up further."""
    compiler = Compiler(dialect, now, scoped=True, lowest_tier=lowest_tier, erased=erased)
    driver, rest = _driver(rule)
    if driver is None:
        return select(customers.c.id).where(
            in_scope(dialect, customers.c.id, scope), compiler.condition(rule, customers.c.id)
        )
    having = "gte" if driver.count_op == "at_least" else "equals"
    grouped = compiler.grouped(driver, having, driver.count).where(
        in_scope(dialect, events.c.customer_id, scope)
    )
    if not rest:  # a customer's events go with the customer: no need to look the customer up
        return grouped
    return select(customers.c.id).where(
        customers.c.id.in_(grouped), *[compiler.condition(x, customers.c.id) for x in rest]
    )


def holds(
    rule: r.Rule,
    dialect: str,
    now: datetime,
    customer_id,
    *,
    lowest_tier: str = DEFAULT_LOWEST_TIER,
    erased: frozenset[int] = frozenset(),
) -> ColumnElement[bool]:
    """Does the customer ``customer_id`` (a column of another table) match ``rule``, scoped shape.
    False for a customer that no longer exists."""
    compiler = Compiler(dialect, now, scoped=True, lowest_tier=lowest_tier, erased=erased)
    matched = compiler.condition(shallow(rule, dialect), customers.c.id)
    return exists(select(customers.c.id).where(customers.c.id == customer_id, matched))


@dataclass(frozen=True)
class ChangeSignals:
    """Tests over one stored event: can it have made the rule start to hold for its customer
    (``raises``), or stop holding (``lowers``)? ``None``: no event can."""

    raises: ColumnElement[bool] | None
    lowers: ColumnElement[bool] | None


NO_SIGNALS = ChangeSignals(None, None)


def change_signals(rule: r.Rule, dialect: str, now: datetime) -> ChangeSignals:
    """What in a new event can move an expanded ``rule``: an event its conditions count (with its
    properties and inside its window; the direction from ``rules.event_effects``), or a change of the
    state it reads (traits set by an identify call, the time zone, subscription or loyalty changes,
    which are recorded as events of the customer), which can move it either way."""
    compiler = Compiler(dialect, now)
    raises, lowers = [], []
    for node, effect in r.event_effects(rule):
        counted = and_(*compiler.event_filter(node))
        if effect & r.RAISES:
            raises.append(counted)
        if effect & r.LOWERS:
            lowers.append(counted)
    state = _state_changes(rule, dialect)
    if state is not None:
        raises.append(state)
        lowers.append(state)
    return ChangeSignals(or_(*raises) if raises else None, or_(*lowers) if lowers else None)


def may_signal(rule: r.Rule, kinds: frozenset[tuple[str, str | None]]) -> bool:
    """Whether an event of one of these (type, name) kinds can pass ``change_signals(rule)``: a cheap
    test on the kinds a batch holds, so a segment none of its events concern is neither built nor run.
    It may say yes where the signals then find nothing, never no where they would find something."""
    if not kinds:
        return False
    names = {name for _, name in kinds}
    if names & r.dependencies(rule).event_names:  # counted events, subscription and loyalty events
        return True
    identify = any(kind == "identify" for kind, _ in kinds)
    for node in r.walk(rule):
        if isinstance(node, r.Trait) and node.test.op in r.CLOCK_OPS:
            return True  # any call may carry the customer's time zone
        if isinstance(node, r.Trait | r.Subscribed) and identify:
            return True  # the traits (or the email address) an identify call sets
    return False


def _state_changes(rule: r.Rule, dialect: str) -> ColumnElement[bool] | None:
    names: set[str] = set()
    traits: set[str] = set()  # identify traits that update what the rule reads
    zone = False
    for node in r.walk(rule):
        if isinstance(node, r.Trait):
            traits.add(node.test.key)
            zone = zone or node.test.op in r.CLOCK_OPS
        elif isinstance(node, r.Subscribed):
            names.add(SUBSCRIPTION_CHANGED)  # choices and suppressions of the customer
            traits.add("email")  # the address the send-time check looks at
        elif isinstance(node, r.LoyaltyTier | r.LoyaltyBalance):
            names |= r.LOYALTY_EVENTS  # every ledger entry and tier change of the member
    signals = [events.c.name.in_(sorted(names))] if names else []
    if zone:
        # Any call may carry the customer's time zone in its context; identify also in its traits.
        traits.add("timezone")
        signals.append(JsonValue(dialect, events.c.context, "timezone").type.is_not(None))
    if traits:
        sets = [JsonValue(dialect, events.c.traits, key).type.is_not(None) for key in sorted(traits)]
        signals.append(and_(events.c.type == "identify", or_(*sets)))
    return or_(*signals) if signals else None


def count_query(
    rule: r.Rule,
    dialect: str,
    now: datetime,
    *,
    lowest_tier: str = DEFAULT_LOWEST_TIER,
    erased: frozenset[int] = frozenset(),
) -> Select:
    inner = members_query(rule, dialect, now, lowest_tier=lowest_tier, erased=erased).subquery()
    return select(func.count()).select_from(inner)
