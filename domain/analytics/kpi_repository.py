"""The SQL behind the KPIs. Every period is half-open: start <= t < end."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.analytics.periods import Period
from domain.analytics.sql import count_if, dialect_of, during, one_if, plus_days, reached_goal, revenue
from domain.cases.models import Case
from domain.customers.models import Customer
from domain.email.models import Message, TemplateVersion
from domain.events.models import Event
from domain.journeys.models import Enrollment

cases = Case.__table__
customers = Customer.__table__
events = Event.__table__
messages = Message.__table__
versions = TemplateVersion.__table__
enrollments = Enrollment.__table__

MARKETING = "marketing"


async def csat(session: AsyncSession, p: Period) -> tuple[float | None, int]:
    """Mean rating and number of ratings given in the period."""
    row = (
        await session.execute(
            select(func.avg(cases.c.csat_rating), func.count(cases.c.csat_rating)).where(
                cases.c.csat_rating.is_not(None), during(cases.c.csat_at, p)
            )
        )
    ).one()
    return (float(row[0]) if row[0] is not None else None), row[1]


async def complaints(session: AsyncSession, p: Period, terms: list[str]) -> tuple[int, int]:
    """Cases opened in the period: how many are complaints, how many in all."""
    reason = func.lower(cases.c.reason)
    complaint = or_(*[reason.contains(term.lower(), autoescape=True) for term in terms])
    row = (
        await session.execute(select(count_if(complaint), func.count()).where(during(cases.c.created_at, p)))
    ).one()
    return int(row[0]), row[1]


async def growth(session: AsyncSession, p: Period) -> tuple[int, int]:
    """Known customers (with a userId) created before the period, and during it."""
    created = customers.c.created_at
    row = (
        await session.execute(
            select(count_if(created < p.start), count_if(created >= p.start)).where(
                customers.c.user_id.is_not(None), created < p.end
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def retention(
    session: AsyncSession, p: Period, purchase_event: str, active_days: int
) -> tuple[int, int]:
    """Customers active at the start (a purchase in [start - N days, start)), and those of them also
    active at the end (a purchase in [end - N days, end)). One pass over the purchases."""
    window = timedelta(days=active_days)
    ts = events.c.timestamp
    at_start = (ts >= p.start - window) & (ts < p.start)
    at_end = (ts >= p.end - window) & (ts < p.end)
    per_customer = (
        select(
            func.max(one_if(at_start)).label("a"),
            func.max(one_if(at_end)).label("b"),
        )
        .where(events.c.name == purchase_event, or_(at_start, at_end))
        .group_by(events.c.customer_id)
        .subquery()
    )
    row = (
        await session.execute(
            select(
                count_if(per_customer.c.a == 1),
                count_if((per_customer.c.a == 1) & (per_customer.c.b == 1)),
            )
        )
    ).one()
    return int(row[0]), int(row[1])


# Messages with the template version they were rendered from (its category: marketing or not).
with_version = messages.join(
    versions,
    (versions.c.template_id == messages.c.template_id) & (versions.c.version == messages.c.template_version),
)


def _marketing_sent():
    """Messages accepted by the relay whose template version is marketing mail."""
    return (messages.c.status == "sent") & (versions.c.category == MARKETING)


async def marketing_sent(session: AsyncSession, p: Period) -> int:
    return await session.scalar(
        select(func.count()).select_from(with_version).where(_marketing_sent(), during(messages.c.sent_at, p))
    )


async def attributed_revenue(
    session: AsyncSession, p: Period, purchase_event: str, revenue_property: str, window_days: float
) -> tuple[float, int]:
    """Revenue and count of purchases in the period that a marketing email sent to the customer in the
    ``window_days`` before the purchase (sent_at in [purchase - window, purchase)) is credited with."""
    dialect = dialect_of(session)
    ts = events.c.timestamp
    touched = exists(
        select(literal(1))
        .select_from(with_version)
        .where(
            messages.c.customer_id == events.c.customer_id,
            messages.c.created_at <= ts,  # created before sent: lets the (customer, created) index cut
            messages.c.sent_at < ts,
            messages.c.sent_at >= plus_days(ts, -window_days, dialect),
            # The same bounds for the whole period: the planner can pick the few messages that count.
            messages.c.sent_at >= p.start - timedelta(days=window_days),
            messages.c.sent_at < p.end,
            _marketing_sent(),
        )
    )
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(revenue(events.c.properties, revenue_property, dialect)), 0.0),
                func.count(),
            ).where(events.c.name == purchase_event, during(ts, p), touched)
        )
    ).one()
    return float(row[0]), row[1]


async def enrolled_versions(session: AsyncSession, p: Period) -> list[tuple[str, int]]:
    """The (journey, version) pairs customers entered in the period."""
    rows = await session.execute(
        select(enrollments.c.journey_id, enrollments.c.version)
        .where(during(enrollments.c.entered_at, p))
        .distinct()
        .order_by(enrollments.c.journey_id, enrollments.c.version)
    )
    return [(j, v) for j, v in rows]


async def goal_conversions(
    session: AsyncSession,
    p: Period,
    journey_id: str,
    version: int,
    goal: dict[str, Any],
    window_days: float,
) -> tuple[int, int]:
    """Enrollments of one journey version entered in the period that received an email (recipients),
    and those whose customer reached the goal within ``window_days`` of entering (converted)."""
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
    row = (
        await session.execute(
            select(func.count(), count_if(reached)).where(
                e.c.journey_id == journey_id, e.c.version == version, during(e.c.entered_at, p), received
            )
        )
    ).one()
    return row[0], int(row[1])
