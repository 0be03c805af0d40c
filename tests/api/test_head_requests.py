"""Mail security scanners and link checkers send HEAD to the links of an email: each answers with the
status and headers its GET has, no body, and records nothing: no unsubscribe (RFC 8058: only the
one-click POST does), no click, no open, no rating."""

from __future__ import annotations

from sqlalchemy import func, select

from domain.cases import service as cases
from domain.cases.models import Case
from domain.cases.schemas import Outcome
from domain.db import transaction
from domain.email import tracking
from domain.events.models import Event
from domain.subscriptions import service as subscriptions
from tests.cases.helpers import make_agent, make_customer, make_team, open_case
from tests.email.helpers import add_customer

# What a HEAD must answer alike; the body's length too, as Content-Length.
SAME = ("content-type", "content-length", "location", "cache-control", "x-frame-options", "allow")


async def _head_as_get(client, path: str, status: int):
    head = await client.head(path)
    get = await client.get(path)
    assert (head.status_code, get.status_code) == (status, status), get.text
    assert {name: head.headers.get(name) for name in SAME} == {name: get.headers.get(name) for name in SAME}
    assert head.content == b""
    return head


async def _events(sessions, name: str) -> int:
    async with transaction(sessions) as session:
        return await session.scalar(select(func.count()).select_from(Event).where(Event.name == name))


async def test_head_of_an_unsubscribe_link_answers_as_its_page_and_never_unsubscribes(
    client, sessions, settings
):
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    secret = settings.secret_key.get_secret_value()
    unsubscribe = f"/u/{subscriptions.unsubscribe_token(secret, cid, None)}"
    preferences = f"/preferences/{subscriptions.preferences_token(secret, cid)}"
    for path in (unsubscribe, preferences):
        head = await _head_as_get(client, path, 200)
        assert head.headers["content-type"].startswith("text/html")
    async with transaction(sessions) as session:
        assert not (await subscriptions.preferences(session, cid)).unsubscribed_from_all
    # The one-click POST still does (so the check above could see an unsubscribe).
    assert (await client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})).status_code == 200
    async with transaction(sessions) as session:
        assert (await subscriptions.preferences(session, cid)).unsubscribed_from_all
    await _head_as_get(client, "/u/NDI6Kg.not-our-signature", 403)


async def test_head_of_a_click_or_the_pixel_records_no_click_or_open(client, sessions, settings):
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    secret = settings.secret_key.get_secret_value()
    click = f"/c/{tracking.click_token(secret, cid, 'broadcast/1/1~sale', 'https://shop.example/sale')}"
    pixel = f"/o/{tracking.open_token(secret, cid, 'broadcast/1/1~sale')}"
    head = await client.head(click)
    assert head.status_code == 302 and head.headers["location"] == "https://shop.example/sale"
    head = await client.head(pixel)
    assert head.status_code == 200 and head.headers["content-type"] == "image/gif"
    assert head.headers["content-length"] == str(len(tracking.PIXEL_GIF))
    assert (await _events(sessions, tracking.CLICKED), await _events(sessions, tracking.OPENED)) == (0, 0)
    # The GET the person sends records each (once), with the headers the HEAD showed.
    await _head_as_get(client, click, 302)
    await _head_as_get(client, pixel, 200)
    assert (await _events(sessions, tracking.CLICKED), await _events(sessions, tracking.OPENED)) == (1, 1)
    await _head_as_get(client, "/c/eyJjIjo0Mn0.not-our-signature", 403)
    await _head_as_get(client, "/o/eyJjIjo0Mn0.not-our-signature", 403)


async def test_head_of_a_rating_link_answers_as_its_page_and_records_no_rating(client, sessions, settings):
    await make_team(sessions, "care")
    agent = await make_agent(sessions, "ann", "care")
    case_id = await open_case(sessions, await make_customer(sessions, "u1"), "care")
    actor = cases.Actor(agent["id"], ["care"])
    async with transaction(sessions) as session:
        await cases.claim(session, actor, case_id)
        await cases.resolve(session, settings, actor, case_id, Outcome.solved, "")
    path = cases.csat_url(settings, case_id).removeprefix(settings.resolved_public_url)
    await _head_as_get(client, f"{path}&rating=5", 200)
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating is None
    await _head_as_get(client, f"/csat/{case_id}?sig=wrong", 404)
