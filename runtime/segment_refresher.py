"""The segment refresher: keeps membership fresh as events arrive, touching only their customers.

It reads stored events by id after a cursor kept in the database (not the router's outbox, which the
router empties), so it is independent of ingestion and of routing, and a restart resumes where it left.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.db import transaction
from domain.segments import service as segments
from runtime.polling import poll_until_stopped


class SegmentRefresher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        poll_seconds: float = 0.5,
        batch_size: int = 5_000,
    ):
        self._sessions = sessions
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self.events_seen = 0

    async def refresh_once(self) -> int:
        async with transaction(self._sessions) as session:
            handled = await segments.refresh_from_events(session, batch_size=self._batch_size)
        self.events_seen += handled
        return handled

    async def run(self, stop: asyncio.Event) -> None:
        async def step() -> bool:
            return await self.refresh_once() >= self._batch_size

        await poll_until_stopped(step, stop, self._poll_seconds, "segment refresh pass")
