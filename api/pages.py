"""What the pages and links customers reach from an email share: the look of ``templates/pages``, its
headers, the "this link is not valid" page, and HEAD answered as GET.

Every page is rendered by an autoescaping Jinja environment, so nothing from the database or the URL
can inject HTML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader

from domain.email.rendering import TEMPLATES_DIR

_pages = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


def page(name: str, status: int = 200, **values) -> HTMLResponse:
    html = _pages.get_template(f"pages/{name}.html").render(**values)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def invalid_link(status: int, reason: str) -> HTMLResponse:
    """The page for a link we did not send: a bad signature, a token that names nothing."""
    return page("invalid_link", status, reason=reason)


def broken_link(status: int) -> HTMLResponse:
    """The page for a path or method no route of a link takes, or text no database stores (api.errors)."""
    return invalid_link(status, "this address leads to no page (the link was cut short or changed)")


def get_and_head(router: APIRouter, path: str, **kwargs: Any) -> Callable[[Callable], Callable]:
    """``@router.get``, and HEAD answered by the same endpoint (FastAPI adds no HEAD to a GET): mail
    security scanners and link checkers send HEAD and should see the status and headers a click would.
    The endpoint must record nothing for a HEAD (``request.method``); the server sends no body for it.
    HEAD stays out of the OpenAPI document, which would otherwise list each operation twice."""

    def register(endpoint: Callable) -> Callable:
        # A method none of the path's routes takes is a 405 whose Allow lists all of theirs (api.errors).
        router.get(path, **kwargs)(endpoint)
        router.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False, **kwargs)
        return endpoint

    return register
