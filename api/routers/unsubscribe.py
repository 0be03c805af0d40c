"""Pages customers reach from an email: one-click unsubscribe (RFC 8058) and the preference page.

No cookie or key: the signed token in the URL is the credential. The pages share their look and
headers with the other links of an email (api.pages).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute

from api.deps import Session
from api.forms import read_form
from api.mail import factory
from api.pages import get_and_head, invalid_link, page
from domain.subscriptions import service as subscriptions
from domain.subscriptions.tokens import BadToken


def _forgotten(status: int = 410) -> HTMLResponse:
    """The page for a link of an erased customer (as a page, not the API's JSON 404)."""
    return page("forgotten", status)


def _from_a_test() -> HTMLResponse:
    """The page for a link of a preview or test send, which acts for no customer."""
    return page("test_link")


def _secret(request: Request) -> str:
    return request.app.state.settings.secret_key.get_secret_value()


def _what(group_id: str) -> str:
    return "marketing email" if group_id == subscriptions.ALL_GROUPS else f"“{group_id}” email"


class _PageInstead(Exception):
    """Raised by a link's reader: the page the route answers instead of its own."""

    def __init__(self, page: HTMLResponse):
        self.page = page


class _SignedLinkRoute(APIRoute):
    """A route of a signed-link page, which answers a ``_PageInstead`` with that page."""

    def get_route_handler(self) -> Callable:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handle(request)
            except _PageInstead as instead:
                return instead.page

        return route


router = APIRouter(tags=["unsubscribe"], include_in_schema=True, route_class=_SignedLinkRoute)


def _read(request: Request, token: str, read: Callable):
    try:
        return read(_secret(request), token)
    except BadToken as exc:
        raise _PageInstead(invalid_link(403, str(exc))) from None


def _a_customer(customer_id: int) -> int:
    if customer_id == subscriptions.NO_CUSTOMER:
        # A 2xx, as RFC 8058 wants of a one-click POST; nothing to unsubscribe or save.
        raise _PageInstead(_from_a_test())
    return customer_id


def _unsubscribe_link(token: str, request: Request) -> tuple[int, str]:
    """The customer and subscription group of an unsubscribe link."""
    customer_id, group_id = _read(request, token, subscriptions.read_unsubscribe_token)
    return _a_customer(customer_id), group_id


def _preferences_link(token: str, request: Request) -> int:
    """The customer of a preference-page link."""
    return _a_customer(_read(request, token, subscriptions.read_preferences_token))


# What a signed link names; a bad link, or one of a test send (no customer), answers its own page.
UnsubscribeLink = Annotated[tuple[int, str], Depends(_unsubscribe_link)]
PreferencesLink = Annotated[int, Depends(_preferences_link)]


@get_and_head(router, "/u/{token}", response_class=HTMLResponse, summary="Unsubscribe confirmation page")
async def confirm_unsubscribe(token: str, link: UnsubscribeLink, request: Request, session: Session):
    """Shows a button; a GET (or HEAD) never unsubscribes: link scanners follow them (RFC 8058)."""
    customer_id, group_id = link
    try:
        prefs = await subscriptions.preferences(session, customer_id)
    except subscriptions.CustomerGone:
        return _forgotten()
    return page(
        "unsubscribe_confirm",
        what=_what(group_id),
        email=prefs.email,
        action=f"/u/{token}",
        preferences_url=factory(request).preferences_url(customer_id),
    )


@router.post("/u/{token}", response_class=HTMLResponse, summary="One-click unsubscribe (RFC 8058)")
async def one_click_unsubscribe(token: str, link: UnsubscribeLink, request: Request, session: Session):
    """Mailbox providers POST ``List-Unsubscribe=One-Click`` here; our confirmation page posts too."""
    customer_id, group_id = link
    try:
        await subscriptions.unsubscribe(session, customer_id, group_id, "one_click")
        prefs = await subscriptions.preferences(session, customer_id)
    except subscriptions.CustomerGone:
        return _forgotten(200)  # nothing more goes to them: the unsubscribe holds (RFC 8058 wants a 2xx)
    return page(
        "unsubscribe_done",
        what=_what(group_id),
        email=prefs.email,
        preferences_url=factory(request).preferences_url(customer_id),
    )


@get_and_head(router, "/preferences/{token}", response_class=HTMLResponse, summary="Preference page")
async def preference_page(token: str, customer_id: PreferencesLink, request: Request, session: Session):
    try:
        prefs = await subscriptions.preferences(session, customer_id)
    except subscriptions.CustomerGone:
        return _forgotten()
    return page("preferences", prefs=prefs, action=f"/preferences/{token}", saved=False)


def _shown(form: dict[str, list[str]]) -> tuple[dict[str, bool], bool] | None:
    """What the page showed when it was opened, from its hidden fields: one ``shown`` per group
    (``{id}=1`` ticked, ``{id}=0`` not) and ``shown_all``; None when they are missing or garbled.
    The person owns the link, so a forged value can do no more than their own tick."""
    shown_all = form.get("shown_all", [])
    if len(shown_all) != 1 or shown_all[0] not in ("0", "1"):
        return None
    shown: dict[str, bool] = {}
    for value in form.get("shown", []):
        group_id, equals, ticked = value.rpartition("=")
        if not equals or not group_id or ticked not in ("0", "1") or group_id in shown:
            return None
        shown[group_id] = ticked == "1"
    return shown, shown_all[0] == "1"


@router.post("/preferences/{token}", response_class=HTMLResponse, summary="Save preferences")
async def save_preferences(token: str, customer_id: PreferencesLink, request: Request, session: Session):
    form = await read_form(request) or {}  # one too long is no form: unreadable, as one garbled
    opened = _shown(form)
    try:
        if opened is None:  # not guessed at: nothing is saved (an erased person's link still says so)
            await subscriptions.preferences(session, customer_id)
            return page("unreadable_form", 400)
        prefs = await subscriptions.save_preferences(
            session,
            customer_id,
            set(form.get("group", [])),
            bool(form.get("unsubscribe_all")),
            shown=opened[0],
            shown_all=opened[1],
        )
    except subscriptions.CustomerGone:
        return _forgotten()
    return page("preferences", prefs=prefs, action=f"/preferences/{token}", saved=True)
