"""A signed link has exactly one spelling: another base64url spelling of the same signature bytes is
refused like any bad link, and the link as sent still works."""

from __future__ import annotations

import base64

import pytest

from domain.email import tracking
from domain.email.delivery import MessageFactory
from domain.subscriptions import tokens
from tests.email.helpers import add_customer

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _bytes(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _respellings(token: str) -> list[str]:
    """The token with its signature spelled otherwise, the same 16 bytes each time."""
    body, mac = token.split(".")
    # 16 bytes take 22 characters: the last one carries 2 bits and 4 unused ones, which sign sets to 0.
    last = ALPHABET[ALPHABET.index(mac[-1]) | 0b1111]
    # The standard alphabet's "+" for "-" (its "/" for "_" would change the route), and padding.
    spellings = [f"{body}.{mac[:-1]}{last}", f"{token}==", f"{body}.{mac.replace('-', '+')}"]
    spellings = [s for s in spellings if s != token]
    assert all(_bytes(s.split(".")[1]) == _bytes(mac) for s in spellings)
    return spellings


KINDS = ["unsubscribe page", "one-click unsubscribe", "preferences", "click", "open"]


def test_a_link_sent_by_an_earlier_release_still_verifies():
    """Signed by the release before spellings were checked: sign wrote the one spelling then too."""
    token = "NDI6bmV3c2xldHRlcg.ItABlkDi19TaGJ9gYXo4EA"
    assert tokens.verify("a-secret-of-thirty-two-characters", "unsubscribe", token) == "42:newsletter"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_respelled_signature_is_refused_like_any_bad_link_and_the_real_one_works(
    kind, client, sessions, settings
):
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    links = MessageFactory(settings)
    secret = settings.secret_key.get_secret_value()
    path, method, ok, token = {
        "unsubscribe page": ("/u", "GET", 200, links.unsubscribe_url(cid, None)),
        "one-click unsubscribe": ("/u", "POST", 200, links.unsubscribe_url(cid, None)),
        "preferences": ("/preferences", "GET", 200, links.preferences_url(cid)),
        "click": ("/c", "GET", 302, tracking.click_token(secret, cid, "ref", "https://shop.example/")),
        "open": ("/o", "GET", 200, tracking.open_token(secret, cid, "ref")),
    }[kind]
    token = token.rsplit("/", 1)[-1]
    body = token.split(".")[0]
    wrong_signature = f"{body}.{'A' * 22}"

    async def answer(t: str):
        form = "List-Unsubscribe=One-Click" if method == "POST" else None
        r = await client.request(method, f"{path}/{t}", content=form)
        return r.status_code, r.headers.get("location"), r.content

    refused = await answer(wrong_signature)
    assert refused[0] == 403
    for spelling in _respellings(token):
        assert await answer(spelling) == refused, spelling
    assert (await answer(token))[0] == ok
