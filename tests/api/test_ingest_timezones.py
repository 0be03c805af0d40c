"""A time zone ingestion takes is an IANA zone name as the rest of the product knows it (segments' local
dates, the data-quality review). ZoneInfo also opens other files of the tz database ("posix/...",
"right/...", "posixrules"): they were stored, then segments took them for UTC while journeys used them,
and the data-quality review called them "not an IANA time zone"."""

import pytest
from sqlalchemy import select

from domain.customers.models import Customer

NOT_ZONES = ["posix/Europe/Paris", "right/UTC", "posixrules"]


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
