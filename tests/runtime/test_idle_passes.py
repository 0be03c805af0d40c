"""The worker's cursor readers poll several times a second; on an idle system their passes must not
lock or write anything (a commit with a WAL flush each time, on SQLite a write of the database file),
and they must still pick up the next event at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import event

from domain.db import utcnow
from domain.loyalty.earner import EventCursor, earn_once
from runtime.segment_refresher import SegmentRefresher
from tests.domain.test_segment_membership import RECENT_BUYERS, _create, _members, _track
from tests.loyalty.helpers import entries, set_program


@contextlib.contextmanager
def _writes(engine) -> Iterator[list[str]]:
    """The statements run meanwhile that change rows or lock them."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        words = " ".join(statement.split()).upper()
        if words.split(" ", 1)[0] in {"INSERT", "UPDATE", "DELETE"} or " FOR " in words:
            seen.append(words[:100])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_idle_passes_lock_and_write_nothing_and_the_next_event_is_still_seen(engine, sessions):
    await _create(sessions, "recent-buyers", RECENT_BUYERS)
    await set_program(
        sessions,
        {"rules": [{"id": "order", "event": "Order Completed", "points": 5}]},
        since=datetime(2000, 1, 1, tzinfo=UTC),
    )
    refresher, cursor = SegmentRefresher(sessions), EventCursor()
    await _track(sessions, "ada", "Order Completed")
    # The first passes create their cursor rows and read what is there, including the events they
    # store themselves (Segment Entered, Points Earned), until neither finds anything new.
    for _ in range(5):
        found = await refresher.refresh_once() + (await earn_once(sessions, cursor, utcnow(), 100))[0]
        if not found:
            break
    assert await _members(sessions, "recent-buyers") == {"ada"}

    with _writes(engine) as writes:
        for _ in range(3):
            assert await refresher.refresh_once() == 0
            assert await earn_once(sessions, cursor, utcnow(), 100) == (0, 0)
    assert writes == []

    await _track(sessions, "bo", "Order Completed")
    assert await refresher.refresh_once() == 2  # bo's order, and bo as a new customer
    assert await _members(sessions, "recent-buyers") == {"ada", "bo"}
    # bo's order and the Segment Entered event the refresher stored for bo; the order earns
    assert await earn_once(sessions, cursor, utcnow(), 100) == (2, 1)
    assert sorted(e.points for e in await entries(sessions)) == [5, 5]
