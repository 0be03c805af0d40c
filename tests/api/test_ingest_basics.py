"""The first slice of ingestion: track and identify store events, bad input stores nothing."""

from sqlalchemy import func, select

from domain.customers.models import Customer
from domain.events.models import Event, EventOutbox


async def _counts(sessions):
    async with sessions() as session:
        return tuple(
            [
                await session.scalar(select(func.count()).select_from(m))
                for m in (Event, EventOutbox, Customer)
            ]
        )


async def test_track_stores_the_event_and_queues_it_for_routing(client, sessions, write_key):
    response = await client.post(
        "/v1/track",
        auth=(write_key, ""),
        json={"userId": "ada", "event": "Signed Up", "properties": {"plan": "pro"}, "messageId": "m-1"},
    )
    assert response.status_code == 200, response.text
    async with sessions() as session:
        event = await session.scalar(select(Event))
    assert (event.name, event.user_id, event.properties) == ("Signed Up", "ada", {"plan": "pro"})
    assert await _counts(sessions) == (1, 1, 1)


async def test_identify_sets_traits_and_normalised_email(client, sessions, write_key):
    response = await client.post(
        "/v1/identify",
        auth=(write_key, ""),
        json={
            "userId": "ada",
            "traits": {"email": "Ada@Example.COM", "first_name": "Ada", "timezone": "Europe/Berlin"},
        },
    )
    assert response.status_code == 200
    async with sessions() as session:
        customer = await session.scalar(select(Customer))
    assert customer.email == "ada@example.com"
    assert customer.traits["first_name"] == "Ada"
    assert customer.timezone == "Europe/Berlin"


async def test_a_repeated_message_id_is_acknowledged_and_stored_once(client, sessions, write_key):
    body = {"userId": "ada", "event": "Signed Up", "messageId": "same"}
    for _ in range(3):
        assert (await client.post("/v1/track", auth=(write_key, ""), json=body)).status_code == 200
    assert await _counts(sessions) == (1, 1, 1)


async def test_track_without_any_id_is_400_naming_the_problem(client, sessions, write_key):
    response = await client.post("/v1/track", auth=(write_key, ""), json={"event": "Signed Up"})
    assert response.status_code == 400
    assert "userId or anonymousId" in str(response.json()["detail"])
    assert await _counts(sessions) == (0, 0, 0)


async def test_track_without_event_name_names_the_field(client, sessions, write_key):
    response = await client.post("/v1/track", auth=(write_key, ""), json={"userId": "ada"})
    assert response.status_code == 400
    assert response.json()["detail"][0]["field"] == "event"
    assert await _counts(sessions) == (0, 0, 0)


async def test_wrong_write_key_is_401_and_stores_nothing(client, sessions, write_key):
    response = await client.post("/v1/track", auth=("not-a-key", ""), json={"userId": "a", "event": "E"})
    assert response.status_code == 401
    assert await _counts(sessions) == (0, 0, 0)


async def test_write_key_in_body_is_accepted(client, sessions, write_key):
    response = await client.post("/v1/track", json={"userId": "a", "event": "E", "writeKey": write_key})
    assert response.status_code == 200
    assert await _counts(sessions) == (1, 1, 1)


async def test_malformed_json_is_400(client, sessions, write_key):
    response = await client.post(
        "/v1/track",
        auth=(write_key, ""),
        content=b'{"userId": "a", "event": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"
    assert await _counts(sessions) == (0, 0, 0)
