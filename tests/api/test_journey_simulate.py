"""Dry run: the path and rendered messages for one customer on a simulated clock; nothing is sent."""

from __future__ import annotations

from tests.api.test_journey_definitions import add_team_and_segment
from tests.email.helpers import add_customer
from tests.workflows.test_abandoned_cart import CART

TEMPLATE = {
    "id": "cart-reminder",
    "name": "Cart",
    "subject": "{{ traits.name }}, cart {{ properties.cart_id }} is waiting",
    "html": "<p>Come back</p>",
}


async def _setup(client, headers, sessions) -> None:
    await add_team_and_segment(sessions, team="care")
    assert (await client.post("/api/templates", json=TEMPLATE, headers=headers)).status_code == 201
    body = {"id": "cart", "name": "Cart", "definition": CART}
    assert (await client.post("/api/journeys", json=body, headers=headers)).status_code == 201


async def test_simulation_shows_the_path_times_and_rendered_email(client, marketer_headers, sessions):
    await _setup(client, marketer_headers, sessions)
    spec = {
        "customer": {"email": "ada@example.com", "traits": {"name": "Ada", "value_tier": "key"}},
        "entry": {"name": "Cart Updated", "properties": {"cart_id": "c1"}},
        "events": [{"name": "Order Completed", "properties": {"cart_id": "other"}, "after": "30m"}],
        "start": "2026-03-02T10:00:00Z",
    }

    response = await client.post("/api/journeys/cart/simulate", json=spec, headers=marketer_headers)

    assert response.status_code == 200, response.text
    result = response.json()
    assert [(s["node_id"], s["outcome"]) for s in result["steps"]] == [
        ("wait_order", "timeout"),
        ("reminder", "rendered"),
        ("wait_day", "timeout"),
        ("tier", "branch:0"),
        ("escalate", "sla_breached"),
        ("done", None),
    ]
    [message] = result["messages"]
    assert message["subject"] == "Ada, cart c1 is waiting"
    assert message["at"].startswith("2026-03-02T11:00:00")
    assert message["to"] == "ada@example.com"
    mailbox = await client.get("/dev/mailbox", headers=marketer_headers)
    assert mailbox.json() == []  # nothing was sent


async def test_simulated_order_for_the_same_cart_ends_the_journey(client, marketer_headers, sessions):
    await _setup(client, marketer_headers, sessions)
    spec = {
        "customer": {"traits": {"name": "Bob"}},
        "entry": {"name": "Cart Updated", "properties": {"cart_id": "c9"}},
        "events": [{"name": "Order Completed", "properties": {"cart_id": "c9"}, "after": "20m"}],
    }

    result = (await client.post("/api/journeys/cart/simulate", json=spec, headers=marketer_headers)).json()

    assert [(s["node_id"], s["outcome"]) for s in result["steps"]] == [
        ("wait_order", "matched"),
        ("done", None),
    ]
    assert result["messages"] == []


async def test_simulation_input_is_validated(client, marketer_headers, sessions):
    await _setup(client, marketer_headers, sessions)
    bad = {"customer": {}, "events": [{"name": "X", "after": "soon"}]}
    response = await client.post("/api/journeys/cart/simulate", json=bad, headers=marketer_headers)
    assert response.status_code == 422
    assert "events" in response.text and "not a duration" in response.text
    nobody = await client.post("/api/journeys/cart/simulate", json={}, headers=marketer_headers)
    assert nobody.status_code == 422
    assert "customer" in nobody.text
    missing = await client.post(
        "/api/journeys/cart/simulate", json={"customer_id": 424242}, headers=marketer_headers
    )
    assert missing.status_code == 404


async def test_a_described_customer_is_checked_as_a_real_one(client, marketer_headers, sessions):
    # A zone no customer could have was read as the journey's default (UTC), and an address no send
    # would take was shown as the recipient: the dry run answered 200 for a path nobody walks.
    await _setup(client, marketer_headers, sessions)
    entry = {"name": "Cart Updated", "properties": {"cart_id": "c1"}}
    for customer, field, problem in [
        ({"timezone": "Nowhere"}, "customer.timezone", "'Nowhere' is not an IANA time zone"),
        ({"email": "ada"}, "customer.email", "not a valid email address"),
    ]:
        spec = {"customer": customer, "entry": entry}
        response = await client.post("/api/journeys/cart/simulate", json=spec, headers=marketer_headers)
        assert response.status_code == 422, response.text
        [detail] = response.json()["detail"]
        assert detail["field"] == field
        assert problem in detail["problem"]

    spec = {"customer": {"email": "Ada@Example.com", "timezone": "Europe/Paris"}, "entry": entry}
    response = await client.post("/api/journeys/cart/simulate", json=spec, headers=marketer_headers)
    assert response.status_code == 200, response.text
    assert [m["to"] for m in response.json()["messages"]] == ["ada@example.com"]


async def test_simulated_segment_goal_converts_on_entry_or_membership(client, marketer_headers, sessions):
    await add_team_and_segment(sessions, team="care", segment="buyers")
    assert (await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)).status_code == 201
    definition = {
        "nodes": [
            {"id": "start", "type": "entry", "event": "Signed Up", "next": "wait"},
            {"id": "wait", "type": "wait", "duration": "3d", "next": "nudge"},
            {"id": "nudge", "type": "send_email", "template_id": "cart-reminder", "next": "done"},
            {"id": "done", "type": "exit"},
        ],
        "rules": {"goal": {"segment": "buyers"}},
    }
    body = {"id": "trial", "name": "Trial", "definition": definition}
    assert (await client.post("/api/journeys", json=body, headers=marketer_headers)).status_code == 201
    buys = {"name": "Segment Entered", "properties": {"segment_id": "buyers"}, "after": "1d"}

    async def simulate(**spec):
        spec = {"customer": {"traits": {"name": "Ann"}}, **spec}
        response = await client.post("/api/journeys/trial/simulate", json=spec, headers=marketer_headers)
        assert response.status_code == 200, response.text
        return response.json()

    entering, member, neither = (
        await simulate(events=[buys]),
        await simulate(segments=["buyers"]),
        await simulate(),
    )
    assert (entering["status"], [s["node_id"] for s in entering["steps"]]) == ("converted", ["wait"])
    assert (member["status"], [s["node_id"] for s in member["steps"]]) == ("converted", ["wait"])
    assert neither["status"] == "completed" and len(neither["messages"]) == 1


async def _journey(client, headers, journey_id: str, nodes: list[dict], rules: dict | None = None) -> None:
    body = {"id": journey_id, "name": journey_id, "definition": {"nodes": nodes, "rules": rules or {}}}
    assert (await client.post("/api/journeys", json=body, headers=headers)).status_code == 201


async def test_simulated_events_without_after_come_right_after_entry(client, marketer_headers):
    """``after`` left out is "at entry": the workflow acts on an event that comes right after entry (it
    looks for the goal and exit criteria before every node, and a wait_for_event takes an event that
    came while the steps before it ran), and so must the dry run."""
    assert (await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)).status_code == 201
    entry = {"id": "start", "type": "entry", "event": "Signed Up", "next": "wait"}
    nudge = {"id": "nudge", "type": "send_email", "template_id": "cart-reminder", "next": "done"}
    done = {"id": "done", "type": "exit"}
    wait = {"id": "wait", "type": "wait", "duration": "1d", "next": "nudge"}
    goal = {"goal": {"event": "Order Completed"}}
    await _journey(client, marketer_headers, "goal", [entry, wait, nudge, done], goal)
    await _journey(
        client, marketer_headers, "goal-first-send", [{**entry, "next": "nudge"}, nudge, done], goal
    )
    await _journey(
        client,
        marketer_headers,
        "leave",
        [entry, wait, nudge, done],
        {"exit_when": [{"event": "Unsubscribed"}]},
    )
    demo = {
        "id": "wait",
        "type": "wait_for_event",
        "event": "Demo Booked",
        "timeout": "3d",
        "next": "done",
        "timeout_next": "nudge",
    }
    await _journey(client, marketer_headers, "demo", [entry, demo, nudge, done])

    async def simulate(journey_id: str, *events: dict) -> dict:
        spec = {
            "customer": {"email": "ann@example.com"},
            "events": list(events),
            "start": "2026-06-01T10:00:00Z",
        }
        response = await client.post(
            f"/api/journeys/{journey_id}/simulate", json=spec, headers=marketer_headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    def path(result: dict) -> list[tuple[str, str | None]]:
        return [(s["node_id"], s["outcome"]) for s in result["steps"]]

    for journey_id in ("goal", "goal-first-send"):
        converted = await simulate(journey_id, {"name": "Order Completed"})
        assert (converted["status"], path(converted), converted["messages"]) == ("converted", [], [])
    later = await simulate("goal-first-send", {"name": "Order Completed", "after": "1m"})
    assert (later["status"], len(later["messages"])) == ("completed", 1)  # it came after the send
    exited = await simulate("leave", {"name": "Unsubscribed", "after": None})
    assert (exited["status"], exited["messages"]) == ("exited", [])
    booked = await simulate("demo", {"name": "Demo Booked"})
    assert (booked["status"], path(booked), booked["messages"]) == (
        "completed",
        [("wait", "matched"), ("done", None)],
        [],
    )
    # Two events at one moment both count: the first ends the wait, the second takes them out at once.
    await _journey(
        client,
        marketer_headers,
        "demo-then-wait",
        [entry, {**demo, "next": "later"}, {**wait, "id": "later"}, nudge, done],
        {"exit_when": [{"event": "Unsubscribed"}]},
    )
    both = await simulate(
        "demo-then-wait", {"name": "Demo Booked", "after": "1h"}, {"name": "Unsubscribed", "after": "1h"}
    )
    assert (both["status"], path(both), both["messages"]) == (
        "exited",
        [("wait", "matched")],
        [],
    )


async def test_a_simulated_wait_on_a_date_trait_has_the_workflows_outcomes(client, marketer_headers):
    """The workflow records a date that has passed as ``date_passed`` and a missing one as ``no_date``,
    going on at once; the dry run promises the same path."""
    assert (await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)).status_code == 201
    hold = {"id": "hold", "type": "wait_until", "at": "09:00", "date_trait": "renewal", "next": "nudge"}
    nodes = [
        {"id": "start", "type": "entry", "event": "Signed Up", "next": "hold"},
        hold,
        {"id": "nudge", "type": "send_email", "template_id": "cart-reminder", "next": "done"},
        {"id": "done", "type": "exit"},
    ]
    await _journey(client, marketer_headers, "renewal", nodes)
    await _journey(client, marketer_headers, "before", [nodes[0], {**hold, "offset_days": -7}, *nodes[2:]])

    async def hold_of(journey_id: str, traits: dict) -> tuple[str | None, str, str]:
        spec = {"customer": {"traits": traits}, "start": "2026-06-01T10:00:00Z"}
        response = await client.post(
            f"/api/journeys/{journey_id}/simulate", json=spec, headers=marketer_headers
        )
        assert response.status_code == 200, response.text
        step, message = response.json()["steps"][0], response.json()["messages"][0]
        assert step["node_id"] == "hold"
        return step["outcome"], step["left_at"][:16], message["at"][:16]

    assert await hold_of("renewal", {"renewal": "2020-01-01"}) == (
        "date_passed",
        "2026-06-01T10:00",
        "2026-06-01T10:00",
    )
    # 09:00 today went by an hour ago; a week before the 5th is already past, too.
    assert (await hold_of("renewal", {"renewal": "2026-06-01"}))[0] == "date_passed"
    assert (await hold_of("before", {"renewal": "2026-06-05"}))[0] == "date_passed"
    assert await hold_of("renewal", {}) == ("no_date", "2026-06-01T10:00", "2026-06-01T10:00")
    assert await hold_of("renewal", {"renewal": "2026-06-02"}) == (
        None,
        "2026-06-02T09:00",
        "2026-06-02T09:00",
    )
    # Without its year a date is its next occurrence: 05-17 has passed this year, so next year's.
    assert await hold_of("renewal", {"renewal": "05-17"}) == (None, "2027-05-17T09:00", "2027-05-17T09:00")
    assert await hold_of("renewal", {"renewal": "2026-05-99"}) == (
        "no_date",
        "2026-06-01T10:00",
        "2026-06-01T10:00",
    )


async def test_a_simulated_email_is_the_one_the_preview_shows_and_the_journey_sends(
    client, marketer_headers, sessions
):
    """Same variant (the customer's language), layout, footer and links as a real send."""
    r = await client.post(
        "/api/subscription-groups", json={"id": "news", "name": "Weekly News"}, headers=marketer_headers
    )
    assert r.status_code == 201, r.text
    template = {
        "id": "hello",
        "name": "Hello",
        "subscription_group": "news",
        "subject": "Hi {{ traits.name }}",
        "html": "<p>Hello {{ traits.name }}</p>",
        "variants": {
            "fr": {"subject": "Salut {{ traits.name }}", "html": "<p>Bonjour {{ traits.name }}</p>"}
        },
    }
    assert (await client.post("/api/templates", json=template, headers=marketer_headers)).status_code == 201
    nodes = [
        {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"},
        {"id": "hello", "type": "send_email", "template_id": "hello", "next": "done"},
        {"id": "done", "type": "exit"},
    ]
    body = {"id": "welcome", "name": "Welcome", "definition": {"nodes": nodes}}
    assert (await client.post("/api/journeys", json=body, headers=marketer_headers)).status_code == 201
    cid = await add_customer(sessions, email="jean@example.com", traits={"name": "Jean"}, locale="fr")

    simulated = await client.post(
        "/api/journeys/welcome/simulate", json={"customer_id": cid}, headers=marketer_headers
    )
    preview = await client.post(
        "/api/templates/hello/preview", json={"customer_id": cid}, headers=marketer_headers
    )

    [message] = simulated.json()["messages"]
    shown = preview.json()
    assert (message["subject"], message["html"], message["text"]) == (
        shown["subject"],
        shown["html"],
        shown["text"],
    )
    assert message["subject"] == "Salut Jean" and "subscribed to Weekly News" in message["html"]


VOUCHER = [
    {"id": "start", "type": "entry", "event": "Voucher Requested", "next": "pay"},
    {"id": "pay", "type": "deduct_points", "points": 50, "next": "done", "insufficient_next": "sorry"},
    {"id": "sorry", "type": "update_trait", "traits": {"voucher": "refused"}, "next": "done"},
    {"id": "done", "type": "exit"},
]


async def test_a_simulated_deduction_takes_the_path_the_balance_would(
    client, marketer_headers, admin_headers, sessions
):
    """As the workflow: a deduction the balance does not cover goes to insufficient_next."""
    body = {"id": "voucher", "name": "Voucher", "definition": {"nodes": VOUCHER}}
    assert (await client.post("/api/journeys", json=body, headers=marketer_headers)).status_code == 201
    cid = await add_customer(sessions, email="ann@example.com", traits={})

    async def path(spec):
        r = await client.post("/api/journeys/voucher/simulate", json=spec, headers=marketer_headers)
        assert r.status_code == 200, r.text
        return [(s["node_id"], s["outcome"]) for s in r.json()["steps"]]

    insufficient = [("pay", "insufficient"), ("sorry", None), ("done", None)]
    paid = [("pay", "deduct_points:50"), ("done", None)]
    assert await path({"customer": {}}) == insufficient  # a described customer has no points
    assert await path({"customer": {}, "points": 50}) == paid
    assert await path({"customer_id": cid}) == insufficient
    r = await client.post(
        f"/api/loyalty/{cid}/adjust", json={"points": 60, "reason": "gift"}, headers=admin_headers
    )
    assert r.status_code in (200, 201), r.text
    assert await path({"customer_id": cid}) == paid  # the real customer's balance
    assert await path({"customer_id": cid, "points": 10}) == insufficient
    r = await client.post(
        "/api/journeys/voucher/simulate", json={"customer": {}, "points": -1}, headers=marketer_headers
    )
    assert r.status_code == 422 and "points" in r.text
