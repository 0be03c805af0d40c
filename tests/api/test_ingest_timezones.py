"""A time zone ingestion takes is an IANA zone name as the rest of the product knows it (segments' local
dates, the data-quality review). ZoneInfo also opens other files of the tz database ("posix/...",
"right/...", "posixrules"): they were stored, then segments took them for UTC while journeys used them,
and the data-quality review called them "not an IANA time zone"."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from domain.customers.models import Customer
from domain.events.models import Event

NOT_ZONES = ["posix/Europe/Paris", "right/UTC", "posixrules", "localtime"]


@pytest.mark.parametrize("zone", NOT_ZONES)
async def test_a_trait_timezone_that_is_a_tz_database_file_but_no_zone_is_refused(
    client, sessions, write_key, zone
):
    got = await client.post(
        "/v1/identify", auth=(write_key, ""), json={"userId": "ada", "traits": {"timezone": zone}}
    )
    assert got.status_code == 400, got.text
    assert got.json()["detail"][0]["field"] == "traits.timezone"
    async with sessions() as session:
        assert await session.scalar(select(Customer)) is None


async def test_a_context_timezone_that_is_no_zone_is_not_stored(
    client, sessions, write_key, marketer_headers
):
    batch = [
        {"type": "track", "userId": "ada", "event": "E", "context": {"timezone": "Europe/Paris"}},
        {"type": "track", "userId": "ada", "event": "E", "context": {"timezone": "posix/Asia/Tokyo"}},
    ]
    got = await client.post("/v1/batch", auth=(write_key, ""), json={"batch": batch})
    assert got.status_code == 200, got.text
    async with sessions() as session:
        assert (await session.scalar(select(Customer))).timezone == "Europe/Paris"
    # The zone stored is one the data-quality review takes as accurate.
    got = await client.get("/api/analytics/data-quality", headers=marketer_headers)
    assert got.json()["accuracy"]["findings"] == 0, got.text


async def test_a_time_with_an_offset_postgresql_does_not_take_is_stored_as_its_instant(
    client, sessions, write_key
):
    """Python takes UTC offsets up to 23:59, PostgreSQL up to 15:59 when it reads the calls' JSON: such
    a timestamp or sentAt answered 500 there. The instant is stored, on both databases."""
    far = "2024-03-20T12:49:25+22:26"  # 2024-03-19T14:23:25Z
    auth = (write_key, "")
    sent = [
        ("/v1/track", {"userId": "ada", "event": "Far East", "timestamp": far}),
        ("/v1/identify", {"userId": "bob", "timestamp": "2024-03-19T02:23:25-11:59"}),
        ("/v1/alias", {"userId": "cy", "previousId": "anon-cy", "timestamp": far}),
        ("/v1/batch", {"batch": [{"type": "track", "userId": "dee", "event": "Far East"}], "sentAt": far}),
    ]
    for path, body in sent:
        got = await client.post(path, auth=auth, json=body)
        assert got.status_code == 200, (path, got.text)
    async with sessions() as session:
        ada = await session.scalar(select(Event).where(Event.user_id == "ada"))
        bob = await session.scalar(select(Event).where(Event.user_id == "bob"))
        dee = await session.scalar(select(Event).where(Event.user_id == "dee"))
    assert ada.timestamp == ada.original_timestamp == datetime(2024, 3, 19, 14, 23, 25, tzinfo=UTC)
    assert bob.timestamp == datetime(2024, 3, 19, 14, 22, 25, tzinfo=UTC)
    assert dee.sent_at == datetime(2024, 3, 19, 14, 23, 25, tzinfo=UTC)
