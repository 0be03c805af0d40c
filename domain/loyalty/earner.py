"""Earning from the events table: a cursor over event ids that never skips a late-committing event.

Ingestion knows nothing of loyalty; the earner reads what it stored. A plain "id > cursor" reader would
lose events on PostgreSQL, where ids are handed out before commit: event 7 can become visible after
event 8. So the persisted cursor only moves over contiguous ids. A hole holds it back until the missing
id shows up or ``gap_timeout`` passes (its insert was rolled back, or it lost a messageId race, both of
which burn an id). Events past a hole are earned at once and earned again harmlessly after a restart:
each award's key is ``event:{event_id}:{rule_id}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.db import transaction
from domain.loyalty import repository, service

CURSOR = "events"


@dataclass
class EventCursor:
    gap_timeout: float = 60.0
    clock: Callable[[], float] = time.monotonic
    # Holes first seen at (monotonic time), and events already earned above the persisted position.
    _holes: dict[tuple[int, int], float] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)

    def advance(self, position: int, ids: list[int]) -> int:
        """The new persisted position after seeing ``ids`` (ascending) above ``position``."""
        now = self.clock()
        for event_id in ids:
            if event_id == position + 1:
                position = event_id
                continue
            hole = (position + 1, event_id - 1)
            first_seen = self._holes.setdefault(hole, now)
            if now - first_seen < self.gap_timeout:
                break
            position = event_id  # the missing ids never came: skip them
        self._holes = {h: t for h, t in self._holes.items() if h[0] > position}
        self.done = {i for i in self.done if i > position}
        return position


async def earn_once(
    sessions: async_sessionmaker[AsyncSession], cursor: EventCursor, now: datetime, batch_size: int
) -> tuple[int, int]:
    """One pass in one transaction: earn for the next events and move the cursor.
    Returns (events read, entries written)."""
    async with transaction(sessions) as session:
        state = await repository.lock_cursor(session, CURSOR)
        rows = await repository.events_after(session, state.position, batch_size)
        if not rows:
            return 0, 0
        fresh = [
            service.StoredEvent(
                id=r[0], type=r[1], name=r[2], customer_id=r[3], properties=r[4] or {}, timestamp=r[5]
            )
            for r in rows
            if r[0] not in cursor.done
        ]
        written = await service.on_events(session, fresh, now)
        position = cursor.advance(state.position, [r[0] for r in rows])
        if position != state.position:
            state.position, state.updated_at = position, now
    # Only once committed: a rolled-back pass must earn these again.
    cursor.done.update(e.id for e in fresh if e.id > position)
    return len(fresh), written
