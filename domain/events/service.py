"""Ingestion: store a Segment call durably, once, and queue it for routing."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers import service as customers
from domain.db import utcnow
from domain.events import repository
from domain.events.schemas import IdentifyCall, SegmentCall, TrackCall


def corrected_timestamp(call: SegmentCall, received_at: datetime) -> datetime:
    """Segment's clock-skew correction: receivedAt - (sentAt - timestamp)."""
    if call.timestamp is None:
        return received_at
    if call.sentAt is None:
        return call.timestamp
    return received_at - (call.sentAt - call.timestamp)


async def ingest(session: AsyncSession, call: TrackCall | IdentifyCall, *, source_key_id: int | None) -> bool:
    """Store one call. Returns False when its messageId was seen before (then nothing changes)."""
    received_at = utcnow()
    timestamp = corrected_timestamp(call, received_at)
    message_id = call.messageId or str(uuid.uuid4())
    customer = await customers.resolve(
        session, user_id=call.userId, anonymous_id=call.anonymousId, seen_at=timestamp
    )
    traits = call.traits if isinstance(call, IdentifyCall) else dict(call.context.get("traits") or {})
    event_id = await repository.insert_event(
        session,
        {
            "message_id": message_id,
            "type": call.type,
            "name": call.event if isinstance(call, TrackCall) else None,
            "customer_id": customer.id,
            "user_id": call.userId,
            "anonymous_id": call.anonymousId,
            "properties": call.properties if isinstance(call, TrackCall) else {},
            "traits": traits,
            "context": call.context,
            "timestamp": timestamp,
            "original_timestamp": call.timestamp,
            "sent_at": call.sentAt,
            "received_at": received_at,
            "source_key_id": source_key_id,
        },
    )
    if event_id is None:
        return False
    customers.merge_traits(customer, traits, call.context)
    if isinstance(call, TrackCall):
        await repository.enqueue(session, [event_id])
    return True
