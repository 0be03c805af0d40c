import asyncio

from tests.loyalty.helpers import audit, count_entries, emitted, entries, make_customer, set_program


async def credit(client, admin_headers, customer_id: int, points: int, key: str = "seed"):
    response = await client.post(
        f"/api/loyalty/{customer_id}/adjust",
        json={"points": points, "reason": "welcome gift"},
        headers={**admin_headers, "Idempotency-Key": key},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_fifty_concurrent_redemptions_against_a_balance_for_ten(
    client, sessions, admin_headers, marketer_headers
):
    customer = await make_customer(sessions)
    await credit(client, admin_headers, customer, 100)

    async def redeem(i: int):
        return await client.post(
            f"/api/loyalty/{customer}/redeem",
            json={"points": 10, "reason": f"voucher {i}"},
            headers={**marketer_headers, "Idempotency-Key": f"order-{i}"},
        )

    responses = await asyncio.gather(*(redeem(i) for i in range(50)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 10 and codes.count(409) == 40, codes
    refused = [r.json() for r in responses if r.status_code == 409]
    assert all(r["error"] == "insufficient_points" for r in refused)
    assert "balance" in refused[0]["detail"]["problem"]

    account = (await client.get(f"/api/loyalty/{customer}", headers=marketer_headers)).json()
    assert account["balance"] == 0
    redeemed = [e for e in await entries(sessions, customer) if e.kind == "redeem"]
    assert len(redeemed) == 10 and sum(e.points for e in redeemed) == -100
    assert sorted(e.balance_after for e in redeemed) == list(range(0, 100, 10))
    assert len(await emitted(sessions, "Points Redeemed")) == 10
    assert (await audit(sessions, customer)).consistent


async def test_a_retried_redemption_spends_once_and_a_reused_key_is_refused(
    client, sessions, admin_headers, marketer_headers
):
    customer = await make_customer(sessions)
    await credit(client, admin_headers, customer, 100)
    headers = {**marketer_headers, "Idempotency-Key": "order-42"}
    url = f"/api/loyalty/{customer}/redeem"
    first = await client.post(url, json={"points": 30}, headers=headers)
    again = await client.post(url, json={"points": 30}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["entry"]["id"] == first.json()["entry"]["id"]
    assert again.json()["balance"] == 70

    different = await client.post(url, json={"points": 50}, headers=headers)
    assert different.status_code == 409
    assert different.json()["error"] == "idempotency_key_reused"
    account = (await client.get(f"/api/loyalty/{customer}", headers=marketer_headers)).json()
    assert account["balance"] == 70
    assert len(await emitted(sessions, "Points Redeemed")) == 1
    # A retry after the balance moved on: the first entry again, spending nothing, and today's balance.
    await credit(client, admin_headers, customer, 500, key="later")
    late = (await client.post(url, json={"points": 30}, headers=headers)).json()
    assert (late["replayed"], late["entry"], late["balance"]) == (True, first.json()["entry"], 570)


async def test_points_are_spent_oldest_first(client, sessions, admin_headers, marketer_headers):
    customer = await make_customer(sessions)
    older = await credit(client, admin_headers, customer, 40, key="a")
    newer = await credit(client, admin_headers, customer, 60, key="b")
    await client.post(
        f"/api/loyalty/{customer}/redeem",
        json={"points": 50},
        headers={**marketer_headers, "Idempotency-Key": "r1"},
    )
    result = await audit(sessions, customer)
    assert result.stored.lots == {newer["entry"]["id"]: 50}
    assert older["entry"]["id"] not in result.stored.lots
    assert result.consistent, result.problems


async def test_bad_input_is_refused_with_the_field_named_and_the_ledger_untouched(
    client, sessions, admin_headers, marketer_headers
):
    customer = await make_customer(sessions)
    await credit(client, admin_headers, customer, 100)
    before = await count_entries(sessions)
    url = f"/api/loyalty/{customer}/redeem"
    keyed = {**marketer_headers, "Idempotency-Key": "k"}
    cases = [
        (url, {"points": -5}, keyed, 422, "points"),
        (url, {"points": 0}, keyed, 422, "points"),
        (url, {"points": 2.5}, keyed, 422, "points"),
        (url, {"points": "10"}, keyed, 422, "points"),
        (url, {"points": True}, keyed, 422, "points"),
        (url, {}, keyed, 422, "points"),
        (url, {"points": 10}, marketer_headers, 422, "Idempotency-Key"),
        ("/api/loyalty/999999/redeem", {"points": 10}, keyed, 404, None),
        (f"/api/loyalty/{customer}/adjust", {"points": 5}, admin_headers, 422, "reason"),
        (f"/api/loyalty/{customer}/adjust", {"points": 5, "reason": "  "}, admin_headers, 422, "reason"),
        (f"/api/loyalty/{customer}/adjust", {"points": 0, "reason": "x"}, admin_headers, 422, "points"),
        (f"/api/loyalty/{customer}/adjust", {"points": 1.5, "reason": "x"}, admin_headers, 422, "points"),
        (f"/api/loyalty/{customer}/adjust", {"points": -500, "reason": "x"}, admin_headers, 409, "points"),
    ]
    for path, body, headers, status, field in cases:
        response = await client.post(path, json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        detail = response.json()["detail"]
        if field is not None:
            fields = [d["field"] for d in detail] if isinstance(detail, list) else [detail["field"]]
            assert field in fields, (body, detail)
    assert (await client.get("/api/loyalty/abc", headers=marketer_headers)).status_code == 422
    assert (await client.get("/api/loyalty/999999", headers=marketer_headers)).status_code == 404
    assert await count_entries(sessions) == before
    account = (await client.get(f"/api/loyalty/{customer}", headers=marketer_headers)).json()
    assert account["balance"] == 100


async def test_malformed_programmes_are_refused_and_the_old_one_kept(client, sessions, admin_headers):
    await set_program(sessions)
    bad = [
        ({"rules": [{"id": "r", "event": "Order Completed"}]}, "rules.0"),
        ({"rules": [{"id": "r", "event": "E", "points": 5, "points_per_unit": 1}]}, "rules.0"),
        ({"rules": [{"id": "r", "event": "E", "points": -5}]}, "rules.0.points"),
        ({"rules": [{"id": "r", "event": "E", "points": 1.5}]}, "rules.0.points"),
        ({"rules": [{"id": "r", "event": "Points Earned", "points": 5}]}, "rules.0.event"),
        (
            {"rules": [{"id": "r", "event": "E", "points": 1}, {"id": "r", "event": "F", "points": 1}]},
            "rules",
        ),
        ({"tiers": [{"name": "a", "threshold": 10}]}, "tiers"),
        ({"tiers": [{"name": "a", "threshold": 0}, {"name": "b", "threshold": 0}]}, "tiers"),
        ({"tiers": []}, "tiers"),
        ({"expiry_months": 0}, "expiry_months"),
        ({"rules": [{"id": "r", "event": "E", "points": 1, "bonus": 2}]}, "rules.0.bonus"),
    ]
    for body, field in bad:
        response = await client.put("/api/loyalty/program", json=body, headers=admin_headers)
        assert response.status_code == 422, (body, response.text)
        assert field in [d["field"] for d in response.json()["detail"]], (body, response.json())
    current = (await client.get("/api/loyalty/program", headers=admin_headers)).json()
    assert [r["id"] for r in current["config"]["rules"]] == ["purchase", "review"]
    assert current["version"] == 1


async def test_a_programme_put_must_give_the_whole_programme(client, sessions, admin_headers):
    """PUT replaces the programme: a field left out is refused, never reset to its default."""
    await set_program(sessions)
    whole = {
        "rules": [{"id": "purchase", "event": "Order Completed", "points_per_unit": 1}],
        "tiers": [{"name": "member", "threshold": 0}],
        "tier_window_months": None,
        "expiry_months": None,
        "expiry_warning_days": 30,
    }
    for body, missing in [
        ({}, set(whole)),
        ({k: v for k, v in whole.items() if k != "rules"}, {"rules"}),
        ({k: v for k, v in whole.items() if k != "expiry_months"}, {"expiry_months"}),
    ]:
        response = await client.put("/api/loyalty/program", json=body, headers=admin_headers)
        assert response.status_code == 422, (body, response.text)
        assert {d["field"] for d in response.json()["detail"]} == missing, response.json()
    current = (await client.get("/api/loyalty/program", headers=admin_headers)).json()
    assert [r["id"] for r in current["config"]["rules"]] == ["purchase", "review"]
    assert current["version"] == 1
    response = await client.put("/api/loyalty/program", json=whole, headers=admin_headers)
    assert response.status_code == 200, response.text
    saved = response.json()
    assert saved["version"] == 2 and [r["id"] for r in saved["config"]["rules"]] == ["purchase"]
    assert (saved["config"]["tier_window_months"], saved["config"]["expiry_months"]) == (None, None)


async def test_roles(client, sessions, admin_headers, marketer_headers):
    from domain.auth.schemas import Role
    from tests.conftest import make_key

    agent = {"Authorization": f"Bearer {await make_key(sessions, role=Role.agent)}"}
    customer = await make_customer(sessions)
    assert (await client.get(f"/api/loyalty/{customer}", headers=agent)).status_code == 200
    redeem = await client.post(
        f"/api/loyalty/{customer}/redeem", json={"points": 1}, headers={**agent, "Idempotency-Key": "x"}
    )
    assert redeem.status_code == 403
    adjust = await client.post(
        f"/api/loyalty/{customer}/adjust", json={"points": 1, "reason": "x"}, headers=marketer_headers
    )
    assert adjust.status_code == 403
    program = await client.put("/api/loyalty/program", json={}, headers=marketer_headers)
    assert program.status_code == 403
