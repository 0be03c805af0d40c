"""Uplift against the holdout: detected when the treatment converts better, not when both convert alike."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from domain.analytics.stats import newcombe, wilson
from domain.customers.models import Customer
from domain.db import transaction
from domain.events.models import Event
from domain.journeys.models import Enrollment, Journey, JourneyStep, JourneyVersion

pytestmark = pytest.mark.timeout(600)
START = datetime(2026, 3, 1, tzinfo=UTC)
TRIAL = {
    "nodes": [
        {"id": "start", "type": "entry", "trigger": "event", "event": "Trial Started", "next": "split"},
        {
            "id": "split",
            "type": "split",
            "holdout_percent": 25,
            "paths": [{"weight": 1, "next": "mail_a"}, {"weight": 1, "next": "mail_b"}],
        },
        {"id": "mail_a", "type": "send_email", "template_id": "a", "template_version": 1, "next": "done"},
        {"id": "mail_b", "type": "send_email", "template_id": "b", "template_version": 1, "next": "done"},
        {"id": "done", "type": "exit"},
    ],
    "rules": {"goal": {"event": "Subscribed", "where": {"plan": "paid"}}},
}


async def _generate(sessions, *, groups: dict[str, tuple[int, int]], seed: int) -> None:
    """Enrollments split into groups of (size, converters); converters reach the goal within the 7-day
    window after the split; as many others reach it too late, or reach another goal, and do not count."""
    rng = random.Random(seed)
    outcomes = [(group, i < converters) for group, (size, converters) in groups.items() for i in range(size)]
    rng.shuffle(outcomes)
    customers, enrollments, steps, events = [], [], [], []
    for cid, (group, converts) in enumerate(outcomes, start=1):
        entered = START + timedelta(seconds=rng.randrange(0, 20 * 86_400))
        wf = f"journey/trial/customer/{cid}"
        customers.append(
            {
                "id": cid,
                "user_id": f"t{cid}",
                "traits": {},
                "created_at": START,
                "updated_at": START,
                "first_seen_at": START,
                "last_seen_at": START,
            }
        )
        enrollments.append(
            {
                "workflow_id": wf,
                "journey_id": "trial",
                "version": 1,
                "customer_id": cid,
                "status": "completed",
                "entered_at": entered,
            }
        )
        steps.append(
            {
                "workflow_id": wf,
                "journey_id": "trial",
                "version": 1,
                "customer_id": cid,
                "node_id": "split",
                "visit": 1,
                "entered_at": entered,
                "left_at": entered,
                "outcome": group,
            }
        )
        if group != "holdout":
            node = "mail_a" if group == "path:0" else "mail_b"
            steps.append(
                {
                    "workflow_id": wf,
                    "journey_id": "trial",
                    "version": 1,
                    "customer_id": cid,
                    "node_id": node,
                    "visit": 1,
                    "entered_at": entered,
                    "left_at": entered,
                    "outcome": "sent",
                }
            )
        if converts:
            at, plan = entered + timedelta(seconds=rng.randrange(60, 6 * 86_400)), "paid"
        else:
            at, plan = rng.choice(
                [
                    (entered + timedelta(days=8 + rng.random() * 5), "paid"),  # after the window
                    (entered + timedelta(days=rng.random() * 6), "free"),  # not the goal
                    (None, None),
                ]
            )
        if at is not None:
            events.append(
                {
                    "message_id": f"e{cid}",
                    "type": "track",
                    "name": "Subscribed",
                    "customer_id": cid,
                    "properties": {"plan": plan},
                    "traits": {},
                    "context": {},
                    "timestamp": at,
                    "received_at": at,
                }
            )
    async with transaction(sessions) as session:
        await session.execute(
            insert(Journey),
            [{"id": "trial", "name": "Trial", "status": "published", "draft": TRIAL, "published_version": 1}],
        )
        await session.execute(
            insert(JourneyVersion),
            [{"journey_id": "trial", "version": 1, "definition": TRIAL, "trigger_event": "Trial Started"}],
        )
        for model, rows in (
            (Customer, customers),
            (Enrollment, enrollments),
            (JourneyStep, steps),
            (Event, events),
        ):
            for chunk in range(0, len(rows), 1000):
                await session.execute(insert(model), rows[chunk : chunk + 1000])


async def _uplift(client, headers) -> dict:
    got = await client.get("/api/analytics/journeys/trial", headers=headers)
    assert got.status_code == 200, got.text
    (found,) = got.json()["uplift"]
    return found


async def test_a_treatment_that_converts_better_is_detected(sessions, client, marketer_headers):
    await _generate(
        sessions, groups={"path:0": (1500, 450), "path:1": (1500, 450), "holdout": (1000, 150)}, seed=3
    )
    u = await _uplift(client, marketer_headers)
    assert u["split_node"] == "split"
    assert (u["treatment"]["entered"], u["treatment"]["converted"]) == (3000, 900)
    assert (u["holdout"]["entered"], u["holdout"]["converted"]) == (1000, 150)
    assert u["difference"] == pytest.approx(0.30 - 0.15)
    low, high = u["interval"]
    assert 0 < low < 0.15 < high
    assert u["detected"] is True
    assert [(p["group"], p["entered"], p["converted"]) for p in u["paths"]] == [
        ("path:0", 1500, 450),
        ("path:1", 1500, 450),
    ]
    # Wilson's score interval, written out: centre and half-width around p = 0.15, n = 1000, z = 1.96.
    z, p, n = 1.959963984540054, 0.15, 1000
    centre, half = (
        (p + z * z / (2 * n)) / (1 + z * z / n),
        z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n),
    )
    assert u["holdout"]["interval"] == pytest.approx([centre - half, centre + half])


async def test_no_uplift_is_reported_when_both_convert_alike(sessions, client, marketer_headers):
    await _generate(
        sessions, groups={"path:0": (1500, 300), "path:1": (1500, 300), "holdout": (1000, 200)}, seed=4
    )
    u = await _uplift(client, marketer_headers)
    assert u["difference"] == pytest.approx(0.0)
    low, high = u["interval"]
    assert low < 0 < high
    assert u["detected"] is False


def test_newcombe_interval_matches_the_published_examples():
    # Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10.
    for (x1, n1, x2, n2), (low, high) in {
        (56, 70, 48, 80): (0.0524, 0.3339),
        (9, 10, 3, 10): (0.1705, 0.8090),
        (6, 7, 2, 7): (0.0582, 0.8062),
        (5, 56, 0, 29): (-0.0381, 0.1926),
        (0, 10, 0, 20): (-0.1611, 0.2775),
    }.items():
        found = newcombe(x1, n1, x2, n2)
        assert (round(found.low, 4), round(found.high, 4)) == (low, high)
    # Newcombe (1998), Statistics in Medicine 17:857-872: the Wilson interval of 81/263.
    assert tuple(round(v, 4) for v in wilson(81, 263)) == (0.2553, 0.3662)
