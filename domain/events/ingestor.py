"""Group commit for ingestion: the requests that arrive while a write is under way are stored together.

Each request hands its validated submission to the ``Ingestor`` and waits; a few writer tasks take all
the submissions waiting and store them in one go (on PostgreSQL one statement in autocommit: one round
trip, one commit, however many requests). A request is answered only once its own events are committed,
so a ``200`` still means stored, read-your-writes holds, and a retried batch finds its first attempt.
Under load the groups grow by themselves, and with them what every statement and commit is shared by;
alone, a request is written at once, as it would be without grouping.

A group that fails for a reason other than a deadlock or a dropped connection is stored again request by
request, so one request that cannot be stored fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.customers import service as customers
from domain.db import create_engine, session_factory, transaction, transient
from domain.events import postgres_batch
from domain.events.service import (
    IngestResult,
    Key,
    Submission,
    identities,
    store_on_postgres,
    store_on_sqlite,
)

# One group holds at most this many calls: a statement of a few thousand rows still plans and runs
# well, and a request never waits behind an unbounded backlog.
MAX_GROUP_CALLS = 5_000
# Rounds of resolving and storing again when a customer the events name is missing (new, or merged
# away meanwhile); each round waits for the identity changes in flight, so a few always do.
RESOLVE_ROUNDS = 4


@dataclass
class IngestorStats:
    groups: int = 0  # writes that committed
    submissions: int = 0  # requests they stored


class Ingestor:
    RETRIES = 3

    def __init__(self, sessions: async_sessionmaker[AsyncSession], database_url: str, *, writers: int = 4):
        self._sessions = sessions
        self._queue: deque[tuple[Submission, asyncio.Future[IngestResult]]] = deque()
        self._waiting = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._engine = None
        self.stats = IngestorStats()
        # SQLite has one writer at a time: one writer task, whose groups share a transaction.
        self._writers = 1
        if database_url.startswith("postgresql"):
            self._writers = writers
            # Its own small pool: autocommit (the statement is atomic by itself), no pre-ping round
            # trip (a dropped connection is retried below instead), and no JIT: the statement's
            # estimates look big enough to compile it, which costs far more than running it.
            self._engine = create_engine(
                database_url,
                pool_size=writers,
                pool_pre_ping=False,
                pool_reset_on_return=None,
                isolation_level="AUTOCOMMIT",
                connect_args={"server_settings": postgres_batch.SESSION_SETTINGS},
            )
            self._autocommit = session_factory(self._engine)

    async def store(self, submission: Submission) -> IngestResult:
        """Store one request's calls (with whichever others are waiting); returns once committed."""
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._queue.append((submission, future))
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._write_forever()) for _ in range(self._writers)]
        self._waiting.set()
        return await future

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for _, future in self._queue:
            future.cancel()
        if self._engine is not None:
            await self._engine.dispose()

    async def _write_forever(self) -> None:
        while True:
            while not self._queue:
                self._waiting.clear()
                await self._waiting.wait()
            group, calls = [], 0
            while self._queue and (not group or calls + len(self._queue[0][0].calls) <= MAX_GROUP_CALLS):
                item = self._queue.popleft()
                group.append(item)
                calls += len(item[0].calls)
            await self._write(group)

    async def _write(self, group: list[tuple[Submission, asyncio.Future[IngestResult]]]) -> None:
        try:
            results = await self._with_retries([s for s, _ in group])
        except Exception as exc:
            if len(group) > 1:
                for item in group:  # find the request that cannot be stored; the others go through
                    await self._write([item])
                return
            _settle(group[0][1], exception=exc)
            return
        self.stats.groups += 1
        self.stats.submissions += len(group)
        for (_, future), result in zip(group, results, strict=True):
            _settle(future, result=result)

    async def _with_retries(self, submissions: Sequence[Submission]) -> list[IngestResult]:
        for attempt in range(1, self.RETRIES + 1):
            try:
                if self._engine is None:
                    async with transaction(self._sessions) as session:
                        return await store_on_sqlite(session, submissions)
                return await self._store_on_postgres(submissions)
            except Exception as exc:
                if attempt == self.RETRIES or not _retryable(exc):
                    raise
        raise AssertionError("unreachable")

    async def _store_on_postgres(self, submissions: Sequence[Submission]) -> list[IngestResult]:
        """Identity changes (both ids, alias) are settled first, in a short transaction of their own;
        ids that only look a customer up are resolved by the storing statement itself, and customers
        it does not find are created before it runs again."""
        async with self._autocommit() as session:
            if any(s.links_identities for s in submissions):
                keys, aliases = identities(submissions)
                # Both ids may already be linked (a read-only check); an alias always links.
                if aliases or await customers.resolve_known(session, keys) is None:
                    await self._resolve(keys, aliases)
            results = await store_on_postgres(session, submissions)
            for _ in range(RESOLVE_ROUNDS):
                if results is not None:
                    return results
                # A customer is missing: new, or merged away by a change the statement waited for.
                await self._resolve(*identities(submissions))
                results = await store_on_postgres(session, submissions)
            if results is None:  # profiles kept changing under these events; the next attempt retries
                raise RuntimeError("a customer these events name was deleted while they were stored")
            return results

    async def _resolve(self, keys: dict[Key, datetime], aliases: list[tuple[str, str]]) -> None:
        async with transaction(self._sessions) as session:
            await customers.resolve_many(session, keys, aliases)


def _settle(future: asyncio.Future, *, result=None, exception: BaseException | None = None) -> None:
    if future.done():  # the request was cancelled (its client went away); its events are stored
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _retryable(exc: Exception) -> bool:
    """A deadlock or serialisation failure (PostgreSQL), a busy database (SQLite) or a connection
    that dropped: the attempt rolled back whole, so running it again is safe. The storing statement
    runs on the driver's connection directly, so its errors arrive as the driver raised them, not
    wrapped by SQLAlchemy."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return transient(exc)
