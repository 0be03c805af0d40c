"""SQL building blocks the analytics repositories share (SQLAlchemy Core, SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import Interval, String, and_, case, cast, func, literal, not_, select, text, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from domain.analytics.periods import Period
from domain.errors import InvalidInput
from domain.segments.compiler import JsonValue

SEGMENT_ENTERED = "Segment Entered"


def dialect_of(session: AsyncSession) -> str:
    return session.bind.dialect.name


def one_if(condition) -> ColumnElement:
    return case((condition, 1), else_=0)


def count_if(condition) -> ColumnElement:
    return func.coalesce(func.sum(one_if(condition)), 0)


def during(column, p: Period | None) -> ColumnElement:
    """``column`` in the half-open period [start, end); always true without a period (all time)."""
    return true() if p is None else and_(column >= p.start, column < p.end)


def plus_days(column, days: float, dialect: str) -> ColumnElement:
    """``column`` (a UTC timestamp) moved by ``days`` (negative: earlier), computed per row."""
    if dialect == "postgresql":
        return column + cast(literal(timedelta(days=days), Interval), Interval)
    # SQLite keeps timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff'; strftime keeps milliseconds, so pad.
    return func.strftime("%Y-%m-%d %H:%M:%f", column, f"{days:+.6f} days", type_=String) + "000"


def text_property(properties, key: str, dialect: str) -> ColumnElement:
    return JsonValue(dialect, properties, key).text


def goal_matches(events, goal: dict[str, Any], dialect: str, *, field: str = "rules.goal") -> ColumnElement:
    """An event that reaches a journey goal: its name, and properties equal to the goal's ``where``
    (domain.journeys.conditions.event_matches). A segment goal is the ``Segment Entered`` event."""
    if goal.get("segment"):
        name, where = SEGMENT_ENTERED, {"segment_id": goal["segment"]}
    else:
        name, where = goal["event"], goal.get("where") or {}
    conditions = [events.c.name == name]
    for key, value in where.items():
        if '"' in key or isinstance(value, dict | list):
            problem = f"analytics cannot compare property {key!r} (quotes in names, objects and lists)"
            raise InvalidInput({"field": f"{field}.where", "problem": problem}, code="unsupported_goal")
        prop = JsonValue(dialect, events.c.properties, key)
        conditions.append(not_(prop.exists()) if value is None else prop.equals(value))
    return and_(*conditions)


def reached_goal(
    events, goal: dict[str, Any], customer_id, since, window_days: float, dialect: str
) -> ColumnElement:
    """EXISTS a goal event of ``customer_id`` in [since, since + window)."""
    return (
        select(literal(1))
        .where(
            events.c.customer_id == customer_id,
            events.c.timestamp >= since,
            events.c.timestamp < plus_days(since, window_days, dialect),
            goal_matches(events, goal, dialect),
        )
        .exists()
    )


# Reports group hundreds of thousands of customers: with PostgreSQL's default 4 MB per sort or hash
# they spill to disk, which EXPLAIN ANALYZE shows costing about a third of the time.
REPORT_WORK_MEM = "64MB"
# A snapshot name as pg_export_snapshot() writes it (hex words and dashes): safe to quote into SQL.
_SNAPSHOT_NAME = re.compile(r"^[0-9A-F-]+$")


# session.info key: the snapshot a reader's transaction imports (domain.analytics.side_by_side).
SNAPSHOT = "analytics_snapshot"


async def for_reports(session: AsyncSession) -> None:
    """Give this transaction's sorts and hashes room, and no JIT: these queries run once, and compiling
    them costs more than it saves (PostgreSQL; SET LOCAL ends with the transaction). A reader on a
    shared snapshot has them already: it takes no connection before it needs one."""
    if dialect_of(session) == "postgresql" and SNAPSHOT not in session.info:
        await session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        await session.execute(text("SET LOCAL jit = off"))


async def export_snapshot(session: AsyncSession) -> str:
    """The name of this transaction's snapshot, for other transactions to see exactly the same data
    (PostgreSQL; valid until this transaction ends)."""
    return await session.scalar(text("SELECT pg_export_snapshot()"))


def import_snapshot(connection, snapshot: str) -> None:
    """First statement of a REPEATABLE READ transaction: read the exported ``snapshot`` (sync: it runs
    from the session's after_begin hook), with the room reports need."""
    if not _SNAPSHOT_NAME.match(snapshot):
        raise ValueError(f"not a snapshot name: {snapshot!r}")
    connection.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    connection.exec_driver_sql(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
    connection.exec_driver_sql("SET LOCAL jit = off")
