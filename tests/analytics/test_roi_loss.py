"""ROI below zero (purchases with a negative revenue, e.g. a refund sent as the purchase event): the
KPIs answer, and a negative ROI scores 0 in the effectiveness index, never above break-even."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.db import transaction
from domain.email.models import Message
from domain.events import service as events
from domain.events.schemas import TrackCall
from tests.email.helpers import add_customer, add_template

SENT = datetime(2026, 5, 10, 12, tzinfo=UTC)


@pytest.mark.parametrize(("revenue", "roi"), [(-0.01, -1.0), (-0.03, -3.0)])
async def test_a_negative_roi_is_the_lowest_score_and_never_a_500(
    app, client, marketer_headers, sessions, revenue, roi
):
    # amounts count to the cent: one message costs a cent here
    app.state.settings = app.state.settings.model_copy(update={"analytics_cost_per_message": 0.01})
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
        purchase = TrackCall(
            userId="ann@example.com",
            event="Order Completed",
            properties={"revenue": revenue},
            timestamp=SENT + timedelta(hours=1),
            messageId="order-1",
        )
        await events.ingest(session, [purchase], source_key_id=None)
    r = await client.get(
        "/api/analytics/kpis", params={"from": "2026-05-01", "to": "2026-06-01"}, headers=marketer_headers
    )
    assert r.status_code == 200, r.text  # ROI -1 divided by zero: 500
    body = r.json()
    assert body["roi"]["value"] == pytest.approx(roi)
    index = body["crm_effectiveness_index"]
    [score] = [c["normalised"] for c in index["components"] if c["kpi"] == "roi"]
    assert score == 0  # ROI -3 scored 1.5, above a perfect campaign
    assert 0 <= index["value"] <= 1
