"""Segment's Ruby, Java and .NET libraries post their batches to ``/v1/import`` (Java's default path
is ``/v1/import/``, with the slash), the older name of ``/v1/batch``, and its Kotlin and Swift (mobile)
libraries to ``/v1/b``: pointed at the engine they must work unchanged, as the Python library does."""

import gzip
import json

from sqlalchemy import select

from domain.customers.models import Customer
from domain.events.models import Event


def _call(message_id: str, event: str) -> dict:
    return {
        "type": "track",
        "userId": "u-import",
        "event": event,
        "messageId": message_id,
        "timestamp": "2030-05-01T12:00:00.000Z",
        "context": {"library": {"name": "analytics-ruby", "version": "2.4.0"}},
        "properties": {"revenue": 10},
    }


async def test_the_import_path_of_segment_libraries_stores_a_batch(client, sessions, write_key):
    auth = (write_key, "")
    # As analytics-ruby and Analytics.NET send it.
    ruby = {"batch": [_call("r-1", "Order Completed")], "sentAt": "2030-05-01T12:00:01.000Z"}
    response = await client.post("/v1/import", json=ruby, auth=auth)
    assert response.status_code == 200, response.text  # was a 404: every batch lost
    assert response.json() == {"success": True}
    # As analytics-java sends it: gzip, to /v1/import/, answered there (a redirect to the path without
    # the slash loses the key behind a proxy that terminates TLS), with fields of its own.
    java = {"batch": [_call("j-1", "Product Viewed"), _call("r-1", "Order Completed")], "sequence": 1}
    response = await client.post(
        "/v1/import/",
        content=gzip.compress(json.dumps(java).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=auth,
    )
    assert response.status_code == 200, response.text
    # The same rules as /v1/batch: one store, one dedup, the same refusals.
    response = await client.post("/v1/import", json={"batch": [{"type": "track"}]}, auth=auth)
    assert response.status_code == 400 and response.json()["error"] == "invalid_event"

    async with sessions() as session:
        names = sorted(await session.scalars(select(Event.name)))
        customer = await session.scalar(select(Customer).where(Customer.user_id == "u-import"))
    assert names == ["Order Completed", "Product Viewed"]
    assert (customer.order_count, customer.event_count) == (1, 2)


async def test_the_import_path_is_in_the_api_document(client):
    doc = (await client.get("/openapi.json")).json()
    operation = doc["paths"]["/v1/import"]["post"]
    assert operation["security"] == [{"WriteKey": []}]
    assert operation["requestBody"] == doc["paths"]["/v1/batch"]["post"]["requestBody"]


async def test_the_path_of_segment_mobile_libraries_stores_a_batch(client, sessions, write_key):
    # As analytics-kotlin and analytics-swift send it: gzip, declared text/plain, the key in the body.
    body = {
        "batch": [_call("k-1", "Order Completed")],
        "sentAt": "2030-05-01T12:00:01Z",
        "writeKey": write_key,
    }
    response = await client.post(
        "/v1/b",
        content=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text  # was a 404: every batch lost
    async with sessions() as session:
        assert list(await session.scalars(select(Event.message_id))) == ["k-1"]
