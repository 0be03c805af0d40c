"""Links in an email sent before its customer was merged into another profile (a visitor who later
logged in) still act for that person: unsubscribe, preferences, opens and clicks."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from urllib.parse import urlsplit

from sqlalchemy import select

from domain.customers import service as customers
from domain.db import transaction
from domain.email.delivery import MessageFactory
from domain.email.models import TemplateVersion
from domain.events.models import Event
from domain.subscriptions import service as subscriptions
from tests.email.helpers import add_customer, opened_preferences

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _merged(client, marketer_headers, sessions) -> tuple[int, int]:
    r = await client.post(
        "/api/subscription-groups", json={"id": "news", "name": "News"}, headers=marketer_headers
    )
    assert r.status_code == 201, r.text
    visitor = await add_customer(sessions, email="ann@example.com", traits={})
    known = await add_customer(sessions, email="ann.known@example.com", traits={})
    return visitor, known


async def _merge(sessions, visitor: int, known: int) -> None:
    async with transaction(sessions) as session:
        await customers.merge(session, source_id=visitor, target_id=known)


async def test_one_click_unsubscribe_from_before_a_merge_unsubscribes_the_merged_profile(
    client, marketer_headers, sessions, settings
):
    links = MessageFactory(settings)
    visitor, known = await _merged(client, marketer_headers, sessions)
    group_link = links.unsubscribe_url(visitor, "news").removeprefix(links._base)
    all_link = links.unsubscribe_url(visitor, None).removeprefix(links._base)
    await _merge(sessions, visitor, known)
    page = await client.get(group_link)
    assert page.status_code == 200 and "ann.known@example.com" in page.text
    r = await client.post(group_link, content="List-Unsubscribe=One-Click", headers=FORM)
    assert r.status_code == 200, r.text
    async with transaction(sessions) as session:
        blocked = await subscriptions.blocked(session, {known: "ann.known@example.com"}, "marketing", "news")
    assert blocked == {known: "unsubscribed from news"}
    r = await client.post(all_link, content="List-Unsubscribe=One-Click", headers=FORM)
    assert r.status_code == 200, r.text
    prefs = (await client.get(f"/api/customers/{known}/subscriptions", headers=marketer_headers)).json()
    assert prefs["unsubscribed_from_all"] is True


async def test_preference_page_from_before_a_merge_shows_and_saves_the_merged_profile(
    client, marketer_headers, sessions, settings
):
    links = MessageFactory(settings)
    visitor, known = await _merged(client, marketer_headers, sessions)
    url = links.preferences_url(visitor).removeprefix(links._base)
    await _merge(sessions, visitor, known)
    page = await client.get(url)
    assert page.status_code == 200 and "ann.known@example.com" in page.text
    opened = await opened_preferences(client, url)
    r = await client.post(url, content=opened, headers=FORM)  # every box unticked
    assert r.status_code == 200 and "Saved" in r.text
    prefs = (await client.get(f"/api/customers/{known}/subscriptions", headers=marketer_headers)).json()
    assert prefs["groups"] == [{"id": "news", "name": "News", "description": None, "subscribed": False}]


async def test_opens_and_clicks_from_before_a_merge_count_for_the_merged_profile(
    client, marketer_headers, sessions, settings
):
    visitor, known = await _merged(client, marketer_headers, sessions)
    version = TemplateVersion(
        template_id="sale",
        version=1,
        subject="Sale",
        html='<p><a href="https://shop.example/sale">Sale</a></p>',
        text=None,
        layout="base",
        category="marketing",
        subscription_group=None,
        variants={},
    )
    customer = {"id": visitor, "email": "ann@example.com", "traits": {}}
    sent = MessageFactory(settings).make(version, customer, idempotency_key="broadcast/m/1").data
    body = BytesParser(policy=policy.default).parsebytes(sent).get_body(("html",)).get_content()
    click_url = re.search(r'href="([^"]+/c/[^"]+)"', body).group(1)
    open_url = re.search(r'<img src="([^"]+/o/[^"]+)"', body).group(1)
    await _merge(sessions, visitor, known)
    assert (await client.get(urlsplit(click_url).path)).status_code == 302
    assert (await client.get(urlsplit(open_url).path)).status_code == 200
    async with transaction(sessions) as session:
        rows = (
            await session.execute(
                select(Event.name, Event.customer_id).where(
                    Event.name.in_(["Email Opened", "Email Link Clicked"])
                )
            )
        ).all()
    assert sorted(rows) == [("Email Link Clicked", known), ("Email Opened", known)]


async def test_links_of_an_erased_customer_answer_a_page_saying_nothing_is_kept(
    client, marketer_headers, sessions, settings
):
    links = MessageFactory(settings)
    ann, _ = await _merged(client, marketer_headers, sessions)
    unsubscribe = links.unsubscribe_url(ann, "news").removeprefix(links._base)
    preferences = links.preferences_url(ann).removeprefix(links._base)
    async with transaction(sessions) as session:
        await customers.hold_for_erasure(session, ann)
        await customers.erase(session, ann, by_key_id=None, reason="asked")

    answers = [
        await client.get(unsubscribe),
        await client.post(unsubscribe, content="List-Unsubscribe=One-Click", headers=FORM),
        await client.get(preferences),
        await client.post(preferences, content="", headers=FORM),
    ]

    # Pages, not the API's JSON; a mailbox provider's one-click POST gets its 2xx.
    assert [a.status_code for a in answers] == [410, 200, 410, 410], [a.text for a in answers]
    for answer in answers:
        assert answer.headers["content-type"].startswith("text/html")
        assert "We keep nothing about you any more" in answer.text
