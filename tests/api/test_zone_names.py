"""One definition of a time-zone name (``domain.dates``): what a template's preview, a journey and a
broadcast accept from a marketer, and what the formatting filters, journey timing and local-time
broadcasts read, are the same names."""

from __future__ import annotations

from datetime import UTC

import pytest

from domain import dates
from domain.broadcasts.schemas import BroadcastIn
from domain.email import formatting
from domain.journeys import timing

TEMPLATE = {
    "id": "hello",
    "name": "Hello",
    "subject": "Hi",
    "html": "<p>{{ event.timestamp | datetime }}</p>",
}
# ZoneInfo opens each of these (a file of the tz database, or a case-insensitive file system), but none
# is a zone name the product stores for a customer
NOT_ZONES = ["posix/Europe/Paris", "right/UTC", "posixrules", "europe/paris", "Europe/Paris ", "localtime"]


def _journey(zone: str) -> dict:
    nodes = [
        {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"},
        {"id": "hello", "type": "send_email", "template_id": "hello", "next": "done"},
        {"id": "done", "type": "exit"},
    ]
    return {"id": "j1", "name": "J1", "definition": {"nodes": nodes, "rules": {"default_timezone": zone}}}


def _broadcast(zone: str) -> dict:
    return {
        "name": "b",
        "template_id": "hello",
        "audience": {"kind": "all"},
        "local_send_at": "2030-03-01T09:00",
        "default_timezone": zone,
    }


async def _attempts(client, headers, zone: str) -> dict[str, tuple[int, str]]:
    """The answer of each place a marketer writes a zone."""
    await client.post("/api/templates", json=TEMPLATE, headers=headers)
    preview = await client.post("/api/templates/hello/preview", json={"timezone": zone}, headers=headers)
    journeys = await client.post("/api/journeys", json=_journey(zone), headers=headers)
    # validated before Temporal is reached: a refusal is a 422 whether or not Temporal runs
    broadcasts = await client.post("/api/broadcasts", json=_broadcast(zone), headers=headers)
    return {
        name: (r.status_code, r.text)
        for name, r in (("preview", preview), ("journey", journeys), ("broadcast", broadcasts))
    }


@pytest.mark.parametrize("zone", NOT_ZONES)
async def test_a_name_that_is_no_zone_is_refused_naming_the_field_by_templates_journeys_and_broadcasts(
    client, marketer_headers, zone
):
    answers = await _attempts(client, marketer_headers, zone)

    assert {name: status for name, (status, _) in answers.items()} == dict.fromkeys(answers, 422), answers
    assert "timezone" in answers["preview"][1] and "not an IANA time zone" in answers["preview"][1]
    assert "default_timezone" in answers["journey"][1] and "not an IANA timezone" in answers["journey"][1]
    assert "default_timezone" in answers["broadcast"][1] and "not an IANA timezone" in answers["broadcast"][1]
    assert (await client.get("/api/journeys", headers=marketer_headers)).json() == []
    assert (await client.get("/api/broadcasts", headers=marketer_headers)).json() == []


async def test_a_zone_name_is_accepted_by_templates_journeys_and_broadcasts(client, marketer_headers):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    preview = {"timezone": "Asia/Tokyo", "event": {"name": "x", "timestamp": "2026-12-04T18:00:00Z"}}
    r = await client.post("/api/templates/hello/preview", json=preview, headers=marketer_headers)
    assert r.status_code == 200 and "Dec 5, 2026, 3:00:00" in r.json()["html"], r.text
    journey = _journey("Asia/Tokyo")
    assert (await client.post("/api/journeys", json=journey, headers=marketer_headers)).status_code == 201
    spec = BroadcastIn.model_validate(_broadcast("Asia/Tokyo"))  # the API goes on to Temporal
    assert spec.default_timezone == "Asia/Tokyo"


@pytest.mark.parametrize("zone", [None, "", 5, "Mars/Olympus", *NOT_ZONES])
def test_every_reader_passes_over_what_is_no_zone_to_the_default_then_utc(zone):
    tokyo = dates.zone("Asia/Tokyo")
    assert dates.zone(zone, "Asia/Tokyo") is tokyo
    assert timing.zone(zone, "Asia/Tokyo") is tokyo
    assert formatting.locality(timezone=zone, default_timezone="Asia/Tokyo").zone is tokyo
    assert dates.zone(zone, zone).utcoffset(None) == UTC.utcoffset(None)
    assert formatting.locality(timezone=None, default_timezone=zone).zone.utcoffset(None) == UTC.utcoffset(
        None
    )
