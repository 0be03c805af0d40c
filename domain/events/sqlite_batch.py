"""A batch of events into SQLite in one statement: the rows travel as one JSON document that SQLite
unpacks with json_each (C code), instead of per-value type processing in Python. Values are written
exactly as the ORM column types write them (UTC timestamps as text, JSON as text), so every reader
sees the same data whichever path stored it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers.models import MAX_LIFETIME_VALUE

# SQLAlchemy's SQLite DATETIME storage format (see UTCDateTime in domain/db.py).
_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"

INSERT_EVENTS = text(
    """
    INSERT INTO events (message_id, type, name, customer_id, user_id, anonymous_id, properties, traits,
                        context, timestamp, original_timestamp, sent_at, received_at, source_key_id,
                        message_ref)
    SELECT value ->> 'message_id', value ->> 'type', value ->> 'name', value ->> 'customer_id',
           value ->> 'user_id', value ->> 'anonymous_id', value -> 'properties', value -> 'traits',
           value -> 'context', value ->> 'timestamp', value ->> 'original_timestamp', value ->> 'sent_at',
           value ->> 'received_at', value ->> 'source_key_id', value ->> 'message_ref'
    FROM json_each(:batch) WHERE true
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id, id
    """
)
ENQUEUE = text("INSERT INTO event_outbox (event_id, created_at) SELECT value, :now FROM json_each(:ids)")


def timestamp(value: datetime) -> str:
    """As _TIMESTAMP formats it (isoformat is C code; strftime costs several times more per value)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__}")


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Insert the rows whose messageId is new; returns their (messageId, id)."""
    batch = orjson.dumps(rows, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    result = await session.execute(INSERT_EVENTS, {"batch": batch})
    return [(row[0], row[1]) for row in result.all()]


async def enqueue(session: AsyncSession, event_ids: list[int], now: datetime) -> None:
    if event_ids:
        await session.execute(ENQUEUE, {"ids": orjson.dumps(event_ids).decode(), "now": timestamp(now)})


APPLY_FACTS = text(
    f"""
    UPDATE customers SET
        event_count = event_count + f.events,
        order_count = order_count + f.orders,
        lifetime_value = min(max(lifetime_value + f.value, -{MAX_LIFETIME_VALUE}), {MAX_LIFETIME_VALUE}),
        first_seen_at = min(first_seen_at, f.first_seen),
        last_seen_at = max(last_seen_at, f.last_seen),
        traits = coalesce(f.traits, customers.traits),
        timezone = coalesce(f.timezone, customers.timezone),
        locale = coalesce(f.locale, customers.locale),
        updated_at = :now
    FROM (
        SELECT value ->> 'id' AS id, value ->> 'events' AS events, value ->> 'orders' AS orders,
               value ->> 'value' AS value, value ->> 'first' AS first_seen, value ->> 'last' AS last_seen,
               value -> 'traits' AS traits, value ->> 'email' AS email, value ->> 'timezone' AS timezone,
               value ->> 'locale' AS locale
        FROM json_each(:rows)
    ) AS f
    WHERE customers.id = f.id
    """  # noqa: S608 (assembled from a constant, never from input)
)


# Apart from the facts: SQLite rewrites the index entries of every column an UPDATE assigns, changed
# or not, and few calls carry an email (assigning it on every row made the facts update 40 % slower).
# Only rows whose address changes (or lacks its digest, Customer.email_sha256) are written, so the
# digest is computed only then.
APPLY_EMAILS = text(
    """
    UPDATE customers SET email = f.email, email_sha256 = sha256_prefix(f.email)
    FROM (SELECT value ->> 'id' AS id, value ->> 'email' AS email FROM json_each(:rows)) AS f
    WHERE customers.id = f.id AND (customers.email IS NOT f.email OR customers.email_sha256 IS NULL)
    """
)


async def apply_facts(session: AsyncSession, rows: list[dict[str, Any]], now: datetime) -> None:
    """Add each customer's batch facts in one UPDATE. A row's ``traits``, when present, is the
    customer's whole new trait set (merged by the caller: SQLite has one writer at a time)."""
    if rows:
        payload = orjson.dumps(rows, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
        await session.execute(APPLY_FACTS, {"rows": payload, "now": timestamp(now)})
    emails = [{"id": row["id"], "email": row["email"]} for row in rows if row.get("email")]
    if emails:
        await session.execute(APPLY_EMAILS, {"rows": orjson.dumps(emails).decode()})
