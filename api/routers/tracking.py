"""Open pixel and click redirect: no credentials, a signed token in the URL.

A HEAD answers as the GET would and records nothing: mail security scanners and link checkers send it,
and no one opened or clicked."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import Session
from api.pages import get_and_head, invalid_link
from domain.email import tracking
from domain.subscriptions.tokens import BadToken

router = APIRouter(tags=["engagement"])
_NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def _secret(request: Request) -> str:
    return request.app.state.settings.secret_key.get_secret_value()


@get_and_head(router, "/o/{token}", summary="Open pixel (records Email Opened)")
async def open_pixel(token: str, request: Request, session: Session) -> Response:
    try:
        customer_id, ref = tracking.read_open(_secret(request), token)
    except BadToken:
        return Response(tracking.PIXEL_GIF, media_type="image/gif", status_code=403, headers=_NO_STORE)
    if request.method == "GET":
        await tracking.record(session, tracking.OPENED, customer_id, ref)
    return Response(tracking.PIXEL_GIF, media_type="image/gif", headers=_NO_STORE)


@get_and_head(router, "/c/{token}", summary="Click redirect (records Email Link Clicked)")
async def click(token: str, request: Request, session: Session) -> Response:
    try:
        customer_id, ref, url = tracking.read_click(_secret(request), token)
    except BadToken as exc:
        # never redirect on a token we did not sign: that would be an open redirect
        return invalid_link(403, str(exc))
    if request.method == "GET":
        await tracking.record(session, tracking.CLICKED, customer_id, ref, url)
    return RedirectResponse(url, status_code=302, headers=_NO_STORE)
