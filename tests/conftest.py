"""Shared fixtures.

Database tests run once per backend: SQLite always, PostgreSQL (127.0.0.1:5432, user postgres) when it
answers. Under CI=true PostgreSQL is required, so a missing server fails instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from config.settings import Settings
from domain.auth import service as auth
from domain.auth.schemas import KeyCreate, KeyKind, Role
from domain.db import create_engine, session_factory, transaction
from domain.models import Base
from runtime.migrate import upgrade_async

PG_ADMIN_URL = os.environ.get("JOURNEYS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def database_url(request, tmp_path_factory) -> AsyncIterator[str]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "journeys.db"
        url = f"sqlite+aiosqlite:///{path}"
        await upgrade_async(url)
        yield url
        return
    if not _pg_reachable():
        if IN_CI:
            pytest.fail("PostgreSQL is required under CI=true but 127.0.0.1:5432 does not answer")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"journeys_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        await upgrade_async(url)
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(scope="session")
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sessions(engine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on an empty database (every table truncated before the test)."""
    async with engine.begin() as conn:
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))
            await conn.execute(text("DELETE FROM sqlite_sequence"))  # ids from 1 again, as on PostgreSQL
    yield session_factory(engine)


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    return Settings(
        dev_mode=True,
        data_dir=tmp_path / "data",
        database_url=database_url,
        smtp_port=free_port(),
        router_poll_seconds=0.05,
    )


@pytest.fixture
async def app(settings, sessions):
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def make_key(sessions, *, role: Role | None = None, write: bool = False) -> str:
    async with transaction(sessions) as session:
        created = await auth.create_key(
            session,
            KeyCreate(
                name=f"test {role or 'write'}", kind=KeyKind.write if write else KeyKind.management, role=role
            ),
        )
    return created.secret


@pytest.fixture
async def admin_headers(sessions) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key(sessions, role=Role.admin)}"}


@pytest.fixture
async def marketer_headers(sessions) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key(sessions, role=Role.marketer)}"}


@pytest.fixture
async def write_key(sessions) -> str:
    return await make_key(sessions, write=True)


async def wait_for(predicate, *, within: float = 20.0, every: float = 0.05):
    """Poll an async predicate until it returns something truthy; fail with the last value."""
    deadline = asyncio.get_running_loop().time() + within
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {within}s (last value: {last!r})")


async def rows_naming(sessions, needle: str) -> dict[str, list]:
    """Every row of every table in the database (the models' or not) whose values, as text, hold
    ``needle`` (any case): what an erasure must leave nowhere."""

    def table_names(connection):
        return inspect(connection).get_table_names()

    found: dict[str, list] = {}
    async with sessions() as session:
        connection = await session.connection()
        for table in await connection.run_sync(table_names):
            rows = (await connection.execute(text(f'SELECT * FROM "{table}"'))).all()
            if hits := [tuple(row) for row in rows if needle.lower() in repr(tuple(row)).lower()]:
                found[table] = hits
    return found


ROOT = Path(__file__).resolve().parent.parent
