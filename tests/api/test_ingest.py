"""The Segment HTTP Tracking API: what backend systems send, stored once and attributed right."""

import gzip
import json
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
