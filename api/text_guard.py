"""Refuse what no database can store, before a route runs: NUL (PostgreSQL takes it neither in text nor
in JSON) and lone surrogates (not UTF-8 at all), in path and query parameters and in JSON bodies, and
the NaN and Infinity numbers, which Python's JSON parser takes but JSON has not. The answer is a 422
naming the field; without this check the database would refuse the write with a 500 (or a NaN would be
stored as null). Ingestion (``/v1/``) has its own check, which names the event as Segment clients
expect."""

from __future__ import annotations

import json
import math

from fastapi import Request

from domain.errors import InvalidInput
from domain.json_strings import first_string

_PROBLEM = "contains a NUL character or a lone surrogate, which no database can store"
_NOT_FINITE = "not a finite number (NaN, Infinity, or beyond what a float holds), which JSON cannot carry"


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
    # Whatever the Content-Type says: FastAPI reads JSON under it in any letter case.
    # Management writes are few and small, so parsing each body once more here costs little.
    body = await request.body()  # read once: the route's own parsing reuses it
    if not body:
        return
    try:
        parsed = json.loads(body, parse_constant=_NonFinite, parse_float=_finite)
    except (ValueError, RecursionError):
        return  # the route answers malformed JSON itself
    try:
        number = first_string(parsed, lambda text: isinstance(text, _NonFinite))
        text = first_string(parsed, _bad)
    except RecursionError:
        raise InvalidInput({"field": "body", "problem": "nested too deeply"}) from None
    if number:
        raise InvalidInput({"field": number, "problem": _NOT_FINITE})
    if text:
        raise InvalidInput({"field": text, "problem": _PROBLEM})


class _NonFinite(str):
    """Where the body said NaN, Infinity or -Infinity, or a number too big for a float such as 1e400
    (kept as its text, found by its type)."""


def _finite(text: str) -> float | str:
    number = float(text)
    return number if math.isfinite(number) else _NonFinite(text)
