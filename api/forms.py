"""Form bodies of the public pages (preferences, CSAT), read by the page itself, never by FastAPI, so
that whatever a browser, an extension or a bot posts gets the page's own answer."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request

from api.bodies import read_capped

# Far more than any of the pages' forms (a preference page of a thousand groups is about 50 KB).
MAX_FORM_BYTES = 65536


async def read_form(request: Request, *, max_fields: int | None = None) -> dict[str, list[str]] | None:
    """The urlencoded form, or None when it is longer than ``MAX_FORM_BYTES`` (refused whole: a form
    cut short would lose the ticks after the cut; and never buffered beyond the limit) or has more
    than ``max_fields`` fields. Text that is not UTF-8 reads as U+FFFD."""
    body = await read_capped(request, MAX_FORM_BYTES)
    if body is None:
        return None
    try:
        return parse_qs(body.decode("utf-8", "replace"), max_num_fields=max_fields)
    except ValueError:  # more fields than max_fields
        return None
