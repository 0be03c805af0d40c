"""A whole ingestion batch in ONE PostgreSQL statement: insert the new events (skipping known
messageIds), queue the track calls for routing, and add the new events' facts and traits to their
customers. One round trip instead of one per step; the ingest path's SQLite twin is the step-by-step
code in ``domain/events/service.py``, and the tests run both.

Lock order is fixed (event unique keys by messageId, then customer rows by id), so concurrent batches
queue behind each other instead of deadlocking.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Each event's fields and their SQL types. The whole batch travels as ONE JSON document that
# PostgreSQL unpacks with jsonb_to_recordset: encoding it is a single C call (orjson), where one array
# parameter per column would cost the driver thousands of per-element checks.
PER_EVENT = {
    "message_id": "VARCHAR",
    "type": "VARCHAR",
    "name": "VARCHAR",
    "customer_id": "BIGINT",
    "user_id": "VARCHAR",
    "anonymous_id": "VARCHAR",
    "properties": "JSONB",
    "traits": "JSONB",
    "context": "JSONB",
    "timestamp": "TIMESTAMPTZ",
    "original_timestamp": "TIMESTAMPTZ",
    "sent_at": "TIMESTAMPTZ",
    # what the event adds to its customer's profile
    "seq": "INTEGER",
    "is_order": "BOOLEAN",
    "revenue": "NUMERIC",
    "profile_traits": "JSONB",
    "email": "VARCHAR",
    "timezone": "VARCHAR",
    "locale": "VARCHAR",
}

_STORE_BATCH = """
WITH v0 AS (
    SELECT * FROM jsonb_to_recordset(CAST(:batch AS JSONB)) AS v0({columns})
), v AS (
    -- An event given without its customer is attributed here: by userId, or by anonymousId (own
    -- column or a merged alias). The caller sends only unambiguous ids this way.
    SELECT {resolved_names}, COALESCE(v0.customer_id, u.id, a.id, al.customer_id) AS customer_id
    FROM v0
    LEFT JOIN customers AS u ON v0.customer_id IS NULL AND u.user_id = v0.user_id
    LEFT JOIN customers AS a
        ON v0.customer_id IS NULL AND v0.user_id IS NULL AND a.anonymous_id = v0.anonymous_id
    LEFT JOIN customer_aliases AS al
        ON v0.customer_id IS NULL AND v0.user_id IS NULL AND al.anonymous_id = v0.anonymous_id
), unresolved AS (
    SELECT count(*) AS n FROM v WHERE customer_id IS NULL
), ins AS (
    INSERT INTO events (message_id, type, name, customer_id, user_id, anonymous_id, properties, traits,
                        context, timestamp, original_timestamp, sent_at, received_at, source_key_id)
    SELECT message_id, type, name, customer_id, user_id, anonymous_id, properties, traits, context,
           timestamp, original_timestamp, sent_at,
           CAST(:received_at AS TIMESTAMPTZ),
           CAST(:source_key_id AS BIGINT)
    FROM v WHERE (SELECT n FROM unresolved) = 0 ORDER BY message_id
    ON CONFLICT (message_id) DO NOTHING
    RETURNING id, message_id, type
), queued AS (
    INSERT INTO event_outbox (event_id, created_at)
    SELECT id, CAST(:received_at AS TIMESTAMPTZ) FROM ins WHERE type = 'track' ORDER BY id
), new AS (
    SELECT v.* FROM v JOIN ins USING (message_id)
), facts AS (
    SELECT customer_id,
           count(*) AS events,
           count(*) FILTER (WHERE is_order) AS orders,
           coalesce(sum(revenue), 0) AS value,
           min(timestamp) AS first_seen,
           max(timestamp) AS last_seen,
           (array_agg(email ORDER BY seq DESC) FILTER (WHERE email IS NOT NULL))[1] AS email,
           (array_agg(timezone ORDER BY seq DESC) FILTER (WHERE timezone IS NOT NULL))[1] AS timezone,
           (array_agg(locale ORDER BY seq DESC) FILTER (WHERE locale IS NOT NULL))[1] AS locale
    FROM new GROUP BY customer_id
), patches AS (
    SELECT customer_id, jsonb_object_agg(key, value) AS patch FROM (
        SELECT DISTINCT ON (new.customer_id, t.key) new.customer_id, t.key, t.value
        FROM new, jsonb_each(new.profile_traits) AS t
        WHERE jsonb_typeof(new.profile_traits) = 'object'
        ORDER BY new.customer_id, t.key, new.seq DESC
    ) AS latest GROUP BY customer_id
), locked AS (
    SELECT id FROM customers WHERE id IN (SELECT customer_id FROM facts) ORDER BY id FOR NO KEY UPDATE
), updated AS (
    UPDATE customers AS c SET
        event_count = c.event_count + f.events,
        order_count = c.order_count + f.orders,
        lifetime_value = c.lifetime_value + f.value,
        first_seen_at = LEAST(c.first_seen_at, f.first_seen),
        last_seen_at = GREATEST(c.last_seen_at, f.last_seen),
        traits = CASE WHEN p.patch IS NULL THEN c.traits ELSE c.traits || p.patch END,
        email = COALESCE(f.email, c.email),
        timezone = COALESCE(f.timezone, c.timezone),
        locale = COALESCE(f.locale, c.locale),
        updated_at = CAST(:received_at AS TIMESTAMPTZ)
    FROM facts AS f JOIN locked AS l ON l.id = f.customer_id LEFT JOIN patches AS p USING (customer_id)
    WHERE c.id = f.customer_id
)
SELECT id, message_id, 0 AS unresolved FROM ins
UNION ALL SELECT NULL, NULL, n FROM unresolved WHERE n > 0
"""
# Assembled from the constant PER_EVENT names above, never from input.
STORE_BATCH = text(
    _STORE_BATCH.format(
        columns=", ".join(f"{name} {kind}" for name, kind in PER_EVENT.items()),
        resolved_names=", ".join(f"v0.{n}" for n in PER_EVENT if n != "customer_id"),
    )
)


async def store_batch(
    session: AsyncSession, rows: list[dict[str, Any]], *, received_at: datetime, source_key_id: int | None
) -> list[tuple[int, str]] | None:
    """Store ``rows`` (one dict per event with the PER_EVENT keys, sorted by messageId); returns
    (id, messageId) of the events that were new, or ``None``, having stored nothing, when a row
    without ``customer_id`` names a customer that does not exist yet."""
    params = {
        # Decimal revenue goes as a JSON string: exact, and PostgreSQL reads it into NUMERIC.
        "batch": orjson.dumps(rows, default=str).decode(),
        "received_at": received_at,
        "source_key_id": source_key_id,
    }
    rows_out = (await session.execute(STORE_BATCH, params)).all()
    if any(row[2] for row in rows_out):
        return None
    return [(row[0], row[1]) for row in rows_out]
