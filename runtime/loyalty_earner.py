"""The loyalty earner loop: turns stored events into points (see domain/loyalty/earner.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.db import utcnow
from domain.loyalty.earner import EventCursor, earn_once

log = logging.getLogger(__name__)


class LoyaltyEarner:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        gap_timeout: float = 60.0,
    ):
        self._sessions = sessions
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self.cursor = EventCursor(gap_timeout=gap_timeout)

    async def earn_once(self) -> tuple[int, int]:
        return await earn_once(self._sessions, self.cursor, utcnow(), self._batch_size)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                read, _ = await self.earn_once()
            except Exception:
                log.exception("loyalty earning pass failed; retrying")
                read = 0
            if read == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_seconds)
