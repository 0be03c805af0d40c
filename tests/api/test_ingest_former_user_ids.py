"""An ``alias`` whose previousId is a former userId: the old id keeps naming the customer it became,
through a chain of merges, so calls still sent under it (a backend not yet updated, a delayed retry)
land on that customer instead of starting a second profile of the same person."""

from sqlalchemy import select

from domain.auth.schemas import Role
from domain.customers.models import Customer
from domain.events.models import Event
from tests.conftest import make_key, rows_naming


async def _customers(sessions) -> list[Customer]:
    async with sessions() as session:
        return list(await session.scalars(select(Customer).order_by(Customer.id)))


async def _owners(sessions) -> dict[str, int]:
    async with sessions() as session:
        return dict((await session.execute(select(Event.message_id, Event.customer_id))).all())


def _track(message_id: str, who: dict, event: str = "Viewed", **properties) -> dict:
    return {"type": "track", "messageId": message_id, "event": event, "properties": properties, **who}


async def test_a_renamed_user_id_keeps_naming_the_customer(client, sessions, write_key):
    auth = (write_key, "")
    await client.post("/v1/track", json=_track("m1", {"userId": "ada@example.com"}, "Signed Up"), auth=auth)
    # The shop moves from email addresses to account numbers as userIds.
    response = await client.post(
        "/v1/alias", json={"userId": "acct-7", "previousId": "ada@example.com"}, auth=auth
    )
    assert response.status_code == 200, response.text
    late = _track("m2", {"userId": "ada@example.com"}, "Order Completed", revenue=20)
    assert (await client.post("/v1/track", json=late, auth=auth)).status_code == 200
    # It started a second profile of Ada under her old id, with her order.
    (ada,) = await _customers(sessions)
    assert ada.user_id == "acct-7" and (ada.event_count, ada.order_count) == (3, 1)
    assert set((await _owners(sessions)).values()) == {ada.id}
    admin = {"Authorization": f"Bearer {await make_key(sessions, role=Role.admin)}"}
    found = await client.get("/api/customers", params={"q": "ada@example.com"}, headers=admin)
    assert [c["id"] for c in found.json()["items"]] == [ada.id]
    # Erasing Ada leaves her former id nowhere.
    erased = await client.delete(f"/api/customers/{ada.id}", params={"reason": "asked"}, headers=admin)
    assert erased.status_code == 200, erased.text
    assert await rows_naming(sessions, "ada@example.com") == {}


async def test_a_merged_user_id_follows_a_chain_of_merges(client, sessions, write_key):
    auth = (write_key, "")
    batch = [_track(f"m-{u}", {"userId": u}) for u in ("u0", "u1", "u2")]
    assert (await client.post("/v1/batch", json={"batch": batch}, auth=auth)).status_code == 200
    for target, previous in (("u1", "u2"), ("u0", "u1")):  # u2 into u1, then u1 into u0
        response = await client.post("/v1/alias", json={"userId": target, "previousId": previous}, auth=auth)
        assert response.status_code == 200, response.text
    later = [
        _track("late-u2", {"userId": "u2"}),
        _track("late-u1", {"userId": "u1"}),
        {"type": "identify", "messageId": "login", "userId": "u2", "anonymousId": "visitor-9"},
        _track("visit", {"anonymousId": "visitor-9"}),
    ]
    assert (await client.post("/v1/batch", json={"batch": later}, auth=auth)).status_code == 200
    (u0,) = await _customers(sessions)
    assert u0.user_id == "u0" and u0.event_count == 9
    assert set((await _owners(sessions)).values()) == {u0.id}
