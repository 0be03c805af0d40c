"""Group commit: many small bookkeeping writes from concurrent enrollments share one transaction.

Each caller still waits until its own write is committed (durability is unchanged); what changes is that
a hundred enrollments finishing together cost one commit, one fsync, instead of a hundred. If a batch
fails, its writes are retried one transaction each, so one bad write cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.db import transaction

Write = Callable[[AsyncSession], Awaitable[Any]]


class GroupCommit:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, max_batch: int = 200, linger: float = 0.005
    ):
        self._sessions = sessions
        self._max_batch = max_batch
        self._linger = linger
        self._pending: list[tuple[Write, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def run(self, write: Write) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(self._linger)  # let concurrent callers join the batch
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                results = []
                async with transaction(self._sessions) as session:
                    for write, _ in batch:
                        results.append(await write(session))
            except Exception:
                await self._one_by_one(batch)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _one_by_one(self, batch: list[tuple[Write, asyncio.Future]]) -> None:
        for write, future in batch:
            try:
                async with transaction(self._sessions) as session:
                    result = await write(session)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
