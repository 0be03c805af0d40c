"""Segment HTTP Tracking API: what backend systems send.

Every request is all-or-nothing: it is read (gzip allowed, within Segment's size limits), parsed and
validated in full before anything is stored, and stored in one transaction.
"""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Request

from api.deps import basic_username, bearer_token
from domain.auth import service as auth
from domain.auth.schemas import KeyKind, Principal
from domain.db import transaction
from domain.errors import DomainError, Forbidden, Unauthorized
from domain.events import service as events
from domain.events.schemas import MAX_BATCH_BYTES, MAX_EVENT_BYTES, Accepted, Call, parse_batch, parse_call

router = APIRouter(prefix="/v1", tags=["ingestion"])

# A write key is checked against the database at most this often per process; revoking one takes
# effect within this many seconds. It keeps the key lookup off the hot path.
WRITE_KEY_CACHE_SECONDS = 10.0


class BadEvent(DomainError):
    status_code = 400
    code = "invalid_event"


class TooLarge(DomainError):
    status_code = 400
    code = "too_large"


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


async def _read(request: Request, limit: int) -> bytes:
    """The request body, un-gzipped, refusing anything beyond ``limit`` bytes without buffering it."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge({"field": "body", "problem": f"the body exceeds the limit of {_kb(limit)}"})
        chunks.append(chunk)
    body = b"".join(chunks)
    if request.headers.get("content-encoding", "").strip().lower() in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise DomainError(
                {"field": "body", "problem": f"Content-Encoding is gzip but the body is not: {exc}"},
                code="malformed_gzip",
            ) from exc
        if len(body) > limit or inflater.unconsumed_tail:
            raise TooLarge(
                {"field": "body", "problem": f"the uncompressed body exceeds the limit of {_kb(limit)}"}
            )
    return body


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DomainError(
            {"field": "body", "problem": f"not valid JSON: {exc}"}, code="malformed_json"
        ) from exc
    if not isinstance(body, dict):
        raise BadEvent([{"field": "body", "problem": "expected a JSON object"}])
    return body


async def _source(request: Request, body: dict[str, Any]) -> Principal:
    body_key = body.get("writeKey") if isinstance(body.get("writeKey"), str) else None
    key = basic_username(request) or bearer_token(request) or body_key
    if not key:
        raise Unauthorized("send the source's write key as the HTTP Basic username or as writeKey")
    cache: dict[str, tuple[float, Principal | None]] = request.app.state.__dict__.setdefault(
        "write_key_cache", {}
    )
    hit = cache.get(key)
    if hit is not None and hit[0] > time.monotonic():
        principal = hit[1]
    else:
        async with transaction(request.app.state.sessions) as session:
            principal = await auth.authenticate(session, key)
        if principal is not None:
            cache[key] = (time.monotonic() + WRITE_KEY_CACHE_SECONDS, principal)
    if principal is None:
        raise Unauthorized("unknown or revoked write key")
    if principal.kind is not KeyKind.write:
        raise Forbidden("ingestion takes a source write key, not a management key")
    return principal


async def _store(request: Request, calls: list[Call], source: Principal) -> None:
    settings = request.app.state.settings
    purchase = events.PurchaseRule(settings.purchase_event, settings.revenue_property)
    await request.app.state.ingestor.store(calls, source_key_id=source.key_id, purchase=purchase)


def _single(kind: str):
    async def endpoint(request: Request) -> Accepted:
        body = _json(await _read(request, MAX_EVENT_BYTES))
        source = await _source(request, body)
        call, problems = parse_call(kind, {**body, "type": kind})
        if problems:
            raise BadEvent(problems)
        await _store(request, [call], source)  # type: ignore[list-item]
        return Accepted()

    return endpoint


SUMMARIES = {
    "identify": "Record who the customer is (traits merge into the profile)",
    "track": "Record an action the customer performed",
    "page": "Record a web page view",
    "screen": "Record a mobile screen view",
    "group": "Record the group (account, company) the customer belongs to",
    "alias": "Merge a previous id (e.g. an anonymous visitor) into a userId",
}
for _kind, _summary in SUMMARIES.items():
    router.add_api_route(
        f"/{_kind}",
        _single(_kind),
        methods=["POST"],
        response_model=Accepted,
        summary=_summary,
        name=f"ingest_{_kind}",
    )


@router.post("/batch", response_model=Accepted, summary="Several calls of any type in one request")
async def batch(request: Request) -> Accepted:
    raw = await _read(request, MAX_BATCH_BYTES)
    body = _json(raw)
    source = await _source(request, body)
    items = body.get("batch")
    if isinstance(items, list) and len(raw) > MAX_EVENT_BYTES:
        oversize = [
            {
                "index": i,
                "field": "body",
                "problem": f"the call is {_kb(n)}; the limit is {_kb(MAX_EVENT_BYTES)}",
            }
            for i, item in enumerate(items)
            if (n := len(json.dumps(item, separators=(",", ":")).encode())) > MAX_EVENT_BYTES
        ]
        if oversize:
            raise TooLarge(oversize)
    calls, problems = parse_batch(body)
    if problems:
        raise BadEvent(problems)
    await _store(request, calls, source)
    return Accepted()
