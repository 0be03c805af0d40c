"""Form bodies of the public pages (preferences, CSAT), read by the page itself, never by FastAPI, so
that whatever a browser, an extension or a bot posts gets the page's own answer."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request

# Far more than any of the pages' forms (a preference page of a thousand groups is about 50 KB).
MAX_FORM_BYTES = 65536


async def read_form(request: Request, *, max_fields: int | None = None) -> dict[str, list[str]] | None:
    """The urlencoded form, or None when it is longer than ``MAX_FORM_BYTES`` (refused whole: a form
    cut short would lose the ticks after the cut; and never buffered beyond the limit) or has more
    than ``max_fields`` fields. Text that is not UTF-8 reads as U+FFFD."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
    try:
        return parse_qs(b"".join(chunks).decode("utf-8", "replace"), max_num_fields=max_fields)
    except ValueError:  # more fields than max_fields
        return None
