"""Segments over HTTP: create with versions, preview, paged members, precise 422s, 409 while in use."""

from datetime import timedelta

from sqlalchemy import func, select

from domain.db import transaction, utcnow
from domain.events.models import Event, EventOutbox
from domain.journeys.models import Journey, JourneyVersion
from domain.segments.models import Segment, SegmentMembership, SegmentVersion

BUYERS = {"event": "Order Completed", "times": {"at_least": 2}, "within_days": 30}


async def _track(client, write_key, user, event, days_ago=0, **properties):
    ts = (utcnow() - timedelta(days=days_ago)).isoformat()
    response = await client.post(
        "/v1/track",
        auth=(write_key, ""),
        json={"userId": user, "event": event, "properties": properties, "timestamp": ts},
    )
    assert response.status_code == 200, response.text


async def _identify(client, write_key, user, **traits):
    response = await client.post(
        "/v1/identify", auth=(write_key, ""), json={"userId": user, "traits": traits}
    )
    assert response.status_code == 200, response.text


async def _stored(sessions):
    async with sessions() as session:
        return tuple(
            [await session.scalar(select(func.count()).select_from(m)) for m in (Segment, SegmentVersion)]
        )


async def test_create_computes_members_and_emits_entry_events(client, sessions, marketer_headers, write_key):
    for user in ("ada", "bob"):
        await _track(client, write_key, user, "Order Completed", days_ago=3, revenue=10)
    await _track(client, write_key, "ada", "Order Completed", days_ago=1, revenue=20)
    await _track(client, write_key, "cy", "Order Completed", days_ago=45)
    await _track(client, write_key, "cy", "Order Completed", days_ago=40)

    created = await client.post(
        "/api/segments",
        json={"id": "repeat-buyers", "name": "Repeat buyers", "rule": BUYERS},
        headers=marketer_headers,
    )
    assert created.status_code == 201, created.text
    assert (created.json()["version"], created.json()["members"]) == (1, 1)

    page = (await client.get("/api/segments/repeat-buyers/members", headers=marketer_headers)).json()
    assert [m["user_id"] for m in page["members"]] == ["ada"]
    async with sessions() as session:
        entered = (
            await session.execute(
                select(Event.user_id, Event.properties)
                .join(EventOutbox, EventOutbox.event_id == Event.id)
                .where(Event.name == "Segment Entered")
            )
        ).all()
    assert entered == [("ada", {"segment_id": "repeat-buyers", "segment_version": 1})]


async def test_update_makes_a_new_version_and_moves_members(client, sessions, marketer_headers, write_key):
    await _identify(client, write_key, "ada", city="Berlin")
    await _identify(client, write_key, "bob", city="Paris")
    rule = {"trait": "city", "op": "equals", "value": "Berlin"}
    await client.post(
        "/api/segments", json={"id": "local", "name": "Local", "rule": rule}, headers=marketer_headers
    )
    updated = await client.put(
        "/api/segments/local",
        json={"rule": {"trait": "city", "op": "in", "value": ["Paris"]}},
        headers=marketer_headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    members = (await client.get("/api/segments/local/members", headers=marketer_headers)).json()["members"]
    assert [m["user_id"] for m in members] == ["bob"]
    versions = (await client.get("/api/segments/local/versions", headers=marketer_headers)).json()
    assert [v["rule"] for v in versions] == [rule, {"trait": "city", "op": "in", "value": ["Paris"]}]
    async with sessions() as session:
        stays = (
            await session.execute(select(SegmentMembership.customer_id, SegmentMembership.exited_at))
        ).all()
    assert len(stays) == 2 and sum(exited is not None for _, exited in stays) == 1  # ada's stay closed


async def test_the_list_counts_open_stays_only_and_an_empty_segment_as_none(
    client, marketer_headers, write_key
):
    for user, city in (("ada", "Berlin"), ("bob", "Paris"), ("cy", "Paris")):
        await _identify(client, write_key, user, city=city)
    for sid, city in (("local", "Berlin"), ("far", "Lima")):
        rule = {"trait": "city", "op": "equals", "value": city}
        r = await client.post(
            "/api/segments", json={"id": sid, "name": sid, "rule": rule}, headers=marketer_headers
        )
        assert r.status_code == 201, r.text
    r = await client.put(  # ada's stay closes, bob's and cy's open
        "/api/segments/local",
        json={"rule": {"trait": "city", "op": "equals", "value": "Paris"}},
        headers=marketer_headers,
    )
    assert r.status_code == 200, r.text
    listed = (await client.get("/api/segments", headers=marketer_headers)).json()
    assert [(s["id"], s["members"]) for s in listed] == [("local", 2), ("far", 0)]
    one = (await client.get("/api/segments/local", headers=marketer_headers)).json()
    assert one["members"] == 2


async def test_members_are_paged(client, marketer_headers, write_key):
    for i in range(5):
        await _identify(client, write_key, f"user-{i}", plan="pro")
    await client.post(
        "/api/segments",
        json={"id": "pro", "name": "Pro", "rule": {"trait": "plan", "op": "equals", "value": "pro"}},
        headers=marketer_headers,
    )
    seen, after = [], 0
    while True:
        page = (
            await client.get(f"/api/segments/pro/members?limit=2&after={after}", headers=marketer_headers)
        ).json()
        seen += [m["user_id"] for m in page["members"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert sorted(seen) == [f"user-{i}" for i in range(5)]


async def test_preview_counts_and_samples_without_saving(client, sessions, marketer_headers, write_key):
    await _identify(client, write_key, "ada", city="Berlin", age=36)
    await _identify(client, write_key, "bob", city="Berlin", age=17)
    response = await client.post(
        "/api/segments/preview",
        json={
            "rule": {
                "all": [
                    {"trait": "city", "op": "equals", "value": "Berlin"},
                    {"trait": "age", "op": "gte", "value": 18},
                ]
            }
        },
        headers=marketer_headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["count"] == 1
    assert [c["user_id"] for c in response.json()["sample"]] == ["ada"]
    assert await _stored(sessions) == (0, 0)


async def _rejected(client, headers, rule, *, id="bad", method="post", url="/api/segments"):
    body = {"rule": rule} if method == "put" else {"id": id, "name": "Bad", "rule": rule}
    response = await client.request(method.upper(), url, json=body, headers=headers)
    assert response.status_code == 422, response.text
    return response.json()


async def test_bad_rules_name_the_path_and_store_nothing(client, sessions, marketer_headers):
    unknown_op = await _rejected(
        client,
        marketer_headers,
        {
            "all": [
                {"trait": "city", "op": "equals", "value": "x"},
                {"trait": "age", "op": "bigger", "value": 3},
            ]
        },
    )
    assert unknown_op["error"] == "invalid_rule"
    assert unknown_op["detail"]["path"] == "rule.all[1].op"
    assert "bigger" in unknown_op["detail"]["problem"]

    wrong_type = await _rejected(
        client, marketer_headers, {"any": [{"not": {"trait": "age", "op": "gt", "value": "old"}}]}
    )
    assert wrong_type["detail"] == {"path": "rule.any[0].not.value", "problem": "operator gt needs a number"}

    bad_count = await _rejected(
        client, marketer_headers, {"event": "Order Completed", "times": {"at_least": "2"}}
    )
    assert bad_count["detail"]["path"] == "rule.times.at_least"

    bad_tier = await _rejected(client, marketer_headers, {"value_tier": ["platinum"]})
    assert bad_tier["detail"]["path"] == "rule.value_tier"

    self_ref = await _rejected(client, marketer_headers, {"any": [{"segment": "loop"}]}, id="loop")
    assert self_ref["detail"] == {
        "path": "rule.any[0].segment",
        "problem": "segment 'loop' cannot refer to itself",
    }

    missing = await _rejected(client, marketer_headers, {"segment": "nowhere"})
    assert missing["detail"]["path"] == "rule.segment"
    assert await _stored(sessions) == (0, 0)


async def test_keys_and_dates_must_be_exactly_that_no_trailing_newline_no_impossible_day(
    client, sessions, marketer_headers
):
    # "city\n" was stored, and then SQLite looked up a key Python did not: the evaluators disagreed.
    cases = [
        ({"trait": "city\n", "op": "equals", "value": "Berlin"}, "rule.trait"),
        (
            {"event": "Order Completed", "where": [{"property": "sku\n", "op": "exists"}]},
            "rule.where[0].property",
        ),
        ({"message": "opened", "template_id": "welcome\n"}, "rule.template_id"),
        ({"any": [{"segment": "vip\n"}]}, "rule.any[0].segment"),
        ({"trait": "birthday", "op": "before", "value": "2024-01-01\n"}, "rule.value"),
        ({"trait": "birthday", "op": "after", "value": "2024-13-45"}, "rule.value"),
        ({"not": {"trait": "birthday", "op": "before", "value": "2023-02-29"}}, "rule.not.value"),
    ]
    for rule, path in cases:
        refused = await _rejected(client, marketer_headers, rule)
        assert refused["detail"]["path"] == path, (rule, refused)
    assert await _stored(sessions) == (0, 0)
    leap_day = {
        "id": "leap",
        "name": "Leap",
        "rule": {"trait": "birthday", "op": "before", "value": "2024-02-29"},
    }
    assert (await client.post("/api/segments", json=leap_day, headers=marketer_headers)).status_code == 201


async def test_rules_too_big_for_sql_are_refused_also_through_references(client, sessions, marketer_headers):
    def conditions(n: int) -> list[dict]:
        return [{"trait": f"t{i}", "op": "exists"} for i in range(n)]

    wide = await _rejected(client, marketer_headers, {"any": conditions(101)})
    problem = "a rule has at most 100 conditions (this one has 101)"
    assert wide["detail"] == {"path": "rule", "problem": problem}
    values = list(range(1001))
    long_list = await _rejected(client, marketer_headers, {"trait": "zip", "op": "in", "value": values})
    assert long_list["detail"]["path"] == "rule.value"
    tests = [{"property": f"p{i}", "op": "exists"} for i in range(100)]
    many_tests = await _rejected(client, marketer_headers, {"event": "Order Completed", "where": tests})
    problem = "a rule has at most 100 conditions (this one has 101)"  # the event and its property tests
    assert many_tests["detail"] == {"path": "rule", "problem": problem}

    part = {"id": "part", "name": "Part", "rule": {"all": conditions(60)}}
    assert (await client.post("/api/segments", json=part, headers=marketer_headers)).status_code == 201
    whole = await _rejected(client, marketer_headers, {"all": [{"segment": "part"}, *conditions(50)]})
    assert "expanded" in whole["detail"]["problem"] and "110" in whole["detail"]["problem"]
    user = {"id": "user", "name": "User", "rule": {"all": [{"segment": "part"}, *conditions(30)]}}
    assert (await client.post("/api/segments", json=user, headers=marketer_headers)).status_code == 201
    grown = await _rejected(
        client, marketer_headers, {"all": conditions(80)}, method="put", url="/api/segments/part"
    )
    assert "segment 'user', which refers to this one" in grown["detail"]["problem"]
    assert await _stored(sessions) == (2, 2)


async def test_rules_at_the_documented_limits_preview_and_save(client, sessions, marketer_headers, write_key):
    # An `in` list was an OR of equals: SQLite refused one list of 1 000 values as too deep, and
    # PostgreSQL 17 such lists as too many parameters (both a 500).
    await _identify(client, write_key, "ada", k99="v999")

    def listed(key: str) -> dict:
        return {"trait": key, "op": "in", "value": [f"v{j}" for j in range(1000)]}

    for segment_id, rule in [
        ("one-list", listed("k99")),
        ("hundred-lists", {"any": [listed(f"k{i}") for i in range(100)]}),
    ]:
        preview = await client.post("/api/segments/preview", json={"rule": rule}, headers=marketer_headers)
        assert preview.status_code == 200, preview.text[:300]
        assert preview.json()["count"] == 1
        body = {"id": segment_id, "name": segment_id, "rule": rule}
        created = await client.post("/api/segments", json=body, headers=marketer_headers)
        assert created.status_code == 201, created.text[:300]
        assert created.json()["members"] == 1


async def test_nesting_counts_the_segments_a_rule_refers_to(client, sessions, marketer_headers):
    def nots(inner: dict, levels: int) -> dict:
        for _ in range(levels):
            inner = {"not": inner}
        return inner

    city = {"trait": "city", "op": "exists"}
    inner = {"id": "inner", "name": "Inner", "rule": nots(city, 15)}
    assert (await client.post("/api/segments", json=inner, headers=marketer_headers)).status_code == 201
    outer = {"id": "outer", "name": "Outer", "rule": {"all": [city, nots({"segment": "inner"}, 4)]}}
    assert (await client.post("/api/segments", json=outer, headers=marketer_headers)).status_code == 201

    too_deep = await _rejected(client, marketer_headers, {"all": [city, nots({"segment": "inner"}, 5)]})
    assert too_deep["detail"] == {
        "path": "rule.all[1].not.not.not.not.not.segment",
        "problem": "with the segments it refers to expanded, rules nest at most 20 levels deep "
        "(through segment 'inner' this one nests 21)",
    }
    deeper_inner = await _rejected(
        client, marketer_headers, nots(city, 16), method="put", url="/api/segments/inner"
    )
    assert deeper_inner["detail"]["path"] == "rule"
    assert (
        "segment 'outer', which refers to this one: rules nest at most 20"
        in deeper_inner["detail"]["problem"]
    )
    assert await _stored(sessions) == (2, 2)


async def test_a_cycle_through_other_segments_is_refused(client, sessions, marketer_headers):
    city = {"trait": "city", "op": "exists"}
    assert (
        await client.post(
            "/api/segments", json={"id": "a", "name": "A", "rule": city}, headers=marketer_headers
        )
    ).status_code == 201
    b = {"id": "b", "name": "B", "rule": {"all": [{"segment": "a"}, city]}}
    assert (await client.post("/api/segments", json=b, headers=marketer_headers)).status_code == 201
    cycle = await _rejected(
        client, marketer_headers, {"any": [city, {"segment": "b"}]}, method="put", url="/api/segments/a"
    )
    assert cycle["detail"] == {"path": "rule.any[1].segment", "problem": "circular reference: a -> b -> a"}
    got = (await client.get("/api/segments/a", headers=marketer_headers)).json()
    assert (got["version"], got["rule"]) == (1, city)
    assert await _stored(sessions) == (2, 2)


async def test_subscription_and_loyalty_conditions_name_unknown_groups_tiers_and_bad_balances(
    client, sessions, marketer_headers, admin_headers
):
    group = {"id": "newsletter", "name": "Newsletter"}
    assert (
        await client.post("/api/subscription-groups", json=group, headers=admin_headers)
    ).status_code == 201
    cases = [
        (
            {"all": [{"subscription": "newsletter"}, {"not": {"subscription": "newsleter"}}]},
            "rule.all[1].not.subscription",
            "no subscription group 'newsleter'",
        ),
        (
            {"any": [{"loyalty_tier": ["member", "platinum"]}]},
            "rule.any[0].loyalty_tier",
            "no loyalty tier 'platinum'",
        ),
        ({"loyalty_balance": {"gte": -5}}, "rule.loyalty_balance.gte", "whole number of points"),
        ({"loyalty_balance": {"more": 5}}, "rule.loyalty_balance.more", "unknown operator"),
        ({"loyalty_balance": 5}, "rule.loyalty_balance", "must be an object"),
        ({"subscription": "news letter"}, "rule.subscription", "subscription group id"),
    ]
    for rule, path, problem in cases:
        body = await _rejected(client, marketer_headers, rule)
        assert body["error"] == "invalid_rule", body
        assert body["detail"]["path"] == path, body
        assert problem in body["detail"]["problem"], body
        preview = await client.post("/api/segments/preview", json={"rule": rule}, headers=marketer_headers)
        assert preview.status_code == 422 and preview.json()["detail"]["path"] == path
    assert await _stored(sessions) == (0, 0)
    good = {
        "all": [{"subscription": "newsletter"}, {"loyalty_tier": "member"}, {"loyalty_balance": {"lt": 10}}]
    }
    created = await client.post(
        "/api/segments", json={"id": "fresh", "name": "Fresh", "rule": good}, headers=marketer_headers
    )
    assert created.status_code == 201, created.text


async def test_delete_is_refused_while_a_published_journey_uses_the_segment(
    client, sessions, marketer_headers
):
    rule = {"trait": "vip", "op": "equals", "value": True}
    await client.post(
        "/api/segments", json={"id": "vips", "name": "VIPs", "rule": rule}, headers=marketer_headers
    )
    async with transaction(sessions) as session:
        # A journey whose branch node reads the segment, as the journey engine stores it.
        branch = {
            "id": "check",
            "type": "branch",
            "branches": [{"when": [{"segment": "vips", "op": "eq", "value": True}], "next": "done"}],
            "default_next": "done",
        }
        session.add(
            Journey(id="vip-care", name="VIP care", status="published", draft={}, published_version=2)
        )
        await session.flush()
        session.add(
            JourneyVersion(
                journey_id="vip-care", version=1, trigger_event="Signed Up", definition={"nodes": [branch]}
            )
        )
        # Version 2 no longer reads the segment, but customers may still be running version 1.
        session.add(
            JourneyVersion(
                journey_id="vip-care", version=2, trigger_event="Signed Up", definition={"nodes": []}
            )
        )
    refused = await client.delete("/api/segments/vips", headers=marketer_headers)
    assert refused.status_code == 409
    assert refused.json()["detail"]["journeys"] == ["vip-care"]
    assert await _stored(sessions) == (1, 1)

    async with transaction(sessions) as session:
        (await session.get(Journey, "vip-care")).status = "archived"
    assert (await client.delete("/api/segments/vips", headers=marketer_headers)).status_code == 204
    assert await _stored(sessions) == (0, 0)
    assert (await client.get("/api/segments/vips", headers=marketer_headers)).status_code == 404


async def test_a_journey_that_only_mentions_the_name_as_data_does_not_hold_the_segment(
    client, sessions, marketer_headers
):
    """A "segment" trait the journey sets, a webhook field or an event filter called segment are the
    marketer's data, not the segment: deleting the segment strands nobody."""
    rule = {"trait": "vip", "op": "equals", "value": True}
    await client.post(
        "/api/segments", json={"id": "vips", "name": "VIPs", "rule": rule}, headers=marketer_headers
    )
    nodes = [
        {"id": "start", "type": "entry", "event": "Signed Up", "where": {"segment": "vips"}, "next": "tag"},
        {"id": "tag", "type": "update_trait", "traits": {"segment": "vips"}, "next": "hook"},
        {"id": "hook", "type": "webhook", "url": "https://crm.example.com/x", "body": {"segment_id": "vips"}},
    ]
    async with transaction(sessions) as session:
        session.add(Journey(id="tagging", name="Tagging", status="published", draft={}, published_version=1))
        await session.flush()
        session.add(
            JourneyVersion(
                journey_id="tagging",
                version=1,
                trigger_event="Signed Up",
                definition={
                    "nodes": nodes,
                    "rules": {"exit_when": [{"event": "X", "where": {"segment": "vips"}}]},
                },
            )
        )

    assert (await client.delete("/api/segments/vips", headers=marketer_headers)).status_code == 204


async def test_delete_is_refused_while_another_segment_refers_to_it(client, marketer_headers):
    await client.post(
        "/api/segments",
        json={"id": "a", "name": "A", "rule": {"trait": "x", "op": "exists"}},
        headers=marketer_headers,
    )
    await client.post(
        "/api/segments", json={"id": "b", "name": "B", "rule": {"segment": "a"}}, headers=marketer_headers
    )
    refused = await client.delete("/api/segments/a", headers=marketer_headers)
    assert refused.status_code == 409 and refused.json()["detail"]["segments"] == ["b"]
