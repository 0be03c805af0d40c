"""A rule at the documented limits (100 conditions, `in` lists of 1 000 values, 20 levels of nesting
counting the segments it refers to) saves, previews and is kept fresh by every pass on both
databases; and a stored segment whose statements fail anyway does not stop the others."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.segments import rules as r
from domain.segments import service as segments
from domain.segments.models import Segment, SegmentVersion
from domain.segments.schemas import PreviewIn
from runtime.segment_refresher import SegmentRefresher
from tests.domain.test_segment_membership import _create, _identify, _members, _track


def _in(key: str, hit, field: str = "trait") -> dict:
    """``key`` is one of 1 000 values, ``hit`` among them."""
    return {field: key, "op": "in", "value": [*(f"{key}-{j}" for j in range(999)), hit]}


def _ordered(sku: str) -> dict:
    return {"event": "Order Completed", "where": [_in("sku", sku, field="property")]}


def _nested(inner: dict) -> dict:
    """``inner`` under 10 levels of all and any in turn (and a not-any-not): the shape whose SQL ran
    SQLite's parser out of stack (``a AND (b OR (c AND ...``). Each level holds for ada exactly
    when ``inner`` does: she lives in Berlin, is no vip and not banned."""
    for i in range(8):
        if i == 3:  # three levels: not(any[banned, not(inner)]), i.e. not banned and inner
            inner = {"not": {"any": [{"trait": "banned", "op": "exists"}, {"not": inner}]}}
        elif i % 2:
            inner = {"any": [{"trait": f"vip{i}", "op": "exists"}, inner]}
        else:
            inner = {"all": [_in("city", "Berlin"), inner]}
    return inner


SEGMENTS = {
    "cities": _in("city", "Berlin"),
    "wide": {
        "any": [
            *(_in(f"k{i}", "yes") for i in range(50)),
            *(_ordered(f"sku{i}") for i in range(25)),  # two conditions each: the event and its test
        ]
    },
    "inner": _nested(_ordered("sku7")),  # 10 levels
    "deep": _nested({"segment": "inner"}),  # the reference at 10 levels: 20 once expanded
    "berliners": {"trait": "city", "op": "equals", "value": "Berlin"},
}


async def _live(sessions, segment_id: str) -> set[str]:
    async with sessions() as session:
        users = dict((await session.execute(select(Customer.id, Customer.user_id))).all())
        return {u for cid, u in users.items() if await segments.matches(session, segment_id, cid)}


async def test_segments_at_every_limit_save_preview_and_follow_each_change(sessions):
    async with sessions() as session:
        catalog = segments.Catalog([(sid, 1, rule) for sid, rule in SEGMENTS.items()])
    assert r.nesting(catalog.expanded("deep")) == r.MAX_DEPTH
    for segment_id in ("wide", "deep"):
        r.check_size(catalog.expanded(segment_id))  # within the limits
    for segment_id, rule in SEGMENTS.items():
        await _create(sessions, segment_id, rule)
    await _identify(sessions, "bob", city="Paris")
    refresher = SegmentRefresher(sessions)

    await _identify(sessions, "ada", city="Berlin", k49="yes")
    await _track(sessions, "ada", "Order Completed", sku="sku7")
    await refresher.refresh_once()  # every scoped statement of every segment
    members = {segment_id: await _members(sessions, segment_id) for segment_id in SEGMENTS}
    assert members == {segment_id: {"ada"} for segment_id in SEGMENTS}
    async with sessions() as session:
        preview = await segments.preview(session, PreviewIn(rule={"segment": "deep"}))
    assert preview.count == 1

    await _identify(sessions, "ada", city="Paris", k49="no")  # out of every one but "wide" (her order)
    await _identify(sessions, "bob", k3="yes")
    await refresher.refresh_once()
    for segment_id in SEGMENTS:
        assert await _members(sessions, segment_id) == await _live(sessions, segment_id), segment_id
    assert await _members(sessions, "wide") == {"ada", "bob"}
    assert await _members(sessions, "deep") == set()

    async with transaction(sessions) as session:  # the both-ways shape, over a list of customers
        await segments.refresh_customers(session, {1, 2})
    assert await _members(sessions, "wide") == {"ada", "bob"}


async def test_birthdays_in_a_hundred_conditions_preview_at_any_hour(sessions):
    # At 23:30 UTC 303 zones are on tomorrow's date; each zone was a bound parameter per condition.
    at = datetime(2027, 3, 1, 23, 30, tzinfo=UTC)
    rule = {"any": [{"trait": f"day{i}", "op": "anniversary_today"} for i in range(100)]}
    await _identify(sessions, "ada", day42="1990-03-02", timezone="Pacific/Auckland")
    async with transaction(sessions) as session:
        preview = await segments.preview(session, PreviewIn(rule=rule), now=at)
    assert preview.count == 1


async def test_a_stored_segment_whose_statements_fail_does_not_stop_the_others(
    sessions, client, marketer_headers, caplog
):
    # An event condition's property tests did not count towards the limit when this one was saved:
    # too many for either database (SQLite: expression depth; PostgreSQL: 32 767 parameters).
    tests = 1_100 if sessions.kw["bind"].dialect.name == "sqlite" else 6_600
    huge = {
        "event": "Order Completed",
        "where": [{"property": f"p{i}", "op": "equals", "value": i} for i in range(tests)],
    }
    async with transaction(sessions) as session:
        at = utcnow()
        session.add(Segment(id="huge", name="Huge", current_version=1, created_at=at, updated_at=at))
        session.add(SegmentVersion(segment_id="huge", version=1, rule=huge, created_at=at))
    await _create(sessions, "berliners", SEGMENTS["berliners"])
    await _create(sessions, "buyers", {"event": "Order Completed"})
    await _identify(sessions, "ada", city="Berlin")
    await _track(sessions, "ada", "Order Completed")
    with caplog.at_level(logging.ERROR, logger="domain.segments.service"):
        await SegmentRefresher(sessions).refresh_once()
    assert await _members(sessions, "berliners") == {"ada"}
    assert await _members(sessions, "buyers") == {"ada"}
    assert any("'huge'" in record.getMessage() for record in caplog.records)

    # The stale segment says so, to the marketer and to monitoring; the others look fresh.
    stale = (await client.get("/api/segments/huge", headers=marketer_headers)).json()
    assert stale["refresh_failed_at"] is not None
    assert stale["refresh_error"].startswith("the refresh of new events failed: ")
    assert "SELECT" not in stale["refresh_error"]  # the error's first line, not the statement
    fresh = (await client.get("/api/segments/buyers", headers=marketer_headers)).json()
    assert fresh["refresh_failed_at"] is None and fresh["refresh_error"] is None
    assert (await client.get("/api/health")).json()["failing_segments"] == ["huge"]

    # A new version the passes can evaluate clears it.
    fixed = await client.put(
        "/api/segments/huge", headers=marketer_headers, json={"rule": {"event": "Order Completed"}}
    )
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["refresh_error"] is None
    assert (await client.get("/api/health")).json()["failing_segments"] == []
    assert await _members(sessions, "huge") == {"ada"}


async def test_a_pass_that_evaluates_a_failing_segment_again_clears_its_error(
    sessions, client, marketer_headers
):
    await _create(sessions, "buyers", {"event": "Order Completed"})
    async with transaction(sessions) as session:
        segment = await session.get(Segment, "buyers")
        segment.refresh_failed_at, segment.refresh_error = utcnow(), "the refresh of new events failed: busy"
    await _identify(sessions, "ada", city="Berlin")
    await _track(sessions, "ada", "Order Completed")
    await SegmentRefresher(sessions).refresh_once()
    assert await _members(sessions, "buyers") == {"ada"}
    assert (await client.get("/api/health")).json()["failing_segments"] == []
    again = (await client.get("/api/segments/buyers", headers=marketer_headers)).json()
    assert again["refresh_failed_at"] is None and again["refresh_error"] is None
