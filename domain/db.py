"""Engine, sessions and the column types every area shares."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field
from sqlalchemy import JSON, BigInteger, DateTime, Integer, LargeBinary, MetaData, String, event, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from domain.revenue import amount_or_zero

# Stable constraint names so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY, so big ids are plain integers there.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# What a 64-bit integer column (both databases) can hold. A bigger number in a request names no row and
# would make the driver raise, so requests refuse it as invalid input (ids in paths, queries, bodies).
StoredInt = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


def stored_id(text: str) -> int | None:
    """``text`` as an id a 64-bit column can hold, or None: ASCII digits only (``str.isdigit`` also
    takes '²', which ``int()`` refuses)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return None
    value = int(text)
    return value if value < 2**63 else None


# Version numbers (templates, journeys, segments) are 32-bit columns; PostgreSQL refuses a bigger one.
VersionNumber = Annotated[int, Field(ge=1, le=2**31 - 1)]
# Times a request may name (events, schedules, simulations), with room for what the product adds to them
# (clock-skew corrections, waits of up to ten years): far inside what both databases and Python hold.
EARLIEST, LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
StoredTime = Annotated[datetime, Field(ge=EARLIEST, lt=LATEST)]
Json = JSON().with_variant(JSONB(), "postgresql")


def sqlstate(exc: BaseException) -> str | None:
    """A database error's SQLSTATE, whether SQLAlchemy wrapped it or the driver raised it (PostgreSQL);
    None for SQLite, whose errors carry only a message."""
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def transient(exc: BaseException) -> bool:
    """A deadlock or serialisation failure (PostgreSQL) or a database busy past its timeout (SQLite):
    the transaction rolled back whole, and the same work may simply be tried again."""
    return sqlstate(exc) in ("40P01", "40001") or "database is locked" in str(getattr(exc, "orig", exc))


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_engine(url: str, **kwargs) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        _tune_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def sha256_hex(value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


def sha256_prefix(value: str | None) -> bytes | None:
    """The first 16 bytes of the sha256 of ``value`` (UTF-8): enough to tell addresses apart."""
    return None if value is None else hashlib.sha256(value.encode()).digest()[:16]


def sql_sha256_prefix(expr, dialect: str) -> ColumnElement[bytes]:
    """``sha256_prefix`` of a text expression, computed by the database."""
    if dialect == "postgresql":
        return func.substr(func.sha256(func.convert_to(expr, "UTF8")), 1, 16, type_=LargeBinary)
    return func.sha256_prefix(expr, type_=LargeBinary)  # registered on every SQLite connection (below)


def sql_sha256_hex(expr, dialect: str) -> ColumnElement[str]:
    """``sha256_hex`` of a text expression, computed by the database (UTF-8, as Python encodes)."""
    if dialect == "postgresql":
        return func.encode(func.sha256(func.convert_to(expr, "UTF8")), "hex", type_=String)
    return func.sha256_hex(expr, type_=String)  # registered on every SQLite connection (below)


def unicode_lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions defeat locking rules).
        dbapi_connection.isolation_level = None
        # PostgreSQL has sha256(); SQLite gets the standard library's, so both can hash in SQL.
        dbapi_connection.create_function("sha256_hex", 1, sha256_hex, deterministic=True)
        dbapi_connection.create_function("sha256_prefix", 1, sha256_prefix, deterministic=True)
        # SQLite's lower() folds ASCII only ('RÉCLAMATION' -> 'rÉclamation'); PostgreSQL's every letter.
        dbapi_connection.create_function("unicode_lower", 1, unicode_lower, deterministic=True)
        # An order's amount as ingestion counts it, for SQL that sums it (domain.revenue_sql).
        dbapi_connection.create_function("order_amount", 1, amount_or_zero, deterministic=True)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a message recorded as sent survives a power cut; the ledger depends on it.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None:  # aiosqlite (the sync sqlite3 driver of the migrations needs nothing)
            driver._execute = functools.partial(_execute_to_the_end, driver, driver._execute)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection):
        # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout instead of
        # one of them failing with "database is locked" when it upgrades a read lock mid-transaction.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


async def _execute_to_the_end(driver, execute, fn, *args, **kwargs):
    """aiosqlite's call into its connection thread, which a cancelled caller waits out and then rolls back.

    The thread runs a statement to its end whatever happens to the awaiting task. Without this, a task
    cancelled mid-statement (a Temporal activity when its worker stops, or when it is cancelled) makes
    SQLAlchemy drop the connection at once; the close it sends cannot end the transaction while the
    cut-off statement is unfinalized (its cursor lives on in the traceback), so the connection lingers
    and holds SQLite's write lock for good: every later writer waits out its 30 s busy timeout.
    """
    call = asyncio.ensure_future(execute(fn, *args, **kwargs))
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        cleanup = asyncio.ensure_future(_rollback_after(driver, execute, call))
        while not cleanup.done():  # a second cancel must not cut the clean-up short either
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(cleanup)
        raise


async def _rollback_after(driver, execute, call: asyncio.Future) -> None:
    await asyncio.wait([call])
    if not call.cancelled():
        call.exception()  # retrieved: the caller sees its cancellation, not this
    with contextlib.suppress(Exception):  # closed already (the cancelled call was the close)
        await execute(lambda: driver._conn.rollback())


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits on success, rolls back on any error."""
    async with sessions() as session, session.begin():
        yield session


def insert_ignoring_conflicts(session: AsyncSession, table, index_elements: list[str]):
    """An INSERT that skips rows whose unique key exists (ON CONFLICT DO NOTHING on both backends).

    A mapped class is inserted through its table (Core): the ORM's bulk-insert bookkeeping costs more
    than the statement on hot paths, and these inserts need none of it."""
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(getattr(table, "__table__", table)).on_conflict_do_nothing(index_elements=index_elements)
