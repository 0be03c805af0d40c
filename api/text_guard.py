"""Refuse text no database can store, before a route runs: NUL (PostgreSQL takes it neither in text nor
in JSON) and lone surrogates (not UTF-8 at all), in path and query parameters and in JSON bodies. The
answer is a 422 naming the field; without this check the database would refuse the write with a 500.
Ingestion (``/v1/``) has its own check, which names the event as Segment clients expect."""

from __future__ import annotations

import json

from fastapi import Request

from domain.errors import InvalidInput
from domain.json_strings import first_string

_PROBLEM = "contains a NUL character or a lone surrogate, which no database can store"


def _bad(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


async def refuse_unstorable_text(request: Request) -> None:
    for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        if isinstance(value, str) and _bad(value):
            raise InvalidInput({"field": name, "problem": _PROBLEM})
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    if "json" not in request.headers.get("content-type", ""):
        return
    body = await request.body()  # read once: the route's own parsing reuses it
    # Both can only come as JSON escapes (raw control characters are not JSON): most bodies have none.
    if b"\\u0000" not in body and b"\\ud" not in body.lower():
        return
    try:
        parsed = json.loads(body)
    except ValueError:
        return  # the route answers malformed JSON itself
    field = first_string(parsed, _bad)
    if field:
        raise InvalidInput({"field": field, "problem": _PROBLEM})
