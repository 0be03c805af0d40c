"""A link signed with the right secret but holding a payload the product never signs (a customer id that
is no number or beyond 64 bits, a field missing) is answered like a link with a bad signature: the page's
own "not valid", never a server error."""

from __future__ import annotations

import pytest

from domain.subscriptions import tokens
from tests.email.helpers import add_customer

CUSTOMER_IDS = ["abc", "9" * 40, str(2**63), "-1", " 7", ""]
# (purpose, payload around the customer id, method, path, the status of a real customer's link)
LINKS = {
    "unsubscribe page": ("unsubscribe", "{}:*", "GET", "/u", 200),
    "one-click unsubscribe": ("unsubscribe", "{}:*", "POST", "/u", 200),
    "preference page": ("preferences", "{}", "GET", "/preferences", 200),
    "saved preferences": ("preferences", "{}", "POST", "/preferences", 400),  # read: not the page's form
    "click": ("click", "{}|ref|https://shop.example/", "GET", "/c", 302),
    "open": ("open", "{}|ref", "GET", "/o", 200),
}
# Well-formed customer ids whose payload lacks a field.
SHAPELESS = {"unsubscribe": "7", "click": "7|ref", "open": "7"}


async def _answer(client, method: str, path: str, token: str):
    form = "List-Unsubscribe=One-Click" if method == "POST" else None
    r = await client.request(method, f"{path}/{token}", content=form)
    return r.status_code, r.headers.get("content-type"), r.headers.get("location"), r.text


def _bad_signature_answer(answer):
    """What a link with a wrong signature gets, but for the reason a page may give."""
    status, kind, location, text = answer
    return status, kind, location, text if kind.startswith("image/") else "This link is not valid" in text


@pytest.mark.parametrize("kind", LINKS)
async def test_a_signed_link_with_a_customer_id_no_customer_can_have_is_not_valid(
    kind, client, sessions, settings
):
    purpose, payload, method, path, ok = LINKS[kind]
    secret = settings.secret_key.get_secret_value()
    real = tokens.sign(
        secret, purpose, payload.format(await add_customer(sessions, email="a@x.example", traits={}))
    )
    assert (await _answer(client, method, path, real))[0] == ok
    refused = _bad_signature_answer(await _answer(client, method, path, f"{real.split('.')[0]}.{'A' * 22}"))
    assert refused[0] == 403
    for customer in CUSTOMER_IDS:
        token = tokens.sign(secret, purpose, payload.format(customer))
        assert _bad_signature_answer(await _answer(client, method, path, token)) == refused, customer
    if purpose in SHAPELESS:
        token = tokens.sign(secret, purpose, SHAPELESS[purpose])
        assert _bad_signature_answer(await _answer(client, method, path, token)) == refused
