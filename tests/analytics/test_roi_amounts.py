"""ROI reads an order's amount as lifetime value does (domain.revenue): a string holding a plain number
counts, to the cent; an absurd amount (10^12 or more) and a string that is no number count 0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.db import transaction
from domain.email.models import Message
from domain.events import service as events
from domain.events.schemas import TrackCall
from tests.email.helpers import add_customer, add_template

SENT = datetime(2026, 5, 10, 12, tzinfo=UTC)


async def test_roi_counts_string_amounts_and_not_absurd_ones(client, marketer_headers, sessions):
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
        amounts = ["49.90", " 10.005 ", 1e12, "1e15", "n/a", True, 0.104]
        orders = [
            TrackCall(
                userId="ann@example.com",
                event="Order Completed",
                properties={"revenue": amount},
                timestamp=SENT + timedelta(hours=1 + i),
                messageId=f"order-{i}",
            )
            for i, amount in enumerate(amounts)
        ]
        await events.ingest(session, orders, source_key_id=None)
    r = await client.get(
        "/api/analytics/kpis", params={"from": "2026-05-01", "to": "2026-06-01"}, headers=marketer_headers
    )
    assert r.status_code == 200, r.text
    roi = r.json()["roi"]
    # 49.90 + 10.01 + 0.10 (it was 1e12 + 0.104: string amounts counted 0, absurd ones in full)
    assert roi["attributed_revenue"] == pytest.approx(60.01)
    assert roi["attributed_purchases"] == len(amounts)
    assert roi["value"] == pytest.approx(60.01 / 0.001)  # one message at the default cost 0.001
    # the profile's lifetime value, read by the same rule
    profile = await client.get(f"/api/customers/{cid}", headers=marketer_headers)
    assert profile.status_code == 200, profile.text
    assert float(profile.json()["facts"]["lifetime_value"]) == pytest.approx(60.01)
