"""Events the programme emits into the event stream, so journeys can trigger on them.

Each goes into ``events`` plus ``event_outbox`` in the transaction that wrote the ledger entry, with a
message id derived from that entry: a retried operation finds the entry and emits nothing again, and
the unique message id would refuse a second copy anyway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.db import utcnow
from domain.loyalty import repository

CONTEXT = {"library": {"name": "journeys.loyalty"}}


def entry_message_id(entry_id: int) -> str:
    return f"loyalty/entry/{entry_id}"


def tier_change_message_id(change_id: int) -> str:
    return f"loyalty/tier-change/{change_id}"


def expiring_message_id(customer_id: int, first_lot_id: int) -> str:
    # A lot is warned about once, so the first lot of a warning names that warning for good.
    return f"loyalty/expiring/{customer_id}/{first_lot_id}"


_PENDING = "loyalty.pending_events"
_CHUNK = 1_000  # rows per INSERT, well inside both backends' bound-parameter limits


def emit(
    session: AsyncSession,
    *,
    customer_id: int,
    who: repository.Identity,
    name: str,
    message_id: str,
    properties: dict[str, Any],
    at: datetime,
) -> None:
    """Queue an event on the session; ``flush`` writes the queue (before the transaction commits)."""
    user_id, anonymous_id = who
    session.info.setdefault(_PENDING, []).append(
        {
            "message_id": message_id,
            "type": "track",
            "name": name,
            "customer_id": customer_id,
            "user_id": user_id,
            "anonymous_id": anonymous_id,
            "properties": properties,
            "traits": {},
            "context": CONTEXT,
            "timestamp": at,
            "original_timestamp": at,
            "sent_at": None,
            "received_at": utcnow(),
            "source_key_id": None,
        }
    )


async def flush(session: AsyncSession) -> int:
    """Write the queued events, in order, a chunk per statement; returns how many were new."""
    pending = session.info.pop(_PENDING, [])
    written = 0
    for start in range(0, len(pending), _CHUNK):
        written += await repository.insert_events(session, pending[start : start + _CHUNK])
    return written
