"""A journey's live numbers per node (GET /api/journeys/{id}/stats) equal those counted from the rows,
on both databases: repeated visits, steps whose enrollment is gone, waiting steps of ended enrollments."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.analytics import dataset

pytestmark = pytest.mark.timeout(600)


def _expected(world: dataset.World, journey_id: str) -> dict:
    status = {e["workflow_id"]: e["status"] for e in world.enrollments}
    nodes: dict[str, dict] = {}
    for s in world.steps:
        if s["journey_id"] != journey_id:
            continue
        n = nodes.setdefault(
            s["node_id"], {"entered": 0, "completed": 0, "waiting_now": 0, "converted": set()}
        )
        n["entered"] += 1
        n["completed"] += s["left_at"] is not None
        n["waiting_now"] += s["left_at"] is None and status.get(s["workflow_id"]) == "active"
        if status.get(s["workflow_id"]) == "converted":
            n["converted"].add(s["workflow_id"])
    return {k: {**v, "converted": len(v["converted"])} for k, v in nodes.items()}


@pytest.fixture
async def world(sessions):
    built = dataset.build(seed=5)
    onboarding = [e for e in built.enrollments if e["journey_id"] == "onboarding"]
    for e in onboarding[:20]:  # converted: counted once per node however often it was visited
        e["status"] = "converted"
    for e in onboarding[20:40]:  # ended: a step left open is not waiting
        e["status"] = "exited"
    for e in onboarding[40:45]:
        e["status"] = "active"
    for e in onboarding[:45:2]:  # a second visit to the split (a loop), left open on some
        first = next(
            s for s in built.steps if s["workflow_id"] == e["workflow_id"] and s["node_id"] == "split"
        )
        again = first["entered_at"] + timedelta(days=1)
        left = None if e["customer_id"] % 3 else again
        built.steps.append({**first, "visit": 2, "entered_at": again, "left_at": left})
    gone = onboarding[-1]  # its enrollment row erased, its steps still there
    built.enrollments.remove(gone)
    built.steps.append(
        {
            **next(s for s in built.steps if s["workflow_id"] == gone["workflow_id"]),
            "node_id": "hello",
            "visit": 3,
        }
        | {"left_at": None}
    )
    await dataset.store(sessions, built)
    return built


async def test_stats_count_visits_waiting_and_conversions_per_node(client, marketer_headers, world):
    for journey_id in ("onboarding", "newsletter"):
        got = await client.get(f"/api/journeys/{journey_id}/stats", headers=marketer_headers)
        assert got.status_code == 200, got.text
        body = got.json()
        want = _expected(world, journey_id)
        nodes = {n.pop("node_id"): n for n in body["nodes"]}
        assert {k: v for k, v in nodes.items() if k in want} == want, journey_id
        assert all(v == dict.fromkeys(v, 0) for k, v in nodes.items() if k not in want)  # drawn, unvisited
        statuses: dict[str, int] = {}
        for e in world.enrollments:
            if e["journey_id"] == journey_id:
                statuses[e["status"]] = statuses.get(e["status"], 0) + 1
        assert body["enrollments"] == statuses
    onboarding = _expected(world, "onboarding")
    assert onboarding["split"]["entered"] > onboarding["split"]["completed"] > 0
    assert 0 < onboarding["split"]["converted"] < onboarding["split"]["entered"]
    assert onboarding["split"]["waiting_now"] > 0 and onboarding["wait"]["waiting_now"] > 0
