"""A field Segment's spec makes optional may come as JSON null (a client that writes every key of its
message, set or not): it means the field is absent, as Segment's own API reads it."""

from sqlalchemy import select

from domain.customers.models import Customer
from domain.events.models import Event


async def test_null_properties_traits_and_context_are_read_as_absent(client, sessions, write_key):
    auth = (write_key, "")
    unset = {"properties": None, "context": None, "timestamp": None, "messageId": None}
    batch = [
        {"type": "identify", "userId": "ann", "traits": {"email": "Ann@Example.com"}, "context": None},
        {"type": "track", "userId": "ann", "event": "Order Completed", **unset},
        {"type": "page", "userId": "ann", "name": None, "category": None, **unset},
        {"type": "screen", "userId": "ann", "name": "Home", **unset},
        {"type": "group", "userId": "ann", "groupId": "acme", "traits": None, "context": None},
        {"type": "identify", "userId": "ann", "traits": None, "context": None},
        {"type": "alias", "userId": "ann", "previousId": "visitor-1", "context": None},
    ]
    # The whole batch was refused: "properties: Input should be a valid dictionary", and so on.
    response = await client.post("/v1/batch", json={"batch": batch}, auth=auth)
    assert response.status_code == 200, response.text
    for path, call in [
        ("/v1/track", {"userId": "ann", "event": "Viewed", "properties": None, "context": None}),
        ("/v1/identify", {"userId": "ann", "traits": None}),
    ]:
        response = await client.post(path, json=call, auth=auth)
        assert response.status_code == 200, response.text

    async with sessions() as session:
        events = list(await session.scalars(select(Event).order_by(Event.id)))
        ann = await session.scalar(select(Customer).where(Customer.user_id == "ann"))
    assert len(events) == 9 and all(e.context == {} for e in events)
    by_type = {e.type: e for e in events}
    assert by_type["track"].properties == {} and by_type["page"].properties == {}
    assert by_type["group"].properties == {"groupId": "acme"} and by_type["group"].traits == {}
    assert ann.email == "ann@example.com" and ann.traits == {"email": "ann@example.com"}
    assert (ann.event_count, ann.order_count) == (9, 1)
