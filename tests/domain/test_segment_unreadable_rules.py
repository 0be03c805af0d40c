"""A stored rule today's language refuses (saved before a check of today's: dates must be real calendar
days, keys match whole, ...) is one broken segment, not a broken service: the passes, previews, saves
and journeys' checks go on for every other segment, and the broken one (with the segments referring to
it) says why until a new rule is saved."""

from __future__ import annotations

from sqlalchemy import select

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.segments import service as segments
from domain.segments.models import Segment, SegmentVersion
from runtime.segment_refresher import SegmentRefresher
from tests.domain.test_segment_membership import _identify, _members, _track

# Stored before a date had to be a real day of the calendar (2024-13-45 was taken).
OLD = {"trait": "signup", "op": "before", "value": "2024-13-45"}
WHY = "rule.value: operator before needs a date as YYYY-MM-DD"


async def _stored(sessions, segment_id: str, rule: dict) -> None:
    async with transaction(sessions) as session:
        at = utcnow()
        session.add(Segment(id=segment_id, name=segment_id, current_version=1, created_at=at, updated_at=at))
        session.add(SegmentVersion(segment_id=segment_id, version=1, rule=rule, created_at=at))


async def test_a_stored_rule_the_language_now_refuses_breaks_only_its_segment(
    sessions, client, marketer_headers
):
    await _stored(sessions, "old", OLD)
    await _stored(sessions, "uses-old", {"all": [{"segment": "old"}, {"trait": "city", "op": "exists"}]})
    created = await client.post(
        "/api/segments",
        headers=marketer_headers,
        json={"id": "buyers", "name": "Buyers", "rule": {"event": "Order Completed"}},
    )
    assert created.status_code == 201, created.text  # every save read every rule: a 500
    await _identify(sessions, "ada", city="Berlin", signup="2020-01-01")
    await _track(sessions, "ada", "Order Completed")
    await SegmentRefresher(sessions).refresh_once()
    assert await _members(sessions, "buyers") == {"ada"}
    async with sessions() as session:
        ada = await session.scalar(select(Customer.id).where(Customer.user_id == "ada"))
        assert await segments.matches(session, "buyers", ada)  # a journey's branch on buyers

    preview = await client.post(
        "/api/segments/preview", headers=marketer_headers, json={"rule": {"segment": "buyers"}}
    )
    assert (preview.status_code, preview.json()["count"]) == (200, 1)
    naming = await client.post(
        "/api/segments/preview", headers=marketer_headers, json={"rule": {"not": {"segment": "old"}}}
    )
    assert naming.status_code == 422, naming.text
    assert naming.json()["detail"]["path"] == "rule.not.segment"
    assert WHY in naming.json()["detail"]["problem"]

    # The broken segments say so, and why; deleting the one others refer to is refused as ever.
    health = (await client.get("/api/health")).json()
    assert health["failing_segments"] == ["old", "uses-old"]
    old = (await client.get("/api/segments/old", headers=marketer_headers)).json()
    assert WHY in old["refresh_error"]
    uses_old = (await client.get("/api/segments/uses-old", headers=marketer_headers)).json()
    assert "'old'" in uses_old["refresh_error"]
    refused = await client.delete("/api/segments/old", headers=marketer_headers)
    assert refused.status_code == 409 and refused.json()["detail"]["segments"] == ["uses-old"]

    # A new rule mends both.
    fixed = await client.put(
        "/api/segments/old",
        headers=marketer_headers,
        json={"rule": {"trait": "signup", "op": "before", "value": "2024-12-31"}},
    )
    assert fixed.status_code == 200, fixed.text
    assert await _members(sessions, "old") == await _members(sessions, "uses-old") == {"ada"}
    assert (await client.get("/api/health")).json()["failing_segments"] == []
