"""Earning from the events table: a cursor over event ids that never skips a late-committing event and
never stalls behind one.

Ingestion knows nothing of loyalty; the earner reads what it stored. A plain "id > cursor" reader would
lose events on PostgreSQL, where ids are handed out before commit: event 7 can become visible after
event 8. So the earner reads on past a missing id at once, remembers it as a hole, and looks for it
again on every pass until it shows up or ``gap_timeout`` passes (its insert was rolled back, or it lost
a messageId race: both burn an id for good). The persisted position stays below the oldest open hole,
so a restart re-reads from there; each award's key is ``event:{event_id}:{rule_id}``, which makes that
re-reading harmless.

A rule given an earlier ``since`` than it had needs events the cursor has passed: ``backfill_once``
takes that rule alone back over them (see repository.start_backfill), a batch of its event's stored
track events a pass, newest first, read by name from an index.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.db import transaction
from domain.loyalty import repository, service

log = logging.getLogger(__name__)

CURSOR = repository.EVENTS_CURSOR
HOLES_PER_QUERY = 5_000


@dataclass
class Plan:
    seen_upto: int
    holes: dict[int, float]

    @property
    def position(self) -> int:
        """Every id at or below this is settled: read, or given up on."""
        return min(self.holes) - 1 if self.holes else self.seen_upto


@dataclass
class EventCursor:
    gap_timeout: float = 60.0
    max_holes: int = 50_000
    clock: Callable[[], float] = time.monotonic
    seen_upto: int | None = None  # the highest id this process has read
    holes: dict[int, float] = field(default_factory=dict)  # missing id -> when first missed

    def resume(self, position: int) -> None:
        if self.seen_upto is None or self.seen_upto < position:
            self.seen_upto = position
        self.holes = {i: t for i, t in self.holes.items() if i > position}

    def plan(self, filled: list[int], new_ids: list[int]) -> Plan:
        """What the cursor will be once this pass commits (nothing changes if it rolls back)."""
        now = self.clock()
        holes = {i: t for i, t in self.holes.items() if now - t < self.gap_timeout}
        for event_id in filled:
            holes.pop(event_id, None)
        previous = self.seen_upto or 0
        for event_id in new_ids:
            missing = range(previous + 1, event_id)
            if len(holes) + len(missing) <= self.max_holes:
                holes.update(dict.fromkeys(missing, now))
            elif missing:
                log.warning(
                    "event ids %s-%s never seen; too many open holes to wait for them",
                    missing[0],
                    missing[-1],
                )
            previous = event_id
        return Plan(seen_upto=previous, holes=holes)

    def apply(self, plan: Plan) -> None:
        self.seen_upto, self.holes = plan.seen_upto, plan.holes


def _stored(rows: list[tuple]) -> list[service.StoredEvent]:
    return [
        service.StoredEvent(
            id=r[0], type=r[1], name=r[2], customer_id=r[3], properties=r[4] or {}, timestamp=r[5]
        )
        for r in rows
    ]


async def earn_once(
    sessions: async_sessionmaker[AsyncSession], cursor: EventCursor, now: datetime, batch_size: int
) -> tuple[int, int]:
    """One pass in one transaction: events that filled holes, then new ones. Returns (events read,
    entries written). A pass with no hole to look for and no event past the last one read returns
    at once, having locked and written nothing (the earner polls several times a second)."""
    async with transaction(sessions) as session:
        idle = cursor.seen_upto is not None and not cursor.holes
        if idle and not await repository.any_event_after(session, cursor.seen_upto):
            return 0, 0
        state = await repository.lock_cursor(session, CURSOR)
        cursor.resume(state.position)
        filled = await repository.events_with_ids(session, sorted(cursor.holes)[:HOLES_PER_QUERY])
        fresh = await repository.events_after(session, cursor.seen_upto, batch_size)
        written = await service.on_events(session, _stored(filled + fresh), now)
        plan = cursor.plan([r[0] for r in filled], [r[0] for r in fresh])
        if plan.position != state.position:
            state.position, state.updated_at = plan.position, now
    cursor.apply(plan)  # only once committed: a rolled-back pass reads the same events again
    return len(filled) + len(fresh), written


async def backfill_once(
    sessions: async_sessionmaker[AsyncSession], now: datetime, span: int
) -> tuple[int, int]:
    """One pass of a rule's back-fill, in one transaction: the next ``span`` stored track events of the
    rule's event downwards (read by name from an index, not every id of every event), under that rule
    only (the awards' keys make a repeated batch harmless; caps count what the rule already gave in the
    event's day and month). The position is saved with the awards, so a pass that fails is done again
    and a restarted worker goes on where it stopped; the row goes once a pass finds fewer than ``span``
    events (none is left below), or when the rule is no longer in the programme. Returns (events
    read, at least 1, entries written); with no back-fill under way it only reads, and returns (0, 0)."""
    async with transaction(sessions) as session:
        name = await repository.next_backfill(session)
        state = name and await repository.lock_existing_cursor(session, name)
        if not state:  # none, or another worker has just finished it
            return 0, 0
        config = await service.program(session)
        rule = next((r for r in config.rules if repository.backfill_cursor(r.id) == name), None)
        rows = []
        if rule is not None:
            rows = await repository.track_events_below(session, state.position, rule.event, span)
        written = 0
        if rows:
            written = await service.on_events(session, _stored(rows), now, config=config, rule_id=rule.id)
        if len(rows) < span:
            await repository.drop_cursor(session, name)
        else:
            state.position, state.updated_at = rows[0][0], now  # the oldest read: next pass below it
    return max(len(rows), 1), written
