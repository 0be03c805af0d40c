"""ROI: an order's amount is read as lifetime value reads it (domain.revenue): a string holding a plain
number counts, to the cent; an absurd amount (10^12 or more) and a string that is no number count 0.
Below zero (purchases with a negative revenue, e.g. a refund sent as the purchase event) the KPIs
answer, and a negative ROI scores 0 in the effectiveness index, never above break-even."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.db import transaction
from domain.email.models import Message
from domain.events import service as events
from domain.events.schemas import TrackCall
from tests.email.helpers import add_customer, add_template

SENT = datetime(2026, 5, 10, 12, tzinfo=UTC)


async def _promo_then_orders(sessions, revenues: list) -> int:
    """Ann, mailed one promo, then ordering once an hour for each of ``revenues``: her customer id."""
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    await add_template(sessions, id="promo")
    async with transaction(sessions) as session:
        session.add(
            Message(
                idempotency_key="broadcast/promo/1",
                message_id="<m1@acme.example>",
                customer_id=cid,
                template_id="promo",
                template_version=1,
                status="sent",
                created_at=SENT,
                sent_at=SENT,
            )
        )
        orders = [
            TrackCall(
                userId="ann@example.com",
                event="Order Completed",
                properties={"revenue": revenue},
                timestamp=SENT + timedelta(hours=1 + i),
                messageId=f"order-{i}",
            )
            for i, revenue in enumerate(revenues)
        ]
        await events.ingest(session, orders, source_key_id=None)
    return cid


async def _kpis(client, headers) -> dict:
    r = await client.get(
        "/api/analytics/kpis", params={"from": "2026-05-01", "to": "2026-06-01"}, headers=headers
    )
    assert r.status_code == 200, r.text  # ROI -1 divided by zero: 500
    return r.json()


async def test_roi_counts_string_amounts_and_not_absurd_ones(client, marketer_headers, sessions):
    amounts = ["49.90", " 10.005 ", 1e12, "1e15", "n/a", True, 0.104]
    cid = await _promo_then_orders(sessions, amounts)
    roi = (await _kpis(client, marketer_headers))["roi"]
    # 49.90 + 10.01 + 0.10 (it was 1e12 + 0.104: string amounts counted 0, absurd ones in full)
    assert roi["attributed_revenue"] == pytest.approx(60.01)
    assert roi["attributed_purchases"] == len(amounts)
    assert roi["value"] == pytest.approx(60.01 / 0.001)  # one message at the default cost 0.001
    # the profile's lifetime value, read by the same rule
    profile = await client.get(f"/api/customers/{cid}", headers=marketer_headers)
    assert profile.status_code == 200, profile.text
    assert float(profile.json()["facts"]["lifetime_value"]) == pytest.approx(60.01)


@pytest.mark.parametrize(("revenue", "roi"), [(-0.01, -1.0), (-0.03, -3.0)])
async def test_a_negative_roi_is_the_lowest_score_and_never_a_500(
    app, client, marketer_headers, sessions, revenue, roi
):
    # amounts count to the cent: one message costs a cent here
    app.state.settings = app.state.settings.model_copy(update={"analytics_cost_per_message": 0.01})
    await _promo_then_orders(sessions, [revenue])
    body = await _kpis(client, marketer_headers)
    assert body["roi"]["value"] == pytest.approx(roi)
    index = body["crm_effectiveness_index"]
    [score] = [c["normalised"] for c in index["components"] if c["kpi"] == "roi"]
    assert score == 0  # ROI -3 scored 1.5, above a perfect campaign
    assert 0 <= index["value"] <= 1
