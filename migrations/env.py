"""Alembic environment: async engine, URL from Settings unless the caller set one."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from config.settings import get_settings
from domain.db import create_engine
from domain.models import Base
from runtime.migrate import made_on

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Copying a table drops the original, and with foreign keys enforced that drop deletes (or
        # nulls) every row referring to it. So they are off for the run (which can only be set
        # outside a transaction, so before anything runs) and checked as a whole before it commits.
        _pragma(connection, "foreign_keys=OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,  # SQLite alters tables by copying them
            compare_type=True,
            include_object=made_on(connection.dialect.name),
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
                raise RuntimeError(f"the migration would leave rows referring to nothing: {broken[:5]}")
    finally:
        if sqlite:
            _pragma(connection, "foreign_keys=ON")


def _pragma(connection: Connection, setting: str) -> None:
    cursor = connection.connection.cursor()  # the driver's own: SQLAlchemy's would begin a transaction
    cursor.execute(f"PRAGMA {setting}")
    cursor.close()


# pg_advisory_lock key of a migration run: "journeys" in ASCII, read as an integer.
MIGRATION_LOCK = 0x6A6F75726E657973


async def _run_online() -> None:
    engine = create_engine(_url())
    try:
        if engine.dialect.name != "postgresql":
            async with engine.connect() as connection:
                await connection.run_sync(_run)
            return
        # One run at a time (replicas that all migrate on start, two deploys). A session lock on a
        # connection of its own: a migration that builds indexes concurrently commits part-way, which
        # would release a transaction's lock. It is tried, not waited for: CREATE INDEX CONCURRENTLY
        # waits for every snapshot older than its own, a waiting lock statement's included.
        async with engine.connect() as lock:
            await lock.execution_options(isolation_level="AUTOCOMMIT")
            try_lock = f"SELECT pg_try_advisory_lock({MIGRATION_LOCK})"
            while True:
                if (await lock.exec_driver_sql(try_lock)).scalar():
                    break
                await asyncio.sleep(0.2)  # another run holds it
            try:
                async with engine.connect() as connection:
                    await connection.run_sync(_run)
            finally:
                await lock.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
