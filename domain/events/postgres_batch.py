"""Ingestion on PostgreSQL: a whole group of requests in ONE statement.

The statement takes the validated calls as one JSON document (one object per request, its calls as
they were validated) and does everything else itself: the per-type mapping, clock-skew correction,
messageId dedup (within the group and against every stored event), customer attribution, the outbox rows
for the track calls, and each customer's facts and trait merges. One round trip and one commit for many
requests; the SQLite twin is the step-by-step code in ``domain/events/service.py``, and the tests run
both.

Lock order is fixed (event unique keys by messageId, then customer rows by id), so two writers queue
behind each other instead of deadlocking; identity changes (claims and merges) take turns with these
statements through an advisory lock, held shared here.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers.models import MAX_LIFETIME_VALUE
from domain.customers.repository import IDENTITY_CHANGES_LOCK
from domain.events.models import MESSAGE_REF_LENGTH
from domain.revenue import ASCII_SPACE, PLAIN_NUMBER

# A request's fields, then a call's fields as the schemas dump them (see CALL_FIELDS there).
_REQUEST_COLUMNS = """
    pos INTEGER, received_at TIMESTAMPTZ, source_key_id BIGINT, sent_at TIMESTAMPTZ, context JSONB,
    purchase_event VARCHAR, revenue_property VARCHAR, hints JSONB, calls JSONB
"""
_CALL_COLUMNS = """
    type VARCHAR, "messageId" VARCHAR, "userId" VARCHAR, "anonymousId" VARCHAR, event VARCHAR,
    name VARCHAR, category VARCHAR, "groupId" VARCHAR, "previousId" VARCHAR, properties JSONB,
    traits JSONB, context JSONB, timestamp TIMESTAMPTZ, "sentAt" TIMESTAMPTZ
"""
_CALL_NAMES = (
    'type, "messageId", "userId", "anonymousId", event, name, category, "groupId", "previousId", '
    'properties, traits, context, timestamp, "sentAt", seq'
)

# A revenue property counts when it is a JSON number or a string holding a plain decimal number (ASCII
# digits, ASCII white space around: \\s would also take Unicode spaces, which trim leaves and the cast
# refuses), and when it fits the lifetime value column; anything else adds nothing (as in
# domain.revenue.amount, with the same PLAIN_NUMBER).
_AMOUNT = f"""
    CASE jsonb_typeof(properties -> revenue_property)
        WHEN 'number' THEN CAST(properties ->> revenue_property AS NUMERIC)
        WHEN 'string' THEN CASE WHEN properties ->> revenue_property ~ '^{PLAIN_NUMBER.pattern}$'
                           THEN CAST(btrim(properties ->> revenue_property, E'{ASCII_SPACE}') AS NUMERIC) END
    END
"""
_REVENUE = f"""
    CASE WHEN abs({_AMOUNT}) < 1e12 THEN round({_AMOUNT}, 2) ELSE 0 END
"""

# Run on the driver's connection directly ($1: the requests document, as JSON text): for a statement
# this size SQLAlchemy's per-execution work would be a fifth of the Python cost of a request.
# Assembled from the constants above, never from input.
STORE_GROUP = f"""
WITH gate AS MATERIALIZED (
    -- Taken before any customer row: identity changes hold this lock exclusively while they claim,
    -- merge and lock customers in their own order (serialize_identity_changes), so the two take
    -- turns instead of deadlocking. One that waited here reads as of before the change it waited
    -- for: a profile it merged away is not found, and the caller resolves and stores again.
    SELECT pg_advisory_xact_lock_shared({IDENTITY_CHANGES_LOCK}) AS taken
), requests AS (
    SELECT r.* FROM gate
    CROSS JOIN jsonb_to_recordset(CAST(CAST($1 AS TEXT) AS JSONB)) AS r({_REQUEST_COLUMNS})
), received AS (
    -- Each call as sent, with the request's receipt time, and its batch's context and sentAt applied
    -- (the call's own win).
    SELECT r.pos, r.received_at, r.source_key_id, r.purchase_event, r.revenue_property, r.hints, c.*,
           CASE WHEN r.context IS NULL THEN c.context ELSE r.context || c.context END AS full_context,
           COALESCE(c."sentAt", r.sent_at) AS sent
    FROM requests AS r
    CROSS JOIN LATERAL ROWS FROM (jsonb_to_recordset(r.calls) AS ({_CALL_COLUMNS}))
        WITH ORDINALITY AS c({_CALL_NAMES})
), calls AS (
    -- What each call stores, by type (as SegmentCall.event_name / event_properties / event_traits).
    SELECT pos, seq, received_at, source_key_id, type,
           COALESCE("messageId", CAST(gen_random_uuid() AS VARCHAR)) AS message_id,
           "userId" AS user_id, "anonymousId" AS anonymous_id,
           CASE WHEN type = 'track' THEN event WHEN type IN ('page', 'screen') THEN name END AS name,
           CASE WHEN type = 'track' THEN properties
                WHEN type IN ('page', 'screen') AND category IS NULL THEN properties
                WHEN type IN ('page', 'screen') THEN properties || jsonb_build_object('category', category)
                WHEN type = 'group' THEN jsonb_build_object('groupId', "groupId")
                WHEN type = 'alias' THEN jsonb_build_object('previousId', "previousId")
                ELSE '{{}}'
           END AS properties,
           CASE WHEN type IN ('identify', 'group') THEN traits
                WHEN jsonb_typeof(full_context -> 'traits') = 'object' THEN full_context -> 'traits'
                ELSE '{{}}'
           END AS traits,
           full_context AS context,
           -- Segment's clock-skew correction: receivedAt - (sentAt - timestamp).
           CASE WHEN timestamp IS NULL THEN received_at
                WHEN sent IS NULL THEN timestamp
                ELSE received_at - (sent - timestamp)
           END AS timestamp,
           timestamp AS original_timestamp,
           sent AS sent_at,
           -- what the call adds to its customer's profile
           type = 'track' AND event = purchase_event AS is_order,
           CASE WHEN type = 'track' AND event = purchase_event THEN {_REVENUE} END AS revenue,
           CASE WHEN type = 'identify' AND traits <> '{{}}' THEN traits END AS profile_traits,
           CASE WHEN type = 'identify' THEN traits ->> 'email' END AS email,
           CASE WHEN type = 'identify' AND traits ? 'timezone' THEN traits ->> 'timezone'
                ELSE hints -> CAST(seq AS TEXT) ->> 0 END AS timezone,
           CASE WHEN type = 'identify' AND traits ? 'locale' THEN traits ->> 'locale'
                ELSE hints -> CAST(seq AS TEXT) ->> 1 END AS locale
    FROM received
), v AS (
    -- The first call of each messageId, attributed by userId (own column or a former one) or else by
    -- anonymousId (own column or a merged visitor id). Identity changes were settled before; a missing
    -- customer stops the insert.
    -- The customer row is share-locked, as a foreign key check would: a merge or an erasure waits
    -- until these events are stored, then moves or deletes them with the rest.
    SELECT DISTINCT ON (message_id) calls.*,
           CASE WHEN user_id IS NOT NULL
                THEN COALESCE(
                    (SELECT id FROM customers AS u WHERE u.user_id = calls.user_id FOR KEY SHARE),
                    (SELECT m.id FROM customer_user_aliases AS ua JOIN customers AS m ON m.id = ua.customer_id
                     WHERE ua.user_id = calls.user_id FOR KEY SHARE OF m))
                ELSE COALESCE(
                    (SELECT id FROM customers AS a WHERE a.anonymous_id = calls.anonymous_id FOR KEY SHARE),
                    (SELECT m.id FROM customer_aliases AS al JOIN customers AS m ON m.id = al.customer_id
                     WHERE al.anonymous_id = calls.anonymous_id FOR KEY SHARE OF m))
           END AS customer_id
    FROM calls ORDER BY message_id, pos, seq
), unresolved AS (
    SELECT count(*) AS n FROM v WHERE customer_id IS NULL
), ins AS (
    INSERT INTO events (message_id, type, name, customer_id, user_id, anonymous_id, properties, traits,
                        context, timestamp, original_timestamp, sent_at, received_at, source_key_id,
                        message_ref)
    SELECT message_id, type, name, customer_id, user_id, anonymous_id, properties, traits, context,
           timestamp, original_timestamp, sent_at, received_at, source_key_id,
           -- the message an open or click names (models.message_ref_of: a string that fits)
           CASE WHEN jsonb_typeof(properties -> 'message_ref') = 'string'
                 AND length(properties ->> 'message_ref') <= {MESSAGE_REF_LENGTH}
                THEN properties ->> 'message_ref' END
    FROM v WHERE (SELECT n FROM unresolved) = 0 ORDER BY message_id
    ON CONFLICT (message_id) DO NOTHING
    RETURNING id, message_id
), new AS (
    -- The calls stored just now, with what the profile needs of them.
    SELECT ins.id, v.pos, v.seq, v.type, v.customer_id, v.timestamp, v.received_at, v.is_order, v.revenue,
           v.profile_traits, v.email, v.timezone, v.locale
    FROM v JOIN ins USING (message_id)
), queued AS (
    INSERT INTO event_outbox (event_id, created_at)
    SELECT id, received_at FROM new WHERE type = 'track' ORDER BY id
), facts AS (
    SELECT customer_id,
           count(*) AS events,
           count(*) FILTER (WHERE is_order) AS orders,
           coalesce(sum(revenue), 0) AS value,
           min(timestamp) AS first_seen,
           max(timestamp) AS last_seen,
           max(received_at) AS received_at
    FROM new GROUP BY customer_id ORDER BY customer_id
), profiles AS (
    -- The latest email, time zone and locale the new calls name, per customer (few calls name any,
    -- so only those are sorted).
    SELECT customer_id,
           (array_agg(email ORDER BY pos DESC, seq DESC) FILTER (WHERE email IS NOT NULL))[1] AS email,
           (array_agg(timezone ORDER BY pos DESC, seq DESC) FILTER (WHERE timezone IS NOT NULL))[1]
               AS timezone,
           (array_agg(locale ORDER BY pos DESC, seq DESC) FILTER (WHERE locale IS NOT NULL))[1] AS locale
    FROM new WHERE email IS NOT NULL OR timezone IS NOT NULL OR locale IS NOT NULL
    GROUP BY customer_id
), patches AS (
    SELECT customer_id, jsonb_object_agg(key, value) AS patch FROM (
        SELECT DISTINCT ON (new.customer_id, t.key) new.customer_id, t.key, t.value
        FROM new, jsonb_each(new.profile_traits) AS t
        WHERE jsonb_typeof(new.profile_traits) = 'object'
        ORDER BY new.customer_id, t.key, new.pos DESC, new.seq DESC
    ) AS latest GROUP BY customer_id
), updated AS (
    UPDATE customers AS c SET
        event_count = c.event_count + f.events,
        order_count = c.order_count + f.orders,
        lifetime_value = LEAST(GREATEST(c.lifetime_value + f.value, -{MAX_LIFETIME_VALUE}),
                               {MAX_LIFETIME_VALUE}),
        first_seen_at = LEAST(c.first_seen_at, f.first_seen),
        last_seen_at = GREATEST(c.last_seen_at, f.last_seen),
        traits = CASE WHEN p.patch IS NULL THEN c.traits ELSE c.traits || p.patch END,
        email = COALESCE(pr.email, c.email),
        -- Hashed only when a call names an address the profile did not have, or has without its digest
        -- (written by an earlier release; see Customer.email_sha256).
        email_sha256 = CASE WHEN pr.email IS NULL OR (pr.email = c.email AND c.email_sha256 IS NOT NULL)
                            THEN c.email_sha256
                            ELSE substr(sha256(convert_to(pr.email, 'UTF8')), 1, 16) END,
        timezone = COALESCE(pr.timezone, c.timezone),
        locale = COALESCE(pr.locale, c.locale),
        updated_at = f.received_at
    -- In customer id order, as every writer locks them.
    FROM facts AS f LEFT JOIN profiles AS pr USING (customer_id) LEFT JOIN patches AS p USING (customer_id)
    WHERE c.id = f.customer_id
)
SELECT pos, count(*) AS stored FROM new GROUP BY pos
UNION ALL SELECT -1, n FROM unresolved WHERE n > 0
"""  # noqa: S608


# For the connections that run it: PostgreSQL would JIT-compile the statement (its row estimates are
# large), which takes longer than running it.
SESSION_SETTINGS = {"jit": "off"}


async def store_group(
    session: AsyncSession, requests: str, *, own_connection: bool = True
) -> dict[int, int] | None:
    """Store a group of requests (the JSON document ``requests``: see service.Submission.document);
    returns how many new events each request position stored, or ``None``, having stored nothing,
    when a call names a customer that does not exist yet. On a connection not opened with
    SESSION_SETTINGS (``own_connection=False``), they are set for the caller's transaction first."""
    connection = (await (await session.connection()).get_raw_connection()).driver_connection
    if not own_connection:
        for name, value in SESSION_SETTINGS.items():
            await connection.execute("SELECT set_config($1, $2, true)", name, value)
    stored: dict[int, int] = {}
    for pos, count in await connection.fetch(STORE_GROUP, requests):
        if pos < 0:
            return None
        stored[pos] = count
    return stored
