"""Refuse text no database can store, before a route runs: NUL (PostgreSQL takes it neither in text nor
in JSON) and lone surrogates (not UTF-8 at all), in path and query parameters and in JSON bodies. The
answer is a 422 naming the field; without this check the database would refuse the write with a 500.
Ingestion (``/v1/``) has its own check, which names the event as Segment clients expect."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from domain.errors import InvalidInput

_PROBLEM = "contains a NUL character or a lone surrogate, which no database can store"


def _bad(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _first_bad(value: Any, path: str) -> str | None:
    """The dotted path of the first unstorable string in parsed JSON (keys included), or None."""
    if isinstance(value, str):
        return path or "body" if _bad(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if _bad(str(key)):
                return inner
            found = _first_bad(item, inner)
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_bad(item, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


async def refuse_unstorable_text(request: Request) -> None:
    for name, value in [*request.path_params.items(), *request.query_params.items()]:
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
    field = _first_bad(parsed, "")
    if field:
        raise InvalidInput({"field": field, "problem": _PROBLEM})
