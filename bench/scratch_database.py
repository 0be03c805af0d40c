"""A throwaway database for one benchmark run: an empty SQLite file in a temporary folder, or a new
PostgreSQL database on the local server (``JOURNEYS_TEST_PG_URL``'s, as the tests use), dropped at the
end however the run ends (``keep`` leaves it for a look afterwards)."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text

from domain.db import create_engine

PG_ADMIN = os.environ.get("JOURNEYS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


@asynccontextmanager
async def scratch_database(backend: str, prefix: str, *, keep: bool = False) -> AsyncIterator[str]:
    """Yields the new database's URL."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as directory:
            yield f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        return
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
        finally:
            if keep:
                print(f"kept database {name}", file=sys.stderr)
            else:
                async with admin.connect() as conn:
                    await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()
