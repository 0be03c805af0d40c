"""Replacing the programme without a tier that segment rules, or the journeys using them, still name."""

from domain.db import transaction
from domain.journeys.models import Journey, JourneyVersion
from tests.loyalty.helpers import PROGRAM

RENAMED = {
    **PROGRAM,
    "tiers": [*PROGRAM["tiers"][:2], {"name": "platinum", "threshold": 2000, "multiplier": 2}],
}


async def _segment(client, headers, segment_id: str, rule: dict) -> None:
    body = {"id": segment_id, "name": segment_id, "rule": rule}
    response = await client.post("/api/segments", json=body, headers=headers)
    assert response.status_code == 201, response.text


async def _publish_branch_on(sessions, journey_id: str, segment_id: str) -> None:
    branch = {
        "id": "check",
        "type": "branch",
        "branches": [{"when": [{"segment": segment_id, "op": "eq", "value": True}], "next": "done"}],
        "default_next": "done",
    }
    async with transaction(sessions) as session:
        session.add(
            Journey(id=journey_id, name=journey_id, status="published", draft={}, published_version=1)
        )
        await session.flush()
        session.add(
            JourneyVersion(
                journey_id=journey_id, version=1, trigger_event="Signed Up", definition={"nodes": [branch]}
            )
        )


async def test_dropping_a_tier_named_by_a_segment_and_a_journey_is_refused_naming_them(
    client, sessions, admin_headers, marketer_headers
):
    assert (await client.put("/api/loyalty/program", json=PROGRAM, headers=admin_headers)).status_code == 200
    await _segment(client, marketer_headers, "high", {"loyalty_tier": ["silver", "gold"]})
    await _segment(
        client,
        marketer_headers,
        "high-vips",
        {"all": [{"segment": "high"}, {"trait": "vip", "op": "equals", "value": True}]},
    )
    await _segment(client, marketer_headers, "members", {"loyalty_tier": "member"})
    await _publish_branch_on(sessions, "vip-care", "high-vips")

    refused = await client.put("/api/loyalty/program", json=RENAMED, headers=admin_headers)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["error"] == "tier_in_use"
    assert body["detail"]["tiers"] == ["gold"]
    assert body["detail"]["segments"] == [{"segment_id": "high", "path": "rule.loyalty_tier", "tier": "gold"}]
    assert body["detail"]["journeys"] == [
        {
            "journey_id": "vip-care",
            "node": "check",
            "path": "nodes.0.branches.0.when.0.segment",
            "segment_id": "high-vips",
            "tier": "gold",
        }
    ]
    stored = (await client.get("/api/loyalty/program", headers=admin_headers)).json()
    assert [t["name"] for t in stored["config"]["tiers"]] == ["member", "silver", "gold"]
    assert stored["version"] == 1

    # Keeping every named tier (new thresholds, a tier added) is no removal.
    more = [{"name": "gold", "threshold": 3000}, {"name": "platinum", "threshold": 5000}]
    kept = {**PROGRAM, "tiers": [*PROGRAM["tiers"][:2], *more]}
    assert (await client.put("/api/loyalty/program", json=kept, headers=admin_headers)).status_code == 200

    # Once the rule names the new tier instead, the old one can go.
    changed = await client.put(
        "/api/segments/high",
        json={"name": "high", "rule": {"loyalty_tier": ["silver", "platinum"]}},
        headers=marketer_headers,
    )
    assert changed.status_code == 200, changed.text
    assert (await client.put("/api/loyalty/program", json=RENAMED, headers=admin_headers)).status_code == 200


async def test_dropping_a_tier_only_a_segment_names_lists_the_segment_alone(
    client, sessions, admin_headers, marketer_headers
):
    assert (await client.put("/api/loyalty/program", json=PROGRAM, headers=admin_headers)).status_code == 200
    await _segment(client, marketer_headers, "first", {"not": {"loyalty_tier": "member"}})
    first_renamed = {**PROGRAM, "tiers": [{"name": "basic", "threshold": 0}, *PROGRAM["tiers"][1:]]}
    refused = await client.put("/api/loyalty/program", json=first_renamed, headers=admin_headers)
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert detail["segments"] == [{"segment_id": "first", "path": "rule.not.loyalty_tier", "tier": "member"}]
    assert "journeys" not in detail and "'member'" in detail["problem"]
    got = (await client.get("/api/loyalty/program", headers=admin_headers)).json()
    assert got["config"]["tiers"][0]["name"] == "member"
