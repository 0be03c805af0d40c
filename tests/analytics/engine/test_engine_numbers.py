"""The numbers read what the engine really writes: a journey with a holdout runs on Temporal's
time-skipping server with the real activities and SMTP capture; customers open the captured email
through the signed pixel, one unsubscribes with the one-click link, the provider reports a bounce,
some buy. Each per-node number is then what the mailbox and the test's own choices say."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from domain.journeys.conditions import choose_path, split_bucket
from tests.workflows.harness import engine

pytestmark = pytest.mark.timeout(300)
CUSTOMERS = 24
JOURNEY = {
    "nodes": [
        {"id": "start", "type": "entry", "event": "Signed Up", "next": "split"},
        {"id": "split", "type": "split", "paths": [{"weight": 1, "next": "hello"}], "holdout_percent": 40},
        {"id": "hello", "type": "send_email", "template_id": "welcome", "next": "done"},
        {"id": "done", "type": "exit"},
    ],
    "rules": {"goal": {"event": "Order Completed"}},
}


async def test_journey_numbers_follow_the_engine(
    env, sessions, settings, client, marketer_headers, admin_headers
):
    async with engine(env, sessions, settings) as e:
        await e.template(
            "welcome", "Welcome {{ traits.name }}", '<p>Hi <a href="https://shop.example/">shop</a></p>'
        )
        await e.journey("welcome", JOURNEY)
        ids = {}
        for i in range(CUSTOMERS):
            user = f"user{i}"
            ids[user] = await e.customer(user)
            await e.track(user, "Signed Up")
        for enrollment in await e.enrollments("welcome"):
            await e.result(e.handle("welcome", enrollment.customer_id))
        mail = {m["to"]: m for m in e.mailbox()}

        treated = [
            u
            for u, cid in ids.items()
            if choose_path([{"weight": 1}], 40, split_bucket("welcome", "split", cid)) == 0
        ]
        held_out = [u for u in ids if u not in treated]
        assert sorted(mail) == sorted(f"{u}@example.com" for u in treated) and held_out

        opened = treated[: len(treated) // 2]
        for user in opened:
            pixel = re.search(r'<img src="([^"]+/o/[^"]+)"', mail[f"{user}@example.com"]["html"]).group(1)
            for _ in range(2):  # a second open of the same message counts once
                assert (await client.get(urlsplit(pixel).path)).status_code == 200
        unsubscriber, bouncer = treated[-1], treated[-2]
        headers = dict(mail[f"{unsubscriber}@example.com"]["headers"])
        one_click = urlsplit(headers["List-Unsubscribe"].strip("<>")).path
        assert (await client.post(one_click, data={"List-Unsubscribe": "One-Click"})).status_code == 200
        feedback = {
            "events": [{"type": "bounce", "email": f"{bouncer}@example.com", "bounce_type": "permanent"}]
        }
        got = await client.post("/api/webhooks/email-feedback", json=feedback, headers=admin_headers)
        assert got.status_code == 200, got.text
        buyers = [treated[0], treated[1], treated[2], held_out[0]]
        for user in buyers:
            await e.track(user, "Order Completed", revenue=20)

    got = await client.get("/api/analytics/journeys/welcome", headers=marketer_headers)
    assert got.status_code == 200, got.text
    j = got.json()
    nodes = {n["node_id"]: n for n in j["nodes"]}
    assert (j["enrolled"], j["converted"]) == (CUSTOMERS, len(buyers))
    assert nodes["split"]["entered"] == CUSTOMERS
    hello = nodes["hello"]
    assert (hello["entered"], hello["sent"], hello["converted"]) == (len(treated), len(treated), 3)
    assert (hello["opened"], hello["unsubscribed"], hello["bounced"]) == (len(opened), 1, 1)
    assert hello["delivered"] == len(treated) - 1
    links = {(link["source"], link["target"]): link["count"] for link in j["links"]}
    assert links == {
        ("start", "split"): CUSTOMERS,
        ("split", "holdout"): len(held_out),
        ("split", "hello"): len(treated),
        ("hello", "done"): len(treated),
    }
    (uplift,) = j["uplift"]
    assert (uplift["treatment"]["entered"], uplift["treatment"]["converted"]) == (len(treated), 3)
    assert (uplift["holdout"]["entered"], uplift["holdout"]["converted"]) == (len(held_out), 1)
    assert uplift["difference"] == pytest.approx(3 / len(treated) - 1 / len(held_out))
