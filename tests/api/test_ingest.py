"""The Segment HTTP Tracking API: what backend systems send, stored once and attributed right."""

import gzip
import json
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from domain.customers.models import Customer, CustomerAlias
from domain.events.models import Event, EventOutbox


async def _rows(sessions, model, *where):
    async with sessions() as session:
        return list(await session.scalars(select(model).where(*where)))


async def _count(sessions, model) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def _customer(sessions, user_id) -> Customer:
    (found,) = await _rows(sessions, Customer, Customer.user_id == user_id)
    return found


async def test_every_call_type_is_stored_and_attributed(client, sessions, write_key):
    auth = (write_key, "")
    calls = {
        "identify": {"userId": "u1", "traits": {"email": "Ada@Example.COM", "name": "Ada"}},
        "track": {"userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}},
        "page": {"userId": "u1", "name": "Pricing", "category": "Docs", "properties": {"path": "/p"}},
        "screen": {"userId": "u1", "name": "Home"},
        "group": {"userId": "u1", "groupId": 42, "traits": {"name": "Acme"}},
        "alias": {"userId": "u1", "previousId": "visitor-1"},
    }
    for kind, body in calls.items():
        response = await client.post(f"/v1/{kind}", json=body, auth=auth)
        assert response.status_code == 200, (kind, response.text)
        assert response.json() == {"success": True}
    stored = {e.type: e for e in await _rows(sessions, Event)}
    assert set(stored) == set(calls)
    customer = await _customer(sessions, "u1")
    assert {e.customer_id for e in stored.values()} == {customer.id}
    assert stored["track"].name == "Signed Up" and stored["track"].properties == {"plan": "pro"}
    assert stored["page"].name == "Pricing" and stored["page"].properties["category"] == "Docs"
    assert stored["group"].properties == {"groupId": "42"} and stored["group"].traits == {"name": "Acme"}
    assert customer.email == "ada@example.com"
    assert customer.traits == {"email": "ada@example.com", "name": "Ada"}
    assert customer.event_count == 6
    # Only track calls are journey triggers.
    outbox = await _rows(sessions, EventOutbox)
    assert [o.event_id for o in outbox] == [stored["track"].id]


async def test_write_key_in_body_and_gzip_body(client, sessions, write_key):
    payload = {"writeKey": write_key, "batch": [{"type": "track", "userId": "g", "event": "Zipped"}]}
    response = await client.post(
        "/v1/batch",
        content=gzip.compress(json.dumps(payload).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    (event,) = await _rows(sessions, Event)
    assert event.name == "Zipped"


async def test_duplicate_message_id_is_acknowledged_not_stored_again(client, sessions, write_key):
    body = {"userId": "d", "event": "Paid", "messageId": "m-1", "properties": {"n": 1}}
    for _ in range(3):
        assert (await client.post("/v1/track", json=body, auth=(write_key, ""))).status_code == 200
    batch = {"batch": [{**body, "type": "track"}, {**body, "type": "track"}]}
    assert (await client.post("/v1/batch", json=batch, auth=(write_key, ""))).status_code == 200
    assert await _count(sessions, Event) == 1
    assert await _count(sessions, EventOutbox) == 1
    assert (await _customer(sessions, "d")).event_count == 1


async def test_clock_skew_is_corrected_from_sent_at(client, sessions, write_key):
    # The device clock runs 2 hours fast: it says it sent at 12:00 what happened at 11:55.
    body = {
        "userId": "skew",
        "event": "Opened",
        "timestamp": "2030-01-01T11:55:00Z",
        "sentAt": "2030-01-01T12:00:00+00:00",
    }
    before = datetime.now(UTC)
    assert (await client.post("/v1/track", json=body, auth=(write_key, ""))).status_code == 200
    (event,) = await _rows(sessions, Event)
    assert before <= event.received_at <= datetime.now(UTC)
    assert event.timestamp == event.received_at - timedelta(minutes=5)
    assert event.original_timestamp == datetime(2030, 1, 1, 11, 55, tzinfo=UTC)
    # Without sentAt the timestamp is taken as given.
    body = {"userId": "skew", "event": "Old", "timestamp": "2024-05-01T10:00:00+02:00"}
    assert (await client.post("/v1/track", json=body, auth=(write_key, ""))).status_code == 200
    (old,) = await _rows(sessions, Event, Event.name == "Old")
    assert old.timestamp == datetime(2024, 5, 1, 8, tzinfo=UTC)
    customer = await _customer(sessions, "skew")
    assert customer.first_seen_at == old.timestamp
    assert customer.last_seen_at == event.timestamp


async def _rejected(client, sessions, path, *, auth, status=400, **kwargs) -> dict:
    before = await _count(sessions, Event), await _count(sessions, Customer)
    response = await client.post(path, auth=auth, **kwargs)
    assert response.status_code == status, response.text
    assert (await _count(sessions, Event), await _count(sessions, Customer)) == before
    return response.json()


async def test_bad_input_is_a_400_naming_the_event_and_field_and_stores_nothing(client, sessions, write_key):
    auth = (write_key, "")
    good = {"type": "track", "userId": "ok", "event": "Fine"}

    body = await _rejected(client, sessions, "/v1/track", auth=auth, json={"event": "No one"})
    assert body["error"] == "invalid_event"
    assert "userId or anonymousId is required" in body["detail"][0]["problem"]

    body = await _rejected(client, sessions, "/v1/track", auth=auth, json={"userId": "u", "event": 5})
    assert body["detail"][0]["field"] == "event"

    body = await _rejected(
        client, sessions, "/v1/batch", auth=auth, json={"batch": [good, {**good, "properties": [1, 2]}]}
    )
    assert body["detail"] == [{"index": 1, "field": "properties", "problem": "Input should be an object"}]

    body = await _rejected(
        client, sessions, "/v1/batch", auth=auth, json={"batch": [good, good, {**good, "type": "purchase"}]}
    )
    assert body["detail"][0]["index"] == 2 and body["detail"][0]["field"] == "type"
    assert "unknown call type 'purchase'" in body["detail"][0]["problem"]

    body = await _rejected(
        client,
        sessions,
        "/v1/batch",
        auth=auth,
        json={"batch": [good, {"type": "identify", "userId": "x", "traits": {"email": "not-an-email"}}]},
    )
    assert body["detail"][0]["index"] == 1 and body["detail"][0]["field"] == "traits.email"

    body = await _rejected(
        client, sessions, "/v1/batch", auth=auth, json={"batch": [{**good, "timestamp": "yesterday"}]}
    )
    assert body["detail"][0]["field"] == "timestamp"

    # Times no column can hold once the clock-skew correction has moved them (it shifts a timestamp by
    # as much as sentAt differs from it).
    far = {**good, "timestamp": "9999-12-31T23:59:59Z", "sentAt": "0001-01-01T00:00:00+14:00"}
    body = await _rejected(client, sessions, "/v1/batch", auth=auth, json={"batch": [good, far]})
    assert [(d["index"], d["field"]) for d in body["detail"]] == [(1, "timestamp"), (1, "sentAt")]
    body = await _rejected(
        client, sessions, "/v1/batch", auth=auth, json={"batch": [good], "sentAt": "9999-12-31T00:00:00Z"}
    )
    assert body["detail"][0]["field"] == "sentAt"

    deep: dict = {}
    for _ in range(400):
        deep = {"a": deep}
    body = await _rejected(client, sessions, "/v1/track", auth=auth, json={**good, "properties": deep})
    assert body["detail"] == [{"field": "properties", "problem": "nested too deeply (at most 250 levels)"}]
    body = await _rejected(
        client, sessions, "/v1/batch", auth=auth, json={"batch": [good, {**good, "properties": deep}]}
    )
    assert body["error"] == "malformed_json"  # the batch parser stops at its own depth limit

    body = await _rejected(
        client,
        sessions,
        "/v1/track",
        auth=auth,
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert body["error"] == "malformed_json"

    body = await _rejected(client, sessions, "/v1/batch", auth=auth, json={"batch": "nope"})
    assert body["detail"][0]["field"] == "batch"

    body = await _rejected(
        client, sessions, "/v1/batch", auth=auth, content=b"garbage", headers={"Content-Encoding": "gzip"}
    )
    assert body["error"] == "malformed_gzip"


async def test_a_gzip_body_is_read_whole_or_refused(client, sessions, write_key):
    """A gzip body cut short (its trailer, with the checksum, missing) was read as far as it went:
    stored when the JSON happened to be whole, else called malformed JSON. Several gzip members one
    after another are read as gunzip reads them, not the first alone."""
    auth, gz = (write_key, ""), {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    packed = gzip.compress(json.dumps({"userId": "cut", "event": "Cut Short"}).encode())
    for cut in (packed[:-4], packed[:-8], packed[: len(packed) // 2]):
        body = await _rejected(client, sessions, "/v1/track", auth=auth, content=cut, headers=gz)
        assert body["error"] == "malformed_gzip", body
        assert body["detail"]["field"] == "body" and "cut short" in body["detail"]["problem"]
    damaged = packed[:-5] + bytes([packed[-5] ^ 1]) + packed[-4:]  # the checksum no longer matches
    body = await _rejected(client, sessions, "/v1/track", auth=auth, content=damaged, headers=gz)
    assert body["error"] == "malformed_gzip", body

    two = gzip.compress(b'{"userId": "two", ') + gzip.compress(b'"event": "Two Members"}')
    response = await client.post("/v1/track", auth=auth, content=two, headers=gz)
    assert response.status_code == 200, response.text
    async with sessions() as session:
        assert await session.scalar(select(Event.name).where(Event.user_id == "two")) == "Two Members"


async def test_oversize_event_and_batch_are_refused_whole(client, sessions, write_key):
    auth = (write_key, "")
    good = {"type": "track", "userId": "ok", "event": "Fine"}
    big = {**good, "properties": {"blob": "x" * (33 * 1024)}}

    body = await _rejected(client, sessions, "/v1/track", auth=auth, json=big)
    assert body["error"] == "too_large"

    body = await _rejected(client, sessions, "/v1/batch", auth=auth, json={"batch": [good, good, big]})
    assert body["error"] == "too_large"
    assert body["detail"][0]["index"] == 2 and "32.0 KB" in body["detail"][0]["problem"]

    medium = {**good, "properties": {"blob": "x" * (30 * 1024)}}
    body = await _rejected(client, sessions, "/v1/batch", auth=auth, json={"batch": [medium] * 17})
    assert body["error"] == "too_large" and "500.0 KB" in body["detail"]["problem"]

    # A gzip bomb is cut off at the limit, not inflated in memory.
    bomb = gzip.compress(json.dumps({"batch": [good], "pad": "0" * (5 * 1024 * 1024)}).encode())
    assert len(bomb) < 32 * 1024
    body = await _rejected(
        client, sessions, "/v1/batch", auth=auth, content=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert body["error"] == "too_large"


async def test_a_batch_over_32_kb_with_a_call_nested_too_deeply_is_refused_not_failed(
    client, sessions, write_key
):
    deep = "x"
    for _ in range(300):
        deep = [deep]
    good = {"type": "track", "userId": "ok", "event": "Fine", "properties": {"pad": "y" * 20_000}}
    nested = {"type": "track", "userId": "ok", "event": "Deep", "properties": {"d": deep}}
    # Measuring each call of a body over 32 KB wrote it as JSON, which failed on the deep one: a 500,
    # which Segment's libraries retry for ever. It is refused as in a smaller batch.
    for batch in ([good, good, nested], [nested]):
        body = await _rejected(client, sessions, "/v1/batch", auth=(write_key, ""), json={"batch": batch})
        assert body["error"] == "malformed_json" and "recursion limit" in body["detail"]["problem"], body


async def test_a_call_nested_a_thousand_levels_deep_with_a_nul_is_refused_not_failed(
    client, sessions, write_key
):
    depth = 1000  # orjson reads up to 1024 levels
    for text in ('"a"', '"a\\u0000b"'):
        raw = '{"userId": "u", "event": "E", "properties": {"d": %s}}' % ("[" * depth + text + "]" * depth)
        # With a NUL in it, the search for the NUL passed Python's recursion limit: a 500.
        body = await _rejected(
            client,
            sessions,
            "/v1/track",
            auth=(write_key, ""),
            content=raw.encode(),
            headers={"Content-Type": "application/json"},
        )
        assert body["detail"] == [
            {"field": "properties", "problem": "nested too deeply (at most 250 levels)"}
        ], body


async def test_keys_are_checked(client, sessions, write_key, marketer_headers):
    call = {"userId": "u", "event": "E"}
    await _rejected(client, sessions, "/v1/track", auth=None, status=401, json=call)
    await _rejected(client, sessions, "/v1/track", auth=("wk_unknown", ""), status=401, json=call)
    await _rejected(client, sessions, "/v1/track", auth=None, status=403, json=call, headers=marketer_headers)
    # A write key can only write: the management API refuses it.
    response = await client.get("/api/customers", auth=(write_key, ""))
    assert response.status_code == 403


async def test_identify_with_both_ids_merges_the_visitor_and_reattributes_events(client, sessions, write_key):
    auth = (write_key, "")
    # A known customer, and an anonymous visitor browsing before logging in.
    await client.post(
        "/v1/identify", json={"userId": "kim", "traits": {"plan": "pro", "name": "Kim"}}, auth=auth
    )
    await client.post(
        "/v1/track",
        json={"userId": "kim", "event": "Order Completed", "properties": {"revenue": 10}},
        auth=auth,
    )
    for name in ("Viewed", "Added to Cart"):
        await client.post("/v1/track", json={"anonymousId": "anon-7", "event": name}, auth=auth)
    await client.post(
        "/v1/identify",
        json={"anonymousId": "anon-7", "traits": {"name": "K.", "timezone": "Asia/Tokyo"}},
        auth=auth,
    )
    assert await _count(sessions, Customer) == 2

    response = await client.post(
        "/v1/identify",
        json={"userId": "kim", "anonymousId": "anon-7", "traits": {"locale": "ja_JP"}},
        auth=auth,
    )
    assert response.status_code == 200
    (kim,) = await _rows(sessions, Customer)
    assert kim.user_id == "kim"
    events = await _rows(sessions, Event)
    assert len(events) == 6 and {e.customer_id for e in events} == {kim.id}
    assert kim.event_count == 6 and kim.order_count == 1 and kim.lifetime_value == Decimal("10.00")
    # The known profile's traits win; the visitor's fill the gaps.
    assert kim.traits == {"plan": "pro", "name": "Kim", "timezone": "Asia/Tokyo", "locale": "ja-JP"}
    assert kim.timezone == "Asia/Tokyo" and kim.locale == "ja-JP"
    assert [a.anonymous_id for a in await _rows(sessions, CustomerAlias)] == ["anon-7"]

    # Later visits under the old visitor id land on the same customer.
    await client.post("/v1/track", json={"anonymousId": "anon-7", "event": "Came Back"}, auth=auth)
    (back,) = await _rows(sessions, Event, Event.name == "Came Back")
    assert back.customer_id == kim.id


async def test_alias_merges_a_visitor_and_a_first_identify_claims_it(client, sessions, write_key):
    auth = (write_key, "")
    await client.post("/v1/track", json={"anonymousId": "v1", "event": "Viewed"}, auth=auth)
    await client.post("/v1/track", json={"userId": "lee", "event": "Signed Up"}, auth=auth)
    assert (
        await client.post("/v1/alias", json={"previousId": "v1", "userId": "lee"}, auth=auth)
    ).status_code == 200
    (lee,) = await _rows(sessions, Customer)
    assert lee.user_id == "lee" and lee.event_count == 3
    assert {e.customer_id for e in await _rows(sessions, Event)} == {lee.id}

    # An anonymous profile seen with a userId for the first time simply becomes that customer.
    await client.post("/v1/track", json={"anonymousId": "v2", "event": "Viewed"}, auth=auth)
    await client.post("/v1/identify", json={"anonymousId": "v2", "userId": "max"}, auth=auth)
    max_ = await _customer(sessions, "max")
    assert max_.anonymous_id == "v2" and max_.event_count == 2


async def test_a_visitor_id_of_another_known_person_is_not_merged(client, sessions, write_key):
    auth = (write_key, "")
    await client.post("/v1/identify", json={"userId": "a", "anonymousId": "shared-device"}, auth=auth)
    await client.post("/v1/identify", json={"userId": "b", "anonymousId": "shared-device"}, auth=auth)
    a, b = await _customer(sessions, "a"), await _customer(sessions, "b")
    assert a.id != b.id and a.event_count == 1 and b.event_count == 1


async def test_purchase_facts_and_timezone_locale_from_context(client, sessions, write_key, app):
    auth = (write_key, "")
    batch = [
        {"type": "track", "userId": "p", "event": "Order Completed", "properties": {"revenue": 19.99}},
        {"type": "track", "userId": "p", "event": "Order Completed", "properties": {"revenue": "5.01"}},
        {"type": "track", "userId": "p", "event": "Order Completed", "properties": {"revenue": "n/a"}},
        {"type": "track", "userId": "p", "event": "Product Viewed", "properties": {"revenue": 100}},
    ]
    context = {"timezone": "Europe/Paris", "locale": "fr-FR"}
    assert (
        await client.post("/v1/batch", json={"batch": batch, "context": context}, auth=auth)
    ).status_code == 200
    p = await _customer(sessions, "p")
    assert (p.order_count, p.lifetime_value, p.event_count) == (3, Decimal("25.00"), 4)
    assert (p.timezone, p.locale) == ("Europe/Paris", "fr-FR")
    # A bad time zone in context is ignored; a bad one in traits is refused.
    await client.post(
        "/v1/track", json={"userId": "p", "event": "X", "context": {"timezone": "Mars/Base"}}, auth=auth
    )
    assert (await _customer(sessions, "p")).timezone == "Europe/Paris"
    response = await client.post(
        "/v1/identify", json={"userId": "p", "traits": {"timezone": "Mars/Base"}}, auth=auth
    )
    assert response.status_code == 400 and response.json()["detail"][0]["field"] == "traits.timezone"


async def test_purchase_event_and_revenue_property_are_configurable(client, sessions, write_key, app):
    app.state.settings = app.state.settings.model_copy(
        update={"purchase_event": "Paid", "revenue_property": "total"}
    )
    auth = (write_key, "")
    await client.post(
        "/v1/track", json={"userId": "c", "event": "Paid", "properties": {"total": 7}}, auth=auth
    )
    await client.post(
        "/v1/track", json={"userId": "c", "event": "Order Completed", "properties": {"revenue": 7}}, auth=auth
    )
    c = await _customer(sessions, "c")
    assert (c.order_count, c.lifetime_value) == (1, Decimal("7.00"))


async def test_batch_level_sent_at_corrects_every_call(client, sessions, write_key):
    batch = {
        "sentAt": "2030-01-01T12:00:00Z",
        "batch": [
            {"type": "track", "userId": "s", "event": "A", "timestamp": "2030-01-01T11:59:00Z"},
            {"type": "track", "userId": "s", "event": "B", "timestamp": "2030-01-01T11:00:00Z"},
        ],
    }
    assert (await client.post("/v1/batch", json=batch, auth=(write_key, ""))).status_code == 200
    a, b = sorted(await _rows(sessions, Event), key=lambda e: e.name)
    assert a.received_at - a.timestamp == timedelta(minutes=1)
    assert b.received_at - b.timestamp == timedelta(hours=1)


async def test_text_no_database_can_store_is_refused_naming_the_call(client, sessions, write_key):
    auth = (write_key, "")
    good = {"type": "track", "userId": "ok", "event": "Fine"}
    body = await _rejected(
        client,
        sessions,
        "/v1/batch",
        auth=auth,
        json={"batch": [good, {**good, "properties": {"note": "a\u0000b"}}]},
    )
    [problem] = body["detail"]
    assert (problem["index"], problem["field"]) == (1, "properties.note") and "NUL" in problem["problem"]
    # A single call names the field too, in a key as in a value (both said only "body").
    for path, call, field in [
        ("/v1/track", {"userId": "ok", "event": "Fine\u0000"}, "event"),
        ("/v1/identify", {"userId": "ok", "traits": {"tags": ["a", "b\u0000"]}}, "traits.tags.1"),
        ("/v1/identify", {"userId": "ok", "traits": {"a\u0000": 1}}, "traits.a\u0000"),
    ]:
        body = await _rejected(client, sessions, path, auth=auth, json=call)
        [problem] = body["detail"]
        assert problem["field"] == field and "NUL" in problem["problem"]
    # The same six characters written out (a backslash, then u0000) are ordinary text.
    response = await client.post(
        "/v1/batch", auth=auth, json={"batch": [{**good, "properties": {"note": "a\\u0000b"}}]}
    )
    assert response.status_code == 200
    (event,) = await _rows(sessions, Event)
    assert event.properties == {"note": "a\\u0000b"}


async def test_what_json_cannot_carry_or_no_column_store_is_refused_naming_the_field(
    client, sessions, write_key
):
    auth, json_type = (write_key, ""), {"Content-Type": "application/json"}
    call = b'{"type": "track", "userId": "ok", "event": "Fine", "properties": {"x": %s}}'
    # NaN and Infinity are not JSON, and 1e400 is beyond any float: a batch refuses them as a single
    # call does (they were stored as null).
    for number in (b"NaN", b"-Infinity", b"Infinity", b"1e400", b"-1E+999"):
        body = await _rejected(
            client,
            sessions,
            "/v1/batch",
            auth=auth,
            headers=json_type,
            content=b'{"batch": [%s]}' % (call % number),
        )
        assert body["error"] == "malformed_json", body
    # An integer beyond 64 bits is named as such (it was called "nested too deeply").
    body = await _rejected(
        client,
        sessions,
        "/v1/batch",
        auth=auth,
        headers=json_type,
        content=b'{"batch": [%s]}' % (call % (b"1" * 30)),
    )
    assert body["detail"] == [
        {
            "index": 0,
            "field": "properties",
            "problem": "holds an integer beyond 64 bits, which cannot be stored; send it as a string",
        }
    ]
    # A single call refuses it the same way (it was stored as a float, no longer the number sent).
    for path, field, content in (
        ("/v1/track", "properties", call % (b"1" * 30)),
        ("/v1/identify", "traits", b'{"userId": "ok", "traits": {"n": -%s}}' % (b"9" * 20)),
    ):
        body = await _rejected(client, sessions, path, auth=auth, headers=json_type, content=content)
        assert body["detail"] == [
            {
                "field": field,
                "problem": "holds an integer beyond 64 bits, which cannot be stored; send it as a string",
            }
        ]
    # The batch's own context is applied to every call: NUL there is refused too (it was stored on
    # SQLite, a 500 on PostgreSQL).
    shared = {"context": {"ip": "a\u0000b"}, "batch": [{"type": "track", "userId": "ok", "event": "E"}]}
    body = await _rejected(client, sessions, "/v1/batch", auth=auth, json=shared)
    assert body["detail"][0]["field"] == "context.ip" and "NUL" in body["detail"][0]["problem"]
    # A time zone nested a thousand lists deep is named, not quoted (quoting it failed).
    deep = b"[" * 1000 + b"]" * 1000
    identify = b'{"userId": "ok", "traits": {"timezone": %s}}' % deep
    body = await _rejected(client, sessions, "/v1/identify", auth=auth, headers=json_type, content=identify)
    assert body["detail"] == [
        {"field": "traits.timezone", "problem": "a list is not an IANA time zone such as Europe/Paris"}
    ]
    # Ordinary large numbers and exponents still pass.
    ok = b'{"batch": [%s]}' % (call % b"1.5e300")
    assert (await client.post("/v1/batch", auth=auth, headers=json_type, content=ok)).status_code == 200
    # So do the largest integers a column holds, and long digit runs in text, exactly as sent.
    largest = b'{"userId": "ok", "event": "Big", "messageId": "%s", "properties": {"x": %d, "y": %d}}'
    content = largest % (b"7" * 40, 2**63 - 1, -(2**63))
    assert (await client.post("/v1/track", auth=auth, headers=json_type, content=content)).status_code == 200
    (big,) = [e for e in await _rows(sessions, Event) if e.name == "Big"]
    assert big.properties == {"x": 2**63 - 1, "y": -(2**63)} and big.message_id == "7" * 40


async def test_revenue_counts_to_the_cent_and_ignores_what_is_not_an_amount(client, sessions, write_key):
    revenues = [2.345, "1e3", " 7 ", -5, 1e15, "12abc", True, None, {"x": 1}]
    batch = [
        {"type": "track", "userId": "r", "event": "Order Completed", "properties": {"revenue": value}}
        for value in revenues
    ]
    assert (await client.post("/v1/batch", json={"batch": batch}, auth=(write_key, ""))).status_code == 200
    r = await _customer(sessions, "r")
    # 2.35 (half up) + 1000 + 7 - 5 (a refund); the absurd, the malformed and the missing add nothing.
    assert (r.order_count, r.lifetime_value) == (len(revenues), Decimal("1004.35"))


async def test_a_revenue_string_counts_only_as_a_plain_ascii_number_alike_on_both_databases(
    client, sessions, write_key
):
    # PostgreSQL's \s took a Unicode space that trim() then left for the cast to refuse: a 500, and
    # nothing stored. SQLite's Decimal took '1_000', Arabic-Indic digits and a no-break space, which
    # PostgreSQL counted 0.
    revenues = ["12\u2003", "1_000", "\u0661\u0662", "\u00a09", "1e0001", "\t7\n", "+.5"]
    batch = [
        {"type": "track", "userId": "r", "event": "Order Completed", "properties": {"revenue": value}}
        for value in revenues
    ]
    got = await client.post("/v1/batch", json={"batch": batch}, auth=(write_key, ""))
    assert got.status_code == 200, got.text
    r = await _customer(sessions, "r")
    assert (r.order_count, r.lifetime_value) == (len(revenues), Decimal("7.50"))


async def test_a_body_that_is_not_utf8_is_refused_as_such(client, sessions, write_key):
    """orjson names a body that is not UTF-8 "str is not valid UTF-8: surrogates not allowed", which sent
    people looking for surrogates; the 400 now says the body is not UTF-8, and where."""
    call = '{"userId": "zoë", "event": "Viewed", "properties": {"note": "%s"}}'
    latin1 = (call % "café").encode("latin-1")  # ë at offset 14
    cases = [
        ("/v1/track", latin1, 14),
        ("/v1/identify", b'{"userId": "x", "traits": {"name": "' + "é".encode()[:1] + b'"}}', 36),
        ("/v1/batch", b'{"batch": [' + latin1 + b"]}", 25),
        ("/v1/batch", b'\xff{"batch": []}', 0),
    ]
    for path, raw, offset in cases:
        for gzipped in (False, True):
            headers = {"Content-Type": "application/json"}
            if gzipped:
                headers["Content-Encoding"] = "gzip"
            content = gzip.compress(raw) if gzipped else raw
            body = await _rejected(
                client, sessions, path, auth=(write_key, ""), content=content, headers=headers
            )
            assert body["error"] == "malformed_json", body
            assert body["detail"]["field"] == "body", body
            assert body["detail"]["problem"].startswith("the body is not UTF-8 text"), body
            assert f"at offset {offset})" in body["detail"]["problem"], body
    # Also when the write key is in the body, which is then parsed to find it.
    raw = b'{"writeKey": "%s", "batch": [], "x": "\xe9"}' % write_key.encode()
    body = await _rejected(client, sessions, "/v1/batch", auth=None, content=raw)
    assert "not UTF-8" in body["detail"]["problem"], body
    # UTF-8 that is not JSON keeps its JSON message; an escaped lone surrogate is valid UTF-8.
    for raw in (b'{"userId": "zo\xc3\xab", ', b'{"userId": "\\ud800", "event": "E"}'):
        body = await _rejected(client, sessions, "/v1/track", auth=(write_key, ""), content=raw)
        assert body["detail"]["problem"].startswith("not valid JSON: "), body
    ok = await client.post("/v1/track", auth=(write_key, ""), content=(call % "café").encode())
    assert ok.status_code == 200, ok.text


async def test_a_body_in_an_encoding_other_than_gzip_is_refused_naming_the_header(
    client, sessions, write_key
):
    """A br or deflate body was read as plain JSON and refused as "not UTF-8 text (byte 0x8b ...)",
    which sent people looking at their text; the 400 names Content-Encoding. A gzip body sent
    without the header is told to send it."""
    auth, call = (write_key, ""), json.dumps({"userId": "enc", "event": "Encoded"}).encode()
    for encoding in ("br", "deflate", "compress, gzip"):
        for path in ("/v1/track", "/v1/batch"):
            body = await _rejected(
                client,
                sessions,
                path,
                auth=auth,
                content=zlib.compress(call),
                headers={"Content-Encoding": encoding},
            )
            assert body["error"] == "unsupported_encoding", body
            assert body["detail"]["field"] == "Content-Encoding", body
            assert repr(encoding) in body["detail"]["problem"], body
    body = await _rejected(client, sessions, "/v1/track", auth=auth, content=gzip.compress(call))
    assert "send it with Content-Encoding: gzip" in body["detail"]["problem"], body
    for encoding in ("identity", "GZip", " x-gzip "):
        content = call if encoding == "identity" else gzip.compress(call)
        r = await client.post("/v1/track", auth=auth, content=content, headers={"Content-Encoding": encoding})
        assert r.status_code == 200, r.text
