"""Independent reads of one answer, run side by side.

On PostgreSQL each read gets its own pooled connection, in a REPEATABLE READ transaction that imports the
snapshot of the caller's transaction: the reads run at once yet all see the same data, so figures computed
apart stay mutually consistent (an index never mixes KPIs from two moments). SQLite serialises its
connections anyway, so there the reads run one after the other in the caller's session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from domain.analytics.sql import SNAPSHOT, dialect_of, export_snapshot, import_snapshot

Read = Callable[[AsyncSession], Awaitable[Any]]


async def gather(session: AsyncSession, *reads: Read) -> list[Any]:
    """The results of ``reads`` in order; a read may gather again (it shares the same snapshot)."""
    if dialect_of(session) != "postgresql" or len(reads) < 2:
        return [await read(session) for read in reads]
    snapshot = session.info.get(SNAPSHOT) or await export_snapshot(session)
    try:
        async with asyncio.TaskGroup() as group:  # one failing read cancels the others
            tasks = [group.create_task(_on_snapshot(session, snapshot, read)) for read in reads]
    except ExceptionGroup as failed:  # the caller handles the error as if the reads ran in turn
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def _on_snapshot(session: AsyncSession, snapshot: str, read: Read) -> Any:
    bind = session.bind.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    async with AsyncSession(bind, expire_on_commit=False, info={SNAPSHOT: snapshot}) as reader:
        # Imported when the reader first touches the database: a read that only gathers further holds
        # no connection while its own reads run.
        @event.listens_for(reader.sync_session, "after_begin")
        def _import(_session, _transaction, connection):
            import_snapshot(connection, snapshot)

        async with reader.begin():
            return await read(reader)
