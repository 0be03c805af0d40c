"""A journey's status (published, paused, archived), read before a send, shared by the activities.

A second's staleness (a pause takes effect within a second) saves a database round trip per send;
many enrollments that miss the cache at once share one read.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.journeys import service as journeys

STATUS_TTL_SECONDS = 1.0


class JourneyStatusCache:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions
        self._status: dict[str, tuple[float, str]] = {}
        self._reads: dict[str, asyncio.Future[str]] = {}

    async def status(self, journey_id: str, fresh: bool = False) -> str:
        cached = self._status.get(journey_id)
        if not fresh and cached is not None and time.monotonic() - cached[0] < STATUS_TTL_SECONDS:
            return cached[1]
        pending = self._reads.get(journey_id)
        if pending is not None and not fresh:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._reads[journey_id] = future
        try:
            async with self._sessions() as session:
                status = await journeys.status_of(session, journey_id)
            self._status[journey_id] = (time.monotonic(), status)
            future.set_result(status)
            return status
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited failure is not reported twice
            raise
        finally:
            if self._reads.get(journey_id) is future:
                del self._reads[journey_id]
