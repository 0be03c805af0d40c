"""An unsubscribe from all marketing belongs to the person, not only to the address they had: a new
address, no address at the time, or a merge with another profile does not bring marketing back; only
their own re-subscribe on the preference page does."""

from __future__ import annotations

from sqlalchemy import select

from domain.customers.models import Customer
from domain.db import transaction
from domain.email.delivery import MessageFactory
from domain.email.models import Message
from domain.segments import service as segments
from domain.segments.schemas import SegmentIn
from domain.subscriptions import service as subscriptions
from tests.email.helpers import add_customer, opened_preferences
from tests.email.test_journey_unsubscribe import onboarding_running
from tests.email.test_merged_links import FORM, _merge

MARKETING_TO_ALL = "unsubscribed from all marketing"


async def _identify(client, write_key, user_id: str, email: str) -> None:
    body = {"userId": user_id, "traits": {"email": email}}
    r = await client.post("/v1/identify", auth=(write_key, ""), json=body)
    assert r.status_code == 200, r.text


async def _customer_id(sessions, user_id: str) -> int:
    async with sessions() as session:
        return await session.scalar(select(Customer.id).where(Customer.user_id == user_id))


async def _blocked(sessions, customer_id: int, address: str, category: str = "marketing") -> dict:
    async with transaction(sessions) as session:
        return await subscriptions.blocked(session, {customer_id: address}, category, "newsletter")


async def _one_click(client, settings, customer_id: int) -> None:
    links = MessageFactory(settings)
    url = links.unsubscribe_url(customer_id, None).removeprefix(links._base)
    r = await client.post(url, content="List-Unsubscribe=One-Click", headers=FORM)
    assert r.status_code == 200, r.text


async def test_a_new_address_gets_no_marketing_after_an_unsubscribe_from_all(
    settings, sessions, client, capture, marketer_headers, write_key
):
    cid = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    async with onboarding_running(settings, sessions, cid) as handle:
        await capture.wait_for_count(1)
        # Ann follows the first email's "unsubscribe from all" link, then gives the shop a new address.
        await _one_click(client, settings, cid)
        await _identify(client, write_key, "ann@example.com", "ann@new.example.com")
        result = await handle.result()  # three days pass in skipped time
    assert result.path == ["welcome", "wait", "followup", "done"]
    assert capture.handler.received == 1  # nothing reached the new address
    async with sessions() as session:
        skipped = (await session.scalars(select(Message).where(Message.status == "skipped"))).all()
    assert [m.error for m in skipped] == [MARKETING_TO_ALL]
    prefs = (await client.get(f"/api/customers/{cid}/subscriptions", headers=marketer_headers)).json()
    assert prefs["email"] == "ann@new.example.com" and prefs["unsubscribed_from_all"] is True
    # Transactional email still goes; a segment of customers marketing may reach leaves Ann out, in
    # both evaluators.
    assert await _blocked(sessions, cid, "ann@new.example.com", "transactional") == {}
    async with transaction(sessions) as session:
        await segments.create(
            session, SegmentIn(id="reachable", name="Reachable", rule={"subscription": "*"})
        )
        assert await segments.member_ids(session, "reachable", 0, 10) == []
        assert await segments.matches(session, "reachable", cid) is False


async def test_an_unsubscribe_from_all_without_an_address_holds_once_one_is_added(
    settings, sessions, client, write_key
):
    await _identify(client, write_key, "bo", "bo@example.com")
    cid = await _customer_id(sessions, "bo")
    async with transaction(sessions) as session:  # the address is removed, e.g. by a data clean-up
        (await session.get(Customer, cid)).email = None
    await _one_click(client, settings, cid)
    await _identify(client, write_key, "bo", "bo@example.org")
    assert await _blocked(sessions, cid, "bo@example.org") == {cid: MARKETING_TO_ALL}


async def test_a_profile_merged_with_one_that_unsubscribed_from_all_gets_no_marketing(
    settings, sessions, client, marketer_headers
):
    visitor = await add_customer(sessions, email="cy@example.com", traits={})
    known = await add_customer(sessions, email="cy.work@example.com", traits={})
    await _one_click(client, settings, visitor)
    await _merge(sessions, visitor, known)
    assert await _blocked(sessions, known, "cy.work@example.com") == {known: MARKETING_TO_ALL}


async def test_re_subscribing_on_the_preference_page_lifts_it_for_every_address(
    settings, sessions, client, marketer_headers, write_key
):
    await _identify(client, write_key, "di", "di@example.com")
    cid = await _customer_id(sessions, "di")
    await _one_click(client, settings, cid)
    await _identify(client, write_key, "di", "di@new.example.com")
    links = MessageFactory(settings)
    page = links.preferences_url(cid).removeprefix(links._base)
    opened = await opened_preferences(client, page)
    r = await client.post(page, content=opened, headers=FORM)  # "unsubscribe from all" unticked
    assert r.status_code == 200 and "Saved" in r.text
    assert await _blocked(sessions, cid, "di@new.example.com") == {}
    prefs = (await client.get(f"/api/customers/{cid}/subscriptions", headers=marketer_headers)).json()
    assert prefs["unsubscribed_from_all"] is False
