"""The segment refresher: keeps membership fresh as events arrive, touching only their customers.

It reads stored events by id after a cursor kept in the database (not the router's outbox, which the
router empties), so it is independent of ingestion and of routing, and a restart resumes where it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.db import transaction
from domain.segments import service as segments

log = logging.getLogger(__name__)


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
        while not stop.is_set():
            try:
                handled = await self.refresh_once()
            except Exception:
                log.exception("segment refresh pass failed; retrying")
                handled = 0
            if handled < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_seconds)
