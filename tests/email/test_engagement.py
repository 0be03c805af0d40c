"""Signed open pixel and click redirect: recorded as customer events; only URLs of the message."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from urllib.parse import urlsplit

from sqlalchemy import select

from domain.db import transaction
from domain.email import service as email
from domain.email import tracking
from domain.email.delivery import MessageFactory
from domain.email.models import TemplateVersion
from domain.events.models import Event
from domain.segments import service as segments
from domain.segments.schemas import PreviewIn
from tests.email.helpers import add_customer, add_template

VERSION = TemplateVersion(
    template_id="sale",
    subject="Hi",
    html='<p><a href="https://shop.example/sale?x=1&amp;y=2">Sale</a> '
    '<a href="mailto:help@acme.example">Help</a></p>',
    text=None,
    layout="base",
    category="marketing",
    subscription_group=None,
    variants={},
)


async def _events(sessions, name):
    async with transaction(sessions) as session:
        return list(await session.scalars(select(Event).where(Event.name == name)))


async def test_clicks_and_opens_are_recorded_once_and_redirect_only_to_message_links(
    settings, sessions, client
):
    cid = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    factory = MessageFactory(settings)
    customer = {"id": cid, "email": "ann@example.com", "traits": {}}
    preview = factory.make(VERSION, customer, idempotency_key="broadcast/x/1", track=False).rendered.html
    assert "https://shop.example/sale" in preview  # previews keep the original link
    sent = factory.make(VERSION, customer, idempotency_key="broadcast/x/1").data
    body = BytesParser(policy=policy.default).parsebytes(sent).get_body(("html",)).get_content()
    assert "https://shop.example/sale" not in body and "mailto:help@acme.example" in body
    click_url = re.search(r'href="([^"]+/c/[^"]+)"', body).group(1)
    open_url = re.search(r'<img src="([^"]+/o/[^"]+)"', body).group(1)
    for _ in range(2):
        r = await client.get(urlsplit(click_url).path)
        assert r.status_code == 302 and r.headers["location"] == "https://shop.example/sale?x=1&y=2"
        r = await client.get(urlsplit(open_url).path)
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    [clicked] = await _events(sessions, "Email Link Clicked")
    assert clicked.customer_id == cid and clicked.properties["url"] == "https://shop.example/sale?x=1&y=2"
    [opened] = await _events(sessions, "Email Opened")
    assert opened.customer_id == cid
    # Segments see the engagement per template: "clicked the sale email" selects Ann.
    async with transaction(sessions) as session:
        found = await segments.preview(
            session, PreviewIn(rule={"message": "clicked", "template_id": "sale", "within_days": 7})
        )
        other = await segments.preview(session, PreviewIn(rule={"message": "opened", "template_id": "other"}))
    assert (found.count, other.count) == (1, 0)


async def test_tampered_click_token_never_redirects(settings, sessions, client):
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    secret = settings.secret_key.get_secret_value()
    good = tracking.click_token(secret, cid, "ref", "https://shop.example/")
    forged = tracking.click_token("another-secret-another-secret-xx", cid, "ref", "https://evil.example/")
    mac = good.split(".")[1]
    evil_body = forged.split(".")[0]
    for bad in (forged, f"{evil_body}.{mac}", "nonsense"):
        r = await client.get(f"/c/{bad}")
        assert r.status_code == 403 and "location" not in r.headers
    assert await _events(sessions, "Email Link Clicked") == []


async def test_a_password_reset_link_goes_straight_to_its_page_and_one_sent_tracked_still_redirects(
    settings, sessions, client
):
    """Transactional mail is not tracked; one sent before that (its link through the click redirect)
    still takes the customer to the page, and the link, a credential, is kept in no event."""
    reset = "https://app.example/reset?token=s3cret"
    await add_template(
        sessions, id="reset", category="transactional", subject="Reset", html=f'<a href="{reset}">Reset</a>'
    )
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    async with transaction(sessions) as session:
        version = await email.get_version(session, "reset", 1)
    customer = {"id": cid, "email": "ann@example.com", "traits": {}}
    sent = MessageFactory(settings).make(version, customer, idempotency_key="journey/r/1").data
    body = BytesParser(policy=policy.default).parsebytes(sent).get_body(("html",)).get_content()
    assert f'href="{reset}"' in body and "/c/" not in body and "/o/" not in body

    secret = settings.secret_key.get_secret_value()
    old_link = tracking.click_token(secret, cid, tracking.message_ref("journey/r/0", "reset"), reset)
    r = await client.get(f"/c/{old_link}")
    assert r.status_code == 302 and r.headers["location"] == reset
    assert await _events(sessions, "Email Link Clicked") == []


def _tracked(url: str, base: str) -> bool:
    html = tracking.track_links(f'<a href="{url}">x</a>', base=base, secret="s", customer_id=1, ref="r~t")
    return html.startswith(f'<a href="{base}/c/')


def test_a_link_that_only_begins_like_the_public_url_is_tracked():
    # another site, or another path of the same one: clicks on them went unrecorded
    assert _tracked("https://acme.com.au/offer", base="https://acme.com")
    assert _tracked("https://acme.community/", base="https://acme.com")
    assert _tracked("https://acme.com/mail-offers", base="https://acme.com/mail")
    assert _tracked("https://acme.com/", base="https://acme.com/mail")
    # this API's own links (unsubscribe, preferences) stay as they are
    for base in ("https://acme.com", "https://acme.com/mail"):
        for own in (base, f"{base}/u/abc", f"{base}?x=1", f"{base}#top"):
            assert not _tracked(own, base), own


async def test_a_click_link_we_did_not_sign_shows_the_link_pages_not_valid(client):
    forged = tracking.click_token("another-secret-another-secret-xx", 1, "ref", "https://evil.example/")
    page = await client.get(f"/c/{forged}")
    assert page.status_code == 403 and "location" not in page.headers
    assert page.headers["content-type"].startswith("text/html")
    # The look and headers of the unsubscribe and preference pages, with the reason in words.
    unsubscribe = await client.get("/u/x.y")
    assert page.headers["cache-control"] == unsubscribe.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert "<title>Link not valid</title>" in page.text and "<style>" in page.text
    assert "The link&#39;s signature does not match." in page.text
