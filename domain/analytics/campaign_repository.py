"""The SQL behind campaign analytics: journey visits and transitions, and what became of each message.

Opens and clicks are ``Email Opened`` / ``Email Link Clicked`` events whose ``message_ref`` names one
message (domain.email.refs.message_ref); both tables store the ref in a column of that name, so they
join by equality (migration 0035). Unsubscribes and bounces are ``Subscription Changed``
events of the customer; each is credited to the customer's latest message (sent or failed) created at
most ``window`` days before it (last touch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.analytics import side_by_side
from domain.analytics.periods import Period
from domain.analytics.sql import (
    count_if,
    dialect_of,
    during,
    one_if,
    plus_days,
    reached_goal,
    text_property,
)
from domain.email.models import Message
from domain.email.tracking import CLICKED, OPENED
from domain.events.models import Event
from domain.journeys.models import Enrollment, JourneyStep
from domain.segments.compiler import JsonValue
from domain.subscriptions.events import SUBSCRIPTION_CHANGED

events = Event.__table__
messages = Message.__table__
steps = JourneyStep.__table__
enrollments = Enrollment.__table__


# -- journeys: enrollments, first visits, transitions -------------------------------------------------
async def enrollments_by_version(session: AsyncSession, journey_id: str, p: Period | None) -> dict[int, int]:
    rows = await session.execute(
        select(enrollments.c.version, func.count())
        .where(enrollments.c.journey_id == journey_id, during(enrollments.c.entered_at, p))
        .group_by(enrollments.c.version)
    )
    return {version: count for version, count in rows}


async def enrollment_conversions(
    session: AsyncSession,
    journey_id: str,
    version: int,
    goal: dict[str, Any],
    window_days: float,
    p: Period | None,
) -> int:
    """Enrollments of the version entered in the period whose goal came within the window of entry."""
    e = enrollments
    reached = reached_goal(
        events.alias("g"), goal, e.c.customer_id, e.c.entered_at, window_days, dialect_of(session)
    )
    return await session.scalar(
        select(func.count()).where(
            e.c.journey_id == journey_id, e.c.version == version, during(e.c.entered_at, p), reached
        )
    )


async def first_visits(
    session: AsyncSession,
    journey_id: str,
    version: int,
    goal: dict[str, Any] | None,
    window_days: float,
    p: Period | None,
) -> list[tuple[str, str | None, int, int | None]]:
    """Per node and outcome: enrollments whose first visit to the node fell in the period, and how many
    of them reached the goal within the window after that visit (None without a goal)."""
    s = steps
    converted: ColumnElement = literal(None)
    if goal is not None:
        reached = reached_goal(
            events.alias("g"), goal, s.c.customer_id, s.c.entered_at, window_days, dialect_of(session)
        )
        converted = count_if(reached)
    rows = await session.execute(
        select(s.c.node_id, s.c.outcome, func.count(), converted)
        .where(
            s.c.journey_id == journey_id, s.c.version == version, s.c.visit == 1, during(s.c.entered_at, p)
        )
        .group_by(s.c.node_id, s.c.outcome)
    )
    return [(n, o, c, int(v) if v is not None else None) for n, o, c, v in rows]


async def transitions(
    session: AsyncSession, journey_id: str, p: Period | None
) -> tuple[list[tuple[str | None, str, int]], list[tuple[str, str, int]]]:
    """Moves between nodes (``None`` as source: from the entry) counted per step that began in the
    period, and where enrollments ended: (node, terminal outcome, count) for each last step."""
    s = steps
    # Partitioned and ordered as ix_journey_steps_journey_path holds the journey's steps (in the
    # column's own collation: a COLLATE here would not match it), so the window reads them in order
    # from the index instead of sorting them all first.
    order = (s.c.entered_at, s.c.id)
    workflow = s.c.workflow_id
    ordered = (
        select(
            s.c.node_id,
            s.c.entered_at,
            s.c.left_at,
            s.c.outcome,
            func.lag(s.c.node_id).over(partition_by=workflow, order_by=order).label("previous"),
            func.lead(s.c.node_id).over(partition_by=workflow, order_by=order).label("following"),
        )
        .where(s.c.journey_id == journey_id)
        .subquery()
    )
    o = ordered
    ending = case((o.c.left_at.is_(None), literal("waiting")), else_=func.coalesce(o.c.outcome, "done"))
    last = o.c.following.is_(None)
    ends_here = case((last, ending), else_=literal(None))
    rows = await session.execute(  # one pass over the window: moves, and ends for the last steps
        select(o.c.previous, o.c.node_id, ends_here, func.count())
        .where(during(o.c.entered_at, p))
        .group_by(o.c.previous, o.c.node_id, ends_here)
    )
    moves: dict[tuple[str | None, str], int] = {}
    ends: dict[tuple[str, str], int] = {}
    for previous, node_id, end, count in rows:
        moves[(previous, node_id)] = moves.get((previous, node_id), 0) + count
        if end is not None:
            ends[(node_id, end)] = ends.get((node_id, end), 0) + count
    return [(a, b, n) for (a, b), n in moves.items()], [(a, b, n) for (a, b), n in ends.items()]


# -- messages --------------------------------------------------------------------------------------------
@dataclass
class MessageCounts:
    messages: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    bounced_after_sent: int = 0  # bounces that came back after the relay had accepted the message
    unsubscribed: int = 0
    converted: int | None = None


def _engaged(p: Period | None):
    """Per message ref with an open or a click: whether it was opened, and whether clicked (one scan of
    both kinds); none can predate the period. Read from ix_events_message_ref alone."""
    ref = events.c.message_ref
    query = (
        select(
            ref.label("ref"),
            func.max(one_if(events.c.name == OPENED)).label("opened"),
            func.max(one_if(events.c.name == CLICKED)).label("clicked"),
        )
        .where(events.c.name.in_((OPENED, CLICKED)), ref.is_not(None))
        .group_by(ref)
    )
    if p is not None:
        query = query.where(events.c.timestamp >= p.start)
    return query.subquery()


def _journey_filter(journey_id: str) -> ColumnElement:
    return messages.c.journey_id == journey_id


def broadcast_filter(broadcast_id: str) -> ColumnElement:
    """Broadcast messages: their idempotency key is broadcast/{id}/customer/{customer id}."""
    prefix = f"broadcast/{broadcast_id}/customer/"
    return func.substr(messages.c.idempotency_key, 1, len(prefix)) == prefix


async def message_counts(
    session: AsyncSession,
    where: ColumnElement,
    group: ColumnElement | None,
    p: Period | None,
    window_days: float,
) -> dict[Any, MessageCounts]:
    """Ledger rows matching ``where`` created in the period, grouped by ``group`` (None: one group),
    with opens, clicks, bounces and unsubscribes credited to them."""
    engaged = _engaged(p)
    key = (group if group is not None else literal("all")).label("g")
    status = messages.c.status
    counted = (
        select(
            key,
            func.count(),
            count_if(status == "sent"),
            count_if(status == "failed"),
            count_if(status == "skipped"),
            count_if(engaged.c.opened == 1),
            count_if(engaged.c.clicked == 1),
        )
        .select_from(messages.outerjoin(engaged, engaged.c.ref == messages.c.message_ref))
        .where(where, during(messages.c.created_at, p))
        .group_by(key)
    )
    # Two independent reads: side by side (one snapshot).
    rows, changes = await side_by_side.gather(
        session,
        lambda s: _all(s, counted),
        lambda s: _changes(s, where, key, p, window_days),
    )
    out = {
        g: MessageCounts(
            messages=n, sent=int(s), failed=int(f), skipped=int(k), opened=int(o), clicked=int(c)
        )
        for g, n, s, f, k, o, c in rows
    }
    for g, kind, after_sent, count in changes:
        counts = out.setdefault(g, MessageCounts())
        if kind == "bounced":
            counts.bounced += count
            counts.bounced_after_sent += after_sent
        else:
            counts.unsubscribed += count
    return out


async def _all(session: AsyncSession, query) -> list:
    return list(await session.execute(query))


async def _changes(
    session: AsyncSession, where: ColumnElement, key, p: Period | None, window_days: float
) -> list[tuple[Any, str, int, int]]:
    dialect = dialect_of(session)
    props = events.c.properties
    suppressed = JsonValue(dialect, props, "suppressed").equals(True)
    reason = text_property(props, "reason", dialect)
    bounce = and_(suppressed, reason == "bounced")
    unsubscribe = or_(
        JsonValue(dialect, props, "subscribed").equals(False), and_(suppressed, reason == "unsubscribed")
    )
    m = messages.alias("touch")
    last_touch = (
        select(m.c.id)
        .where(
            m.c.customer_id == events.c.customer_id,
            m.c.created_at <= events.c.timestamp,
            m.c.created_at >= plus_days(events.c.timestamp, -window_days, dialect),
            m.c.status.in_(("sent", "failed")),
        )
        .order_by(m.c.created_at.desc(), m.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    credited = select(
        last_touch.label("message_id"),
        case((bounce, literal("bounced")), else_=literal("unsubscribed")).label("kind"),
    ).where(events.c.name == SUBSCRIPTION_CHANGED, or_(bounce, unsubscribe))
    if p is not None:  # credited to a message created in the period: the change came after it
        credited = credited.where(events.c.timestamp >= p.start)
    credited = credited.subquery()
    rows = await session.execute(
        select(
            key,
            credited.c.kind,
            func.count(func.distinct(case((messages.c.status == "sent", messages.c.id)))),
            func.count(func.distinct(messages.c.id)),
        )
        .select_from(credited.join(messages, messages.c.id == credited.c.message_id))
        .where(where, during(messages.c.created_at, p))
        .group_by(key, credited.c.kind)
    )
    return [(g, kind, int(after_sent), int(count)) for g, kind, after_sent, count in rows]


async def journey_messages(
    session: AsyncSession, journey_id: str, p: Period | None, window_days: float
) -> dict[str, MessageCounts]:
    return await message_counts(session, _journey_filter(journey_id), messages.c.node_id, p, window_days)


async def template_messages(session: AsyncSession, p: Period, window_days: float) -> dict[str, MessageCounts]:
    return await message_counts(
        session, messages.c.template_id.is_not(None), messages.c.template_id, p, window_days
    )


async def purchases_after_messages(
    session: AsyncSession, where: ColumnElement, purchase_event: str, window_days: float
) -> int:
    """Sent messages matching ``where`` whose recipient purchased within the window after the send."""
    dialect = dialect_of(session)
    bought = (
        select(literal(1))
        .where(
            events.c.customer_id == messages.c.customer_id,
            events.c.name == purchase_event,
            events.c.timestamp >= messages.c.sent_at,
            events.c.timestamp < plus_days(messages.c.sent_at, window_days, dialect),
        )
        .exists()
    )
    return await session.scalar(select(func.count()).where(where, messages.c.status == "sent", bought))
