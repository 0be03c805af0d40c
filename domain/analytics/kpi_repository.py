"""The SQL behind the KPIs. Every period is half-open: start <= t < end.

Each function takes contiguous buckets (one for a period, several for a trend) and answers for each in
one query: rows are scanned once for the whole span and counted in the bucket their time falls in.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import case, exists, func, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from domain.analytics.periods import Period
from domain.analytics.sql import count_if, dialect_of, one_if, plus_days, reached_goal
from domain.cases.models import Case
from domain.customers.models import Customer
from domain.email.models import Message, TemplateVersion
from domain.events.models import Event
from domain.journeys.models import Enrollment
from domain.revenue_sql import order_amount

cases = Case.__table__
customers = Customer.__table__
events = Event.__table__
messages = Message.__table__
versions = TemplateVersion.__table__
enrollments = Enrollment.__table__

MARKETING = "marketing"


def _span(column, buckets: list[Period]):
    return (column >= buckets[0].start) & (column < buckets[-1].end)


def _bucket(column, buckets: list[Period]):
    """The index of the bucket ``column`` falls in (rows are already limited to the span)."""
    if len(buckets) == 1:
        return literal(0)
    return case(*[(column < b.end, i) for i, b in enumerate(buckets[:-1])], else_=len(buckets) - 1)


async def _per_bucket(session: AsyncSession, query, buckets: list[Period], width: int) -> list[tuple]:
    """Rows of (bucket, *values) as one tuple of ``width`` values per bucket (zeros where none)."""
    found = {row[0]: tuple(row[1:]) for row in await session.execute(query)}
    return [found.get(i, (0,) * width) for i in range(len(buckets))]


async def csat(session: AsyncSession, buckets: list[Period]) -> list[tuple[int, int]]:
    """Per bucket: sum and number of the ratings given in it (sums add up across buckets exactly)."""
    at = cases.c.csat_at
    bucket = _bucket(at, buckets)
    query = (
        select(bucket, func.coalesce(func.sum(cases.c.csat_rating), 0), func.count(cases.c.csat_rating))
        .where(cases.c.csat_rating.is_not(None), _span(at, buckets))
        .group_by(bucket)
    )
    return [(int(total), int(n)) for total, n in await _per_bucket(session, query, buckets, 2)]


async def complaints(session: AsyncSession, buckets: list[Period], terms: list[str]) -> list[tuple[int, int]]:
    """Per bucket: cases opened in it that are complaints, and all cases opened in it."""
    # Case-insensitive in every script, as the terms are lower-cased (SQLite's lower() is ASCII only).
    lower = func.lower if dialect_of(session) == "postgresql" else func.unicode_lower
    reason = lower(cases.c.reason)
    complaint = or_(*[reason.contains(term.lower(), autoescape=True) for term in terms])
    bucket = _bucket(cases.c.created_at, buckets)
    query = (
        select(bucket, count_if(complaint), func.count())
        .where(_span(cases.c.created_at, buckets))
        .group_by(bucket)
    )
    return [(int(c), int(n)) for c, n in await _per_bucket(session, query, buckets, 2)]


async def growth(session: AsyncSession, buckets: list[Period]) -> list[tuple[int, int]]:
    """Per bucket: known customers (with a userId) created before it, and created in it (one scan)."""
    created = customers.c.created_at
    columns = [count_if(created < buckets[0].start)]
    columns += [count_if((created >= b.start) & (created < b.end)) for b in buckets]
    row = (
        await session.execute(
            select(*columns).where(customers.c.user_id.is_not(None), created < buckets[-1].end)
        )
    ).one()
    before, out = int(row[0]), []
    for new in row[1:]:
        out.append((before, int(new)))
        before += int(new)
    return out


async def retention(
    session: AsyncSession, buckets: list[Period], purchase_event: str, active_days: int
) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Per bucket, and for the whole span: customers active at its start (a purchase in
    [start - N days, start)), and those of them also active at its end. One pass over the purchases: a
    flag per customer and boundary."""
    window = timedelta(days=active_days)
    ts = events.c.timestamp
    boundaries = [b.start for b in buckets] + [buckets[-1].end]
    # The pass reads [first - N, last): active at the first boundary is a first purchase before it, at
    # the last a last purchase within N days of it. min and max cost half what a flag per row does.
    flags = [func.min(ts).label("first"), func.max(ts).label("last")]
    flags += [
        func.max(one_if((ts >= t - window) & (ts < t))).label(f"a{i}")
        for i, t in enumerate(boundaries[1:-1], start=1)
    ]
    per_customer = (
        select(*flags)
        .where(events.c.name == purchase_event, ts >= boundaries[0] - window, ts < boundaries[-1])
        .group_by(events.c.customer_id)
        .subquery()
    )
    c = per_customer.c
    active = [c.first < boundaries[0]]
    active += [c[f"a{i}"] == 1 for i in range(1, len(boundaries) - 1)]
    active.append(c.last >= boundaries[-1] - window)
    columns = []
    for i in range(len(buckets)):
        columns += [count_if(active[i]), count_if(active[i] & active[i + 1])]
    columns.append(count_if(active[0] & active[-1]))
    row = (await session.execute(select(*columns))).one()
    per_bucket = [(int(row[2 * i]), int(row[2 * i + 1])) for i in range(len(buckets))]
    return per_bucket, (per_bucket[0][0], int(row[-1]))


# Messages with the template version they were rendered from (its category: marketing or not).
with_version = messages.join(
    versions,
    (versions.c.template_id == messages.c.template_id) & (versions.c.version == messages.c.template_version),
)


def _marketing_sent():
    """Messages accepted by the relay whose template version is marketing mail."""
    return (messages.c.status == "sent") & (versions.c.category == MARKETING)


async def marketing_sent(session: AsyncSession, buckets: list[Period]) -> list[int]:
    sent = messages.c.sent_at
    bucket = _bucket(sent, buckets)
    query = (
        select(bucket, func.count())
        .select_from(with_version)
        .where(_marketing_sent(), _span(sent, buckets))
        .group_by(bucket)
    )
    return [int(n) for (n,) in await _per_bucket(session, query, buckets, 1)]


async def attributed_revenue(
    session: AsyncSession,
    buckets: list[Period],
    purchase_event: str,
    revenue_property: str,
    window_days: float,
) -> list[tuple[float, int]]:
    """Per bucket: revenue and count of its purchases that a marketing email sent to the customer in the
    ``window_days`` before the purchase (sent_at in [purchase - window, purchase)) is credited with."""
    dialect = dialect_of(session)

    def touched(e):
        ts = e.c.timestamp
        return exists(
            select(literal(1))
            .select_from(with_version)
            .where(
                messages.c.customer_id == e.c.customer_id,
                messages.c.created_at <= ts,  # created before sent: lets the (customer, created) index cut
                messages.c.sent_at < ts,
                messages.c.sent_at >= plus_days(ts, -window_days, dialect),
                # The same bounds for the whole span: the planner can pick the few messages that count.
                messages.c.sent_at >= buckets[0].start - timedelta(days=window_days),
                messages.c.sent_at < buckets[-1].end,
                _marketing_sent(),
            )
        )

    ts = events.c.timestamp
    purchases = (events.c.name == purchase_event) & _span(ts, buckets)
    credited = touched(events)
    if dialect == "postgresql":
        # Which purchases are credited needs only the (name, time, customer) index; the rows, with
        # their revenue, are then read for those alone rather than for every purchase of the span.
        # Whether a purchase is credited depends on its customer and time only: the same rows count.
        e = events.alias("credited")
        credited = tuple_(events.c.customer_id, ts).in_(
            select(e.c.customer_id, e.c.timestamp).where(
                e.c.name == purchase_event, _span(e.c.timestamp, buckets), touched(e)
            )
        )
    bucket = _bucket(ts, buckets)
    value = func.coalesce(func.sum(order_amount(dialect, events.c.properties, revenue_property)), 0.0)
    query = select(bucket, value, func.count()).where(purchases, credited).group_by(bucket)
    return [(float(v), int(n)) for v, n in await _per_bucket(session, query, buckets, 2)]


async def enrolled_versions(session: AsyncSession, buckets: list[Period]) -> list[tuple[str, int]]:
    """The (journey, version) pairs customers entered in the span."""
    rows = await session.execute(
        select(enrollments.c.journey_id, enrollments.c.version)
        .where(_span(enrollments.c.entered_at, buckets))
        .distinct()
        .order_by(enrollments.c.journey_id, enrollments.c.version)
    )
    return [(j, v) for j, v in rows]


async def goal_conversions(
    session: AsyncSession,
    buckets: list[Period],
    journey_id: str,
    version: int,
    goal: dict[str, Any],
    window_days: float,
) -> list[tuple[int, int]]:
    """Per bucket: enrollments of one journey version entered in it that received an email
    (recipients), and those whose customer reached the goal within ``window_days`` of entering."""
    dialect = dialect_of(session)
    e = enrollments
    prefix = e.c.workflow_id + "/"
    received = exists(
        select(literal(1)).where(
            messages.c.customer_id == e.c.customer_id,
            messages.c.journey_id == e.c.journey_id,
            messages.c.status == "sent",
            func.substr(messages.c.idempotency_key, 1, func.length(prefix)) == prefix,
        )
    )
    reached = reached_goal(events.alias("g"), goal, e.c.customer_id, e.c.entered_at, window_days, dialect)
    bucket = _bucket(e.c.entered_at, buckets)
    query = (
        select(bucket, func.count(), count_if(reached))
        .where(e.c.journey_id == journey_id, e.c.version == version, _span(e.c.entered_at, buckets), received)
        .group_by(bucket)
    )
    return [(int(n), int(c)) for n, c in await _per_bucket(session, query, buckets, 2)]
