"""Operational broadcasts: a notice every customer must get, sent past marketing unsubscribes and
subscription groups, never past bounces, complaints or an erasure; admin keys only, with a reason."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from domain.broadcasts.models import Broadcast
from domain.customers import service as customers
from domain.db import transaction
from domain.email.models import Message
from domain.subscriptions import service as subscriptions
from tests.email.helpers import add_customer, add_customers, add_template
from workflows.broadcast import BroadcastProgress

REASON = "Terms of service change, effective 1 June"


def _notice(**spec) -> dict:
    return {
        "id": "terms",
        "name": "New terms",
        "kind": "operational",
        "reason": REASON,
        "template_id": "terms",
        "audience": {"kind": "all"},
        "batch_size": 3,
    } | spec


async def _add_notice_template(sessions) -> None:
    await add_template(
        sessions,
        id="terms",
        name="Terms",
        category="transactional",
        subject="Our terms change, {{ traits.first_name }}",
        html="<p>Dear {{ traits.first_name }}, our terms change.</p>",
    )


async def _stored(sessions) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(Broadcast))


async def test_an_operational_broadcast_reaches_the_unsubscribed_once_and_never_the_suppressed_or_erased(
    client, admin_headers, sessions, capture, temporal
):
    ids = await add_customers(sessions, 6)
    await add_template(sessions, id="promo", subscription_group="offers")  # makes the opt-in group
    await _add_notice_template(sessions)
    erased = await add_customer(sessions, email="gone@example.com", traits={"first_name": "Gone"})
    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(session, ids[1], subscriptions.ALL_GROUPS, "one_click")
        await subscriptions.unsubscribe(session, ids[2], "offers", "one_click")
        await subscriptions.suppress_address(session, "c3@example.com", "bounced", None)
        await subscriptions.suppress_address(session, "c4@example.com", "complained", None)
        # an address an erased person bounced from: only its digest is kept
        await subscriptions.suppress_address(session, "c5@example.com", "bounced", None)
        await subscriptions.forget_addresses(session, ["c5@example.com"])
        await customers.erase(session, erased, by_key_id=None, reason="GDPR art. 17 request #12")

    created = await client.post("/api/broadcasts", json=_notice(), headers=admin_headers)
    assert created.status_code == 201, created.text
    result = await temporal.client.get_workflow_handle(
        "broadcast/terms", result_type=BroadcastProgress
    ).result()
    assert (result.status, result.sent, result.skipped, result.failed) == ("completed", 3, 3, 0)

    messages = await capture.wait_for_count(3)
    assert Counter(m["envelope_to"][0] for m in messages) == {
        "c0@example.com": 1,
        "c1@example.com": 1,  # unsubscribed from all marketing
        "c2@example.com": 1,  # unsubscribed from the template's group
    }
    by_address = {m["envelope_to"][0]: m for m in messages}
    assert by_address["c1@example.com"]["subject"] == "Our terms change, Name1"
    assert "Dear Name1, our terms change." in by_address["c1@example.com"]["html"]
    for message in messages:  # a notice, not marketing: nothing to unsubscribe from, no tracking
        assert not {"List-Unsubscribe", "List-Unsubscribe-Post"} & {name for name, _ in message["headers"]}
        assert "/u/" not in message["html"] and "/o/" not in message["html"]
    async with sessions() as session:
        rows = await session.execute(select(Message.to_address, Message.status, Message.error))
        ledger = {address: (status, error) for address, status, error in rows}
    assert ledger["c1@example.com"] == ("sent", None)
    assert {a: ledger[a] for a in ("c3@example.com", "c4@example.com", "c5@example.com")} == {
        "c3@example.com": ("skipped", "address suppressed (bounced)"),
        "c4@example.com": ("skipped", "address suppressed (complained)"),
        "c5@example.com": ("skipped", "address suppressed (bounced)"),
    }
    assert "gone@example.com" not in ledger

    keys = (await client.get("/api/keys", headers=admin_headers)).json()
    shown = (await client.get("/api/broadcasts/terms", headers=admin_headers)).json()
    assert (shown["kind"], shown["reason"], shown["sent"], shown["skipped"]) == ("operational", REASON, 3, 3)
    assert shown["created_by_key_id"] == next(k["id"] for k in keys if k["name"] == "test admin")
    assert shown["subscription_group"] is None
    listed = (await client.get("/api/broadcasts", headers=admin_headers)).json()
    assert [(b["id"], b["kind"], b["reason"]) for b in listed] == [("terms", "operational", REASON)]
    analytics = (await client.get("/api/analytics/broadcasts/terms", headers=admin_headers)).json()
    assert (analytics["kind"], analytics["sent"]) == ("operational", 3)
    kpis = (await client.get("/api/analytics/kpis", headers=admin_headers)).json()
    assert kpis["roi"]["messages_sent"] == 0  # a notice is no marketing: no cost, no revenue credited


async def test_an_operational_broadcast_to_a_customer_list_skips_an_erased_customer(
    client, admin_headers, sessions, capture, temporal
):
    ids = await add_customers(sessions, 3)
    await _add_notice_template(sessions)
    async with transaction(sessions) as session:
        await customers.erase(session, ids[1], by_key_id=None, reason="GDPR art. 17 request #13")
    body = _notice(audience={"kind": "customers", "customer_ids": ids})
    assert (await client.post("/api/broadcasts", json=body, headers=admin_headers)).status_code == 201
    result = await temporal.client.get_workflow_handle(
        "broadcast/terms", result_type=BroadcastProgress
    ).result()
    assert (result.status, result.sent) == ("completed", 2)
    messages = await capture.wait_for_count(2)
    assert sorted(m["envelope_to"][0] for m in messages) == ["c0@example.com", "c2@example.com"]


async def test_only_an_admin_key_may_send_an_operational_broadcast(client, marketer_headers, sessions):
    await add_customers(sessions, 1)
    await _add_notice_template(sessions)
    r = await client.post("/api/broadcasts", json=_notice(), headers=marketer_headers)
    assert r.status_code == 403, r.text
    assert "admin" in r.json()["detail"]
    assert await _stored(sessions) == 0


async def test_only_an_admin_key_may_pause_resume_or_cancel_an_operational_broadcast(
    client, admin_headers, marketer_headers, sessions, temporal
):
    await add_customers(sessions, 1)
    await _add_notice_template(sessions)
    body = _notice(send_at="2100-01-01T09:00:00Z")  # waits: nothing is sent while it is steered
    assert (await client.post("/api/broadcasts", json=body, headers=admin_headers)).status_code == 201

    async def status() -> str:
        return (await client.get("/api/broadcasts/terms", headers=marketer_headers)).json()["status"]

    for action in ("pause", "cancel"):
        r = await client.post(f"/api/broadcasts/terms/{action}", headers=marketer_headers)
        assert r.status_code == 403, r.text
        assert "admin" in r.json()["detail"]
        assert await status() == "scheduled"
    assert (await client.post("/api/broadcasts/terms/pause", headers=admin_headers)).status_code == 200
    assert (await client.post("/api/broadcasts/terms/resume", headers=marketer_headers)).status_code == 403
    assert await status() == "paused"
    assert (await client.post("/api/broadcasts/terms/cancel", headers=admin_headers)).status_code == 200
    assert await status() == "cancelled"
    # The workflow ends on the cancel; waited for, none of its work is still running when the worker
    # stops at the end of the test (once, in CI, the next test's set-up then found SQLite's write lock
    # held for its whole 30 s busy timeout).
    handle = temporal.client.get_workflow_handle("broadcast/terms", result_type=BroadcastProgress)
    assert (await handle.result()).status == "cancelled"


@pytest.mark.parametrize(
    ("patch", "field", "problem"),
    [
        ({"reason": None}, "reason", "must say why"),
        ({"reason": "   "}, "reason", "must say why"),
        ({"reason": "x" * 501}, "reason", "500"),
        ({"template_id": "promo"}, "template_id", "is marketing"),
        ({"template_id": "promo", "template_version": 1}, "template_version", "is marketing"),
        ({"kind": "urgent"}, "kind", "'marketing' or 'operational'"),
        ({"subscription_group": "offers"}, "subscription_group", "every customer"),
        ({"kind": "marketing", "template_id": "promo"}, "reason", "only an operational"),
    ],
)
async def test_bad_operational_broadcasts_are_refused_naming_the_field(
    client, admin_headers, sessions, patch, field, problem
):
    await add_template(sessions, id="promo", subscription_group="offers")
    await _add_notice_template(sessions)
    r = await client.post("/api/broadcasts", json=_notice(**patch), headers=admin_headers)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    found = (
        {d["field"]: d["problem"] for d in detail}
        if isinstance(detail, list)
        else {detail["field"]: detail["problem"]}
    )
    assert field in found and problem in found[field], found
    assert await _stored(sessions) == 0
