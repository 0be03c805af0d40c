"""The SQL of the data-quality review, over known customers (a userId). One pass over the customers
table scores accuracy, completeness and timeliness; consistency groups by email, phone and sources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    String,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers.models import Customer
from domain.events.models import Event
from domain.segments.compiler import JsonValue

customers = Customer.__table__
events = Event.__table__
# Fields compared between sources (besides the required traits): the ones that identify a person.
IDENTITY_FIELDS = ("email", "phone")
_SEPARATORS = (" ", "-", ".", "(", ")")
IDENTIFY = "identify"


def _known():
    return customers.c.user_id.is_not(None)


class Checks:
    """Per-customer predicates (SQL expressions) for one dialect, one set of required traits."""

    def __init__(self, dialect: str, required: list[str], zones: list[str], fresh_since: datetime):
        self.dialect = dialect
        email = customers.c.email
        well_formed = and_(email.like("_%@_%._%"), not_(email.like("%@%@%")), not_(email.like("% %")))
        self.bad_email = and_(email.is_not(None), not_(well_formed))
        phone = JsonValue(dialect, customers.c.traits, "phone")
        if dialect == "postgresql":  # the value's type looked up once per row, not three times
            self.bad_phone = _by_type(phone, string=not_(self._phone_ok(phone.text)), other=true())
        else:
            self.bad_phone = and_(
                phone.exists(), or_(not_(phone.is_string), not_(self._phone_ok(phone.text)))
            )
        zone = customers.c.timezone
        # Inlined constants: PostgreSQL then hashes the list instead of comparing each row 600 times.
        known_zones = bindparam("zones", zones, expanding=True, literal_execute=True)
        self.bad_zone = and_(zone.is_not(None), zone.not_in(known_zones))
        self.missing = {trait: not_(self._present(trait)) for trait in required}
        self.stale = customers.c.updated_at < fresh_since

    def phone_digits(self, text) -> Any:
        for separator in _SEPARATORS:
            text = func.replace(text, separator, "")
        return text

    def _phone_ok(self, text):
        digits = self.phone_digits(text)
        if self.dialect == "postgresql":  # one regular expression: the digits are computed once per row
            return digits.op("~")(r"^\+?[0-9]{7,15}$")
        digits = case((func.substr(digits, 1, 1) == "+", func.substr(digits, 2)), else_=digits)
        non_digit = (
            digits.op("~")("[^0-9]") if self.dialect == "postgresql" else digits.op("GLOB")("*[^0-9]*")
        )
        return and_(func.length(digits).between(7, 15), not_(non_digit))

    def _present(self, trait: str):
        value = JsonValue(self.dialect, customers.c.traits, trait)
        if self.dialect == "postgresql":
            return _by_type(value, string=func.trim(value.text) != "", other=true())
        return and_(value.exists(), or_(not_(value.is_string), func.trim(value.text) != ""))

    @property
    def inaccurate(self):
        return or_(self.bad_email, self.bad_phone, self.bad_zone)


def _by_type(value: JsonValue, *, string, other):
    """PostgreSQL: ``string`` for a JSON string, false for a missing key or JSON null, else ``other``."""
    return case({"string": string, "null": false()}, value=func.coalesce(value.type, "null"), else_=other)


async def totals(session: AsyncSession, checks: Checks) -> dict[str, int]:
    """Customers, and per check how many fail, in one scan. The rows are counted per set of checks they
    fail (a bit each; a few dozen sets at most), so each check is evaluated once per customer, and as
    one grouping value PostgreSQL can count in parallel."""
    flags = {
        "email": checks.bad_email,
        "phone": checks.bad_phone,
        "timezone": checks.bad_zone,
        "stale": checks.stale,
        **{f"missing:{t}": m for t, m in checks.missing.items()},
    }
    bits = {name: 1 << i for i, name in enumerate(flags)}
    failed = sum((case((check, bits[name]), else_=0) for name, check in flags.items()), literal(0))
    grouped = await session.execute(select(failed, func.count()).where(_known()).group_by(failed))
    out = dict.fromkeys(["customers", "inaccurate", *flags], 0)
    inaccurate = bits["email"] | bits["phone"] | bits["timezone"]
    for mask, n in grouped:
        out["customers"] += n
        out["inaccurate"] += n if mask & inaccurate else 0
        for name, bit in bits.items():
            out[name] += n if mask & bit else 0
    return out


def accuracy_rows(checks: Checks) -> Select:
    c = customers.c
    return (
        select(
            c.id,
            c.user_id,
            checks.bad_email.label("email"),
            checks.bad_phone.label("phone"),
            checks.bad_zone.label("timezone"),
        )
        .where(_known(), checks.inaccurate)
        .order_by(c.id)
    )


def completeness_rows(checks: Checks) -> Select:
    c = customers.c
    flags = [m.label(f"missing:{t}") for t, m in checks.missing.items()]
    return select(c.id, c.user_id, *flags).where(_known(), or_(*checks.missing.values())).order_by(c.id)


def timeliness_rows(checks: Checks) -> Select:
    c = customers.c
    return select(c.id, c.user_id, c.updated_at).where(_known(), checks.stale).order_by(c.id)


def consistency_rows(checks: Checks, fields: list[str]) -> Select:
    """(customer id, user id, field, problem kind, how many others / sources) for every customer whose
    email or phone another known customer shares, or whose sources disagree on a field."""
    c = customers.c
    dialect = checks.dialect
    shared_email = (
        select(c.email.label("value"), func.count().label("n"))
        .where(_known(), c.email.is_not(None))
        .group_by(c.email)
        .having(func.count() > 1)
        .subquery()
    )
    by_email = (
        select(
            c.id,
            c.user_id,
            literal("email", String).label("field"),
            literal("shared").label("kind"),
            (shared_email.c.n - 1).label("n"),
        )
        .select_from(customers.join(shared_email, shared_email.c.value == c.email))
        .where(_known())
    )

    phone = JsonValue(dialect, c.traits, "phone")
    digits = checks.phone_digits(phone.text)
    phones = select(c.id, c.user_id, digits.label("digits")).where(_known(), phone.is_string).subquery()
    shared_phone = (
        select(phones.c.digits, func.count().label("n"))
        .where(phones.c.digits != "")
        .group_by(phones.c.digits)
        .having(func.count() > 1)
        .subquery()
    )
    by_phone = select(
        phones.c.id, phones.c.user_id, literal("phone", String), literal("shared"), shared_phone.c.n - 1
    ).select_from(phones.join(shared_phone, shared_phone.c.digits == phones.c.digits))

    parts = [by_email, by_phone, _source_conflicts(dialect, fields)]
    everything = union_all(*parts).subquery()
    return select(everything).order_by(everything.c[0], everything.c[2])


def _compared(dialect: str, traits, field: str):
    """A trait's value as sources are compared on it: as JSON values, so that a number never equals
    the string of its digits nor true the string "true", and 1 equals 1.0 (NULL for a missing key or
    JSON null). Emails (always strings) are compared lower-cased."""
    value = JsonValue(dialect, traits, field)
    if dialect == "postgresql":  # jsonb equality: typed, numbers by value
        if field == "email":
            return func.to_jsonb(func.lower(value.text))
        return case((value.type != "null", traits.op("->")(field)))
    if field == "email":
        return func.lower(value.text)
    # SQLite: numbers as numbers (1 = 1.0), anything else as its JSON text ('"true"' is not 'true')
    return case(
        (value.type.in_(("integer", "real")), value.text),
        (value.type != "null", traits.op("->")(f'$."{field}"')),
    )


def _source_conflicts(dialect: str, fields: list[str]) -> Select:
    """Customers whose sources' latest identify calls (the latest carrying the field) give different
    values for a field: one pass over the identify calls (a partial index finds them), by field."""
    e = events.c
    identifies = (
        select(e.customer_id, e.source_key_id, e.timestamp, e.id, e.traits)
        .where(e.type == IDENTIFY, e.source_key_id.is_not(None))
        .cte("identifies")
    )
    i = identifies.c
    per_field = []
    for field in fields:
        value = _compared(dialect, i.traits, field)
        per_field.append(
            select(i.customer_id, i.source_key_id, i.timestamp, i.id, literal(field, String).label("field"),
                   value.label("value")).where(value.is_not(None))
        )  # fmt: skip
    values = union_all(*per_field).subquery("values")
    v = values.c
    latest = select(
        v.customer_id,
        v.field,
        v.value,
        func.row_number()
        .over(
            partition_by=(v.customer_id, v.source_key_id, v.field), order_by=(v.timestamp.desc(), v.id.desc())
        )
        .label("rank"),
    ).subquery("latest")
    disagree = (
        select(latest.c.customer_id, latest.c.field, func.count(func.distinct(latest.c.value)).label("n"))
        .where(latest.c.rank == 1)
        .group_by(latest.c.customer_id, latest.c.field)
        .having(func.count(func.distinct(latest.c.value)) > 1)
        .subquery("disagree")
    )
    c = customers.c
    return (
        select(c.id, c.user_id, disagree.c.field, literal("sources"), disagree.c.n)
        .select_from(customers.join(disagree, disagree.c.customer_id == c.id))
        .where(_known())
    )


async def rows(session: AsyncSession, query: Select) -> list[Any]:
    return list(await session.execute(query))


async def first(session: AsyncSession, rows: Select, limit: int) -> list[Any]:
    return list(await session.execute(rows.limit(limit)))


async def stream(session: AsyncSession, rows: Select) -> AsyncIterator[Any]:
    result = await session.stream(rows)
    async for row in result:
        yield row
