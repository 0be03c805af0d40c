"""Editing subscription groups over HTTP: a changed opt_in default moves the segments that read the group."""

from __future__ import annotations

from sqlalchemy import select, update

from domain.auth.schemas import Role
from domain.customers.models import Customer
from domain.db import transaction
from domain.events.models import Event
from domain.subscriptions import service as subscriptions
from tests.conftest import make_key

SEGMENT_EVENTS = ("Segment Entered", "Segment Exited")


async def _group(client, headers, **body):
    r = await client.post("/api/subscription-groups", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def _people(client, write_key, *users: str) -> None:
    for user in users:
        body = {"userId": user, "traits": {"email": f"{user}@example.com"}}
        r = await client.post("/v1/identify", auth=(write_key, ""), json=body)
        assert r.status_code == 200, r.text


async def _ids(sessions, *users: str) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(select(Customer.user_id, Customer.id).where(Customer.user_id.in_(users)))
        return dict(rows.all())


async def _segment(client, headers, segment_id, rule):
    r = await client.post(
        "/api/segments", json={"id": segment_id, "name": segment_id, "rule": rule}, headers=headers
    )
    assert r.status_code == 201, r.text


async def _members(client, headers, segment_id) -> set[str]:
    r = await client.get(f"/api/segments/{segment_id}/members", params={"limit": 1000}, headers=headers)
    assert r.status_code == 200, r.text
    return {m["user_id"] for m in r.json()["members"]}


async def _segment_events(sessions) -> list[tuple[str, str, str]]:
    """(event name, segment id, user id) of every Segment Entered / Exited event, sorted."""
    async with sessions() as session:
        rows = await session.execute(
            select(Event.name, Event.properties, Event.user_id).where(Event.name.in_(SEGMENT_EVENTS))
        )
        return sorted((name, props["segment_id"], user) for name, props, user in rows)


async def _put(client, headers, group_id, body):
    return await client.put(f"/api/subscription-groups/{group_id}", json=body, headers=headers)


async def test_flipping_opt_in_moves_customers_without_a_choice_out_of_and_back_into_segments(
    client, sessions, marketer_headers, write_key
):
    await _group(client, marketer_headers, id="newsletter", name="Newsletter")
    await _people(client, write_key, "ada", "bob", "cy", "dan")
    ids = await _ids(sessions, "ada", "bob", "cy", "dan")
    async with transaction(sessions) as session:  # cy opted in, dan opted out: their choices stand
        # (cy ticks the box on her preference page after leaving; a box left ticked is no choice)
        await subscriptions.unsubscribe(session, ids["cy"], "newsletter", "one_click")
        await subscriptions.save_preferences(session, ids["cy"], {"newsletter"}, False)
        await subscriptions.unsubscribe(session, ids["dan"], "newsletter", "one_click")
    await _segment(client, marketer_headers, "readers", {"subscription": "newsletter"})
    # Reads the group only through a reference: the expanded rule counts.
    await _segment(client, marketer_headers, "readers-too", {"all": [{"segment": "readers"}]})
    assert await _members(client, marketer_headers, "readers") == {"ada", "bob", "cy"}
    assert await _members(client, marketer_headers, "readers-too") == {"ada", "bob", "cy"}
    before = await _segment_events(sessions)

    r = await _put(client, marketer_headers, "newsletter", {"opt_in": True})
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["name"], r.json()["opt_in"]) == ("newsletter", "Newsletter", True)
    assert await _members(client, marketer_headers, "readers") == {"cy"}
    assert await _members(client, marketer_headers, "readers-too") == {"cy"}
    after_opt_in = await _segment_events(sessions)
    exited = sorted(set(after_opt_in) - set(before))
    assert exited == [
        ("Segment Exited", sid, user) for sid in ("readers", "readers-too") for user in ("ada", "bob")
    ]
    groups = (await client.get("/api/subscription-groups", headers=marketer_headers)).json()
    assert [(g["id"], g["opt_in"]) for g in groups] == [("newsletter", True)]

    r = await _put(client, marketer_headers, "newsletter", {"opt_in": False})
    assert r.status_code == 200, r.text
    assert await _members(client, marketer_headers, "readers") == {"ada", "bob", "cy"}
    assert await _members(client, marketer_headers, "readers-too") == {"ada", "bob", "cy"}
    events = await _segment_events(sessions)
    assert len(events) == len(after_opt_in) + 4
    for sid in ("readers", "readers-too"):
        for user in ("ada", "bob"):
            assert events.count(("Segment Entered", sid, user)) == 2  # on create, and back now
        assert events.count(("Segment Entered", sid, "cy")) == 1  # never left
        assert ("Segment Entered", sid, "dan") not in events


async def test_an_edit_that_keeps_opt_in_rebuilds_nothing_and_a_flip_rebuilds_only_segments_on_the_group(
    client, sessions, marketer_headers, write_key
):
    await _group(client, marketer_headers, id="newsletter", name="Newsletter", description="Weekly")
    await _group(client, marketer_headers, id="offers", name="Offers")
    await _people(client, write_key, "ada", "bob")
    await _segment(client, marketer_headers, "readers", {"subscription": "newsletter"})
    await _segment(client, marketer_headers, "offer-takers", {"subscription": "offers"})
    await _segment(client, marketer_headers, "mailable", {"subscription": "*"})
    # Make stored membership stale without any event: a rebuild would take bob out of all three.
    async with transaction(sessions) as session:
        await session.execute(update(Customer).where(Customer.user_id == "bob").values(email=None))
    before = await _segment_events(sessions)

    for body in ({"name": "The newsletter", "opt_in": False}, {"description": None}, {}):
        r = await _put(client, marketer_headers, "newsletter", body)
        assert r.status_code == 200, r.text
    assert r.json() | {"created_at": None} == {
        "id": "newsletter",
        "name": "The newsletter",
        "description": None,
        "opt_in": False,
        "created_at": None,
    }
    assert await _segment_events(sessions) == before
    assert await _members(client, marketer_headers, "readers") == {"ada", "bob"}

    r = await _put(client, marketer_headers, "newsletter", {"opt_in": True})
    assert r.status_code == 200, r.text
    assert sorted(set(await _segment_events(sessions)) - set(before)) == [
        ("Segment Exited", "readers", "ada"),
        ("Segment Exited", "readers", "bob"),
    ]
    # Segments not on the group were left alone (bob's stale stays show no rebuild ran there).
    assert await _members(client, marketer_headers, "offer-takers") == {"ada", "bob"}
    assert await _members(client, marketer_headers, "mailable") == {"ada", "bob"}


async def test_unknown_groups_bad_bodies_and_roles_are_refused(client, sessions, marketer_headers):
    await _group(client, marketer_headers, id="newsletter", name="Newsletter")

    r = await _put(client, marketer_headers, "nope", {"opt_in": True})
    assert r.status_code == 404, r.text
    assert r.json() == {"error": "not_found", "detail": "subscription group 'nope' does not exist"}

    cases = [
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"description": "x" * 2001}, "description"),
        ({"opt_in": "maybe"}, "opt_in"),
        ({"opt_in": None}, "opt_in"),
    ]
    for body, field in cases:
        r = await _put(client, marketer_headers, "newsletter", body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"] == "validation_error"
        assert [d["field"] for d in r.json()["detail"]] == [field], (body, r.json())
    r = await client.put(
        "/api/subscription-groups/newsletter",
        content=b"[1, 2]",
        headers=marketer_headers | {"Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text

    agent = {"Authorization": f"Bearer {await make_key(sessions, role=Role.agent)}"}
    assert (await _put(client, agent, "newsletter", {"opt_in": True})).status_code == 403
    assert (await client.put("/api/subscription-groups/newsletter", json={"opt_in": True})).status_code == 401

    groups = (await client.get("/api/subscription-groups", headers=marketer_headers)).json()
    assert [(g["name"], g["description"], g["opt_in"]) for g in groups] == [("Newsletter", None, False)]
