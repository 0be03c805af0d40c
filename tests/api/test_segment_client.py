"""Segment's own Python library, pointed at a real server of ours, works unchanged."""

import asyncio
from datetime import UTC, datetime

import pytest
import uvicorn
from segment.analytics import Client
from sqlalchemy import select

from api.app import create_app
from domain.customers.models import Customer
from domain.events.models import Event
from tests.conftest import free_port, wait_for


@pytest.fixture
async def server_url(settings, sessions):
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())

    async def started():
        return server.started

    await wait_for(started, within=10)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


def _send_with_segment_library(url: str, write_key: str, errors: list) -> None:
    client = Client(
        write_key,
        host=url,
        gzip=True,
        on_error=lambda error, batch: errors.append(repr(error)),
        upload_interval=0.05,
        max_retries=1,
    )
    client.identify("cust-1", {"email": "Grace@Example.org", "name": "Grace", "plan": "pro"})
    client.track("cust-1", "Order Completed", {"revenue": 99.5, "order_id": "o-1"})
    client.track("cust-1", "Product Viewed", {"sku": "X"}, timestamp=datetime(2030, 5, 1, 12, 0, tzinfo=UTC))
    for i in range(150):  # more than one upload batch
        client.track("cust-2", "Page Scrolled", {"i": i})
    client.page("cust-1", "Docs", "Install", {"path": "/install"})
    client.group("cust-1", "acme", {"name": "Acme"})
    client.track(anonymous_id="visitor-9", event="Viewed Pricing")
    client.alias("visitor-9", "cust-1")
    client.flush()
    client.shutdown()


async def test_segment_python_library_against_a_live_server(server_url, sessions, write_key):
    errors: list = []
    await asyncio.to_thread(_send_with_segment_library, server_url, write_key, errors)
    assert errors == []

    async with sessions() as session:
        events = list(await session.scalars(select(Event).order_by(Event.id)))
        customers = {c.user_id: c for c in await session.scalars(select(Customer))}
    assert len(events) == 157
    assert len({e.message_id for e in events}) == 157
    grace = customers["cust-1"]
    assert grace.email == "grace@example.org" and grace.traits["plan"] == "pro"
    assert (grace.order_count, float(grace.lifetime_value)) == (1, 99.5)
    mine = [e for e in events if e.customer_id == grace.id]
    assert {(e.type, e.name) for e in mine} == {
        ("identify", None),
        ("track", "Order Completed"),
        ("track", "Product Viewed"),
        ("page", "Install"),
        ("group", None),
        ("track", "Viewed Pricing"),  # the visitor's event, re-attributed by the alias
        ("alias", None),
    }
    assert grace.event_count == 7
    assert all(e.context["library"]["name"] == "analytics-python" for e in events)
    order = next(e for e in mine if e.name == "Order Completed")
    assert order.properties == {"revenue": 99.5, "order_id": "o-1"}
    assert order.sent_at is not None
    viewed = next(e for e in mine if e.name == "Product Viewed")
    assert viewed.original_timestamp == datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    assert sum(e.customer_id == customers["cust-2"].id for e in events) == 150
    assert set(customers) == {"cust-1", "cust-2"}
