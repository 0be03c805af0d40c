"""Journey, broadcast and template numbers equal those computed independently from the generated rows."""

from __future__ import annotations

import pytest

from tests.analytics import dataset, expected

pytestmark = pytest.mark.timeout(600)
MESSAGE_FIELDS = ("sent", "delivered", "bounced", "opened", "clicked", "unsubscribed", "failed", "skipped")
RATES = ("open_rate", "click_rate", "click_to_open_rate", "unsubscribe_rate")


@pytest.fixture
async def world(sessions):
    built = dataset.build(seed=11)
    await dataset.store(sessions, built)
    return built


def _same_messages(got: dict, want: dict) -> None:
    assert {f: got[f] for f in MESSAGE_FIELDS} == {f: want[f] for f in MESSAGE_FIELDS}
    assert {f: got[f] for f in RATES} == pytest.approx({f: want[f] for f in RATES})


async def test_journey_nodes_links_and_messages(client, marketer_headers, world):
    answer = expected.journey(world, "onboarding", world.start, world.end)
    got = await client.get(
        "/api/analytics/journeys/onboarding",
        params={"from": world.start.isoformat(), "to": world.end.isoformat()},
        headers=marketer_headers,
    )
    assert got.status_code == 200, got.text
    j = got.json()
    assert j["enrolled"] == answer["enrolled"] and j["converted"] == answer["converted"]
    assert j["goal"] == {"event": "Upgraded", "where": {"plan": "pro"}}  # the running version's
    nodes = {n["node_id"]: n for n in j["nodes"]}
    assert list(nodes) == ["start", "split", "hello", "wait", "done"]  # the graph's order
    assert nodes["start"]["entered"] == answer["enrolled"]
    for node_id, want in answer["nodes"].items():
        assert nodes[node_id]["entered"] == want["entered"], node_id
        assert nodes[node_id]["converted"] == want["converted"], node_id
        _same_messages(nodes[node_id], want)
    hello = answer["nodes"]["hello"]
    assert (
        hello["sent"] and hello["opened"] and hello["clicked"] and hello["bounced"] and hello["unsubscribed"]
    )
    assert {(link["source"], link["target"]): link["count"] for link in j["links"]} == answer["links"]


async def test_all_time_is_the_default_and_a_journey_without_goal_has_no_conversions(
    client, marketer_headers, world
):
    everything = (world.start.replace(year=2000), world.now.replace(year=2100))
    answer = expected.journey(world, "onboarding", *everything)
    j = (await client.get("/api/analytics/journeys/onboarding", headers=marketer_headers)).json()
    assert (
        j["enrolled"]
        == answer["enrolled"]
        == len([e for e in world.enrollments if e["journey_id"] == "onboarding"])
    )
    assert {n["node_id"]: n["entered"] for n in j["nodes"] if n["node_id"] in answer["nodes"]} == {
        k: v["entered"] for k, v in answer["nodes"].items()
    }
    news = (await client.get("/api/analytics/journeys/newsletter", headers=marketer_headers)).json()
    assert news["converted"] is None and news["conversion_rate"] is None
    assert all(n["converted"] is None and n["conversion_rate"] is None for n in news["nodes"])
    _same_messages(
        next(n for n in news["nodes"] if n["node_id"] == "news"),
        expected.message_numbers(world, [m for m in world.messages if m["journey_id"] == "newsletter"]),
    )


async def test_a_wider_conversion_window_counts_later_goals(client, marketer_headers, world):
    wide = expected.journey(world, "onboarding", world.start, world.end, days=30)
    narrow = expected.journey(world, "onboarding", world.start, world.end, days=7)
    assert wide["converted"] > narrow["converted"]
    got = await client.get(
        "/api/analytics/journeys/onboarding",
        params={"from": world.start.isoformat(), "to": world.end.isoformat(), "window_days": 30},
        headers=marketer_headers,
    )
    j = got.json()
    assert j["converted"] == wide["converted"] and j["conversion_window_days"] == 30


async def test_broadcast_numbers(client, marketer_headers, world):
    selected = [m for m in world.messages if m["idempotency_key"].startswith("broadcast/spring/")]
    want = expected.message_numbers(world, selected)
    bought = [
        m
        for m in selected
        if m["status"] == "sent"
        and any(
            e["customer_id"] == m["customer_id"]
            and e["name"] == dataset.PURCHASE
            and m["sent_at"] <= e["timestamp"] < m["sent_at"] + 7 * expected.DAY
            for e in world.events
        )
    ]
    got = await client.get("/api/analytics/broadcasts/spring", headers=marketer_headers)
    assert got.status_code == 200, got.text
    b = got.json()
    _same_messages(b, want)
    assert b["converted"] == len(bought) > 0
    assert b["conversion_rate"] == pytest.approx(len(bought) / want["delivered"])
    assert (await client.get("/api/analytics/broadcasts/nope", headers=marketer_headers)).status_code == 404


async def test_engagement_per_template(client, marketer_headers, world):
    got = await client.get(
        "/api/analytics/templates",
        params={"from": world.start.isoformat(), "to": world.end.isoformat()},
        headers=marketer_headers,
    )
    assert got.status_code == 200, got.text
    templates = {t["template_id"]: t for t in got.json()["templates"]}
    assert set(templates) == {"welcome", "promo", "receipt"}
    for template_id, numbers in templates.items():
        selected = [
            m
            for m in world.messages
            if m["template_id"] == template_id and expected.within(m["created_at"], world.start, world.end)
        ]
        _same_messages(numbers, expected.message_numbers(world, selected))
