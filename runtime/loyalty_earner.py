"""The loyalty earner loop: turns stored events into points (see domain/loyalty/earner.py)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.db import utcnow
from domain.loyalty.earner import EventCursor, backfill_once, earn_once
from runtime.polling import poll_until_stopped


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

    async def step(self) -> bool:
        """New events, then a window of a rule's back-fill (if one is under way): live earning
        never waits for a long back-fill. True while there is more to do."""
        read, _ = await self.earn_once()
        scanned, _ = await backfill_once(self._sessions, utcnow(), self._batch_size)
        return read > 0 or scanned > 0

    async def run(self, stop: asyncio.Event) -> None:
        await poll_until_stopped(self.step, stop, self._poll_seconds, "loyalty earning pass")
