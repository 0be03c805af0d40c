"""Segment HTTP Tracking API: what backend systems send.

Every request is all-or-nothing: it is read (gzip allowed, within Segment's size limits), parsed and
validated in full before anything is stored, and stored in one transaction.
"""

from __future__ import annotations

import contextlib
import re
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pydantic_core
from fastapi import APIRouter, Request, Response

from api.bodies import read_capped
from api.deps import basic_username, bearer_token, revoked_keys
from domain.auth import service as auth
from domain.auth.schemas import KeyKind, Principal
from domain.db import transaction
from domain.errors import DomainError, Forbidden, Unauthorized
from domain.events.schemas import (
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    Accepted,
    MalformedJSON,
    nul_path,
    parse_batch,
    parse_call,
)
from domain.events.service import PurchaseRule, Submission

router = APIRouter(prefix="/v1", tags=["ingestion"])

# A write key is checked against the database at most this often per process; revoking one takes
# effect at once in the process that revoked it, within this many seconds in the others.
# It keeps the key lookup off the hot path.
WRITE_KEY_CACHE_SECONDS = 10.0


class BadEvent(DomainError):
    status_code = 400
    code = "invalid_event"


class TooLarge(DomainError):
    status_code = 400
    code = "too_large"


# What every accepted request answers (documented by the Accepted model), sent as ready bytes.
ACCEPTED = b'{"success":true}'


def _accepted() -> Response:
    return Response(ACCEPTED, media_type="application/json")


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


async def _read(request: Request, limit: int) -> bytes:
    """The request body, un-gzipped, refusing anything beyond ``limit`` bytes without buffering it."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        # Read as plain JSON, a br or deflate body was refused as "not UTF-8 text", which misleads.
        raise DomainError(
            {"field": "Content-Encoding", "problem": f"{encoding!r} is not supported: send gzip or none"},
            code="unsupported_encoding",
        )
    body = await read_capped(request, limit)
    if body is None:
        raise TooLarge({"field": "body", "problem": f"the body exceeds the limit of {_kb(limit)}"})
    if encoding in ("gzip", "x-gzip"):
        return _gunzip(body, limit)
    return body


def _malformed_gzip(problem: str) -> DomainError:
    return DomainError(
        {"field": "body", "problem": f"Content-Encoding is gzip but {problem}"}, code="malformed_gzip"
    )


def _gunzip(body: bytes, limit: int) -> bytes:
    """The body's gzip members inflated one after another, as gunzip reads them, up to ``limit`` bytes.
    Each must end with its trailer: there its checksum is checked, so a body cut short or damaged on
    the way is refused rather than read as far as it goes."""
    out = b""
    while body:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(body, limit + 1 - len(out))  # never 0 (which means no limit)
        except zlib.error as exc:
            raise _malformed_gzip(f"the body is not: {exc}") from exc
        if len(out) > limit or inflater.unconsumed_tail:
            raise TooLarge(
                {"field": "body", "problem": f"the uncompressed body exceeds the limit of {_kb(limit)}"}
            )
        if not inflater.eof:
            raise _malformed_gzip("the gzip data ends early (the body was cut short)")
        body = inflater.unused_data
    return out


def _malformed(raw: bytes, problem: str) -> DomainError:
    """The body could not be parsed: why. A body that is not UTF-8 (as JSON must be), which orjson
    names "surrogates not allowed", is told apart only here, once parsing failed: off the hot path."""
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        problem = f"the body is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        if raw.startswith(b"\x1f\x8b"):  # gzip's magic number
            problem += "; it looks gzip-compressed: send it with Content-Encoding: gzip"
        return DomainError({"field": "body", "problem": problem}, code="malformed_json")
    return DomainError({"field": "body", "problem": f"not valid JSON: {problem}"}, code="malformed_json")


# 19 digits in a row: where an integer beyond 64 bits may be (a longer run inside a string is harmless).
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)  # refuses NaN, Infinity and 1e400, which JSON has not
    except orjson.JSONDecodeError as exc:
        raise _malformed(raw, str(exc)) from exc
    if _LONG_DIGITS.search(raw):
        # orjson reads an integer beyond 64 bits as a float, silently changing it; pydantic's parser
        # keeps it exact, so it is refused when written (``_writable``), as it is in a batch. Past its
        # 200 levels of nesting it refuses the body: orjson's reading stands, as deep as it is.
        with contextlib.suppress(ValueError):
            body = pydantic_core.from_json(raw)
    if not isinstance(body, dict):
        raise BadEvent([{"field": "body", "problem": "expected a JSON object"}])
    return body


def _storable(
    raw: bytes,
    items: Callable[[], list[Any]] | None = None,
    body: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Refuse text no database can store: the NUL character. Searching the raw body is cheap; only a
    body that may hold one is parsed, to name the calls (``items``, for a batch, whose ``body`` holds
    what all its calls share)."""
    if b"\\u0000" not in raw:
        return
    problem = "contains the NUL character (\\u0000), which cannot be stored"
    if items is None:
        if field := nul_path(_json(raw)):
            raise BadEvent([{"field": field, "problem": problem}])
        return
    problems = [
        {"index": i, "field": field, "problem": problem}
        for i, item in enumerate(items())
        if (field := nul_path(item))
    ]
    shared = {key: value for key, value in body().items() if key != "batch"} if body else {}
    if field := nul_path(shared):  # the batch's own context and sentAt, applied to each call
        problems.append({"field": field, "problem": problem})
    if problems:
        raise BadEvent(problems)


async def _source(request: Request, body: Callable[[], dict[str, Any]]) -> Principal:
    """The source whose write key the request carries: in the Authorization header, or as ``writeKey``
    in the body (parsed for it only then)."""
    key = basic_username(request) or bearer_token(request)
    if not key:
        body_key = body().get("writeKey")
        key = body_key if isinstance(body_key, str) else None
    if not key:
        raise Unauthorized("send the source's write key as the HTTP Basic username or as writeKey")
    cache: dict[str, tuple[float, Principal | None]] = request.app.state.__dict__.setdefault(
        "write_key_cache", {}
    )
    hit = cache.get(key)
    if hit is not None and hit[0] > time.monotonic() and hit[1].key_id not in revoked_keys(request):
        principal = hit[1]
    else:
        async with transaction(request.app.state.sessions) as session:
            principal = await auth.authenticate(session, key)
        if principal is not None:
            cache[key] = (time.monotonic() + WRITE_KEY_CACHE_SECONDS, principal)
    if principal is None:
        raise Unauthorized("unknown or revoked write key")
    if principal.kind is not KeyKind.write:
        raise Forbidden(f"ingestion takes a source write key, not a {principal.kind} key")
    return principal


def _unwritable(exc: TypeError) -> str:
    """Why orjson could not write a value: a number beyond 64 bits, or JSON nested too deeply."""
    if "Integer" in str(exc):
        return "holds an integer beyond 64 bits, which cannot be stored; send it as a string"
    return "nested too deeply (at most 250 levels)"


def _writable(submission: Submission, batch: bool) -> None:
    """Refuse JSON that cannot be written (nested deeper than about 250 levels, or an integer beyond
    64 bits), naming each such call and field; the calls' JSON made here is the one the writer stores."""
    try:
        orjson.dumps([[submission.context]])  # a batch's own context, applied to each call
    except TypeError as exc:
        raise BadEvent([{"field": "context", "problem": _unwritable(exc)}]) from None
    try:
        submission.dumped_calls()
    except TypeError:
        problems = []
        for index, call in enumerate(submission.calls):
            for name in ("properties", "traits", "context"):
                try:
                    orjson.dumps([[getattr(call, name, None)]])
                except TypeError as exc:
                    problem = {"field": name, "problem": _unwritable(exc)}
                    problems.append({"index": index, **problem} if batch else problem)
        raise BadEvent(problems or [{"field": "body", "problem": "cannot be written as JSON"}]) from None


async def _store(request: Request, submission: Submission, *, batch: bool = False) -> None:
    _writable(submission, batch)
    await request.app.state.ingestor.store(submission)


def _purchase(request: Request) -> PurchaseRule:
    settings = request.app.state.settings
    return PurchaseRule(settings.purchase_event, settings.revenue_property)


def _single(kind: str):
    async def endpoint(request: Request) -> Response:
        raw = await _read(request, MAX_EVENT_BYTES)
        body = _json(raw)
        source = await _source(request, lambda: body)
        call, problems = parse_call(kind, {**body, "type": kind})
        if problems:
            raise BadEvent(problems)
        submission = Submission([call], source.key_id, _purchase(request))  # type: ignore[list-item]
        # Depth first: the NUL search below walks the call recursively, which a call nested near
        # orjson's 1024 levels took past Python's recursion limit (a 500).
        _writable(submission, batch=False)
        _storable(raw)
        await request.app.state.ingestor.store(submission)
        return _accepted()

    return endpoint


def _size(call: Any) -> int:
    """A batch call's size as JSON; 0 for one nested deeper than orjson writes, which parsing the
    batch refuses next, by name (measuring it raised: a 500)."""
    try:
        return len(orjson.dumps(call))
    except TypeError:
        return 0


@router.post("/batch", response_model=Accepted, summary="Several calls of any type in one request")
async def batch(request: Request) -> Response:
    raw = await _read(request, MAX_BATCH_BYTES)
    parsed: dict[str, Any] = {}

    def body() -> dict[str, Any]:  # the body as plain JSON, parsed only when a slow path needs it
        if not parsed:
            parsed.update(_json(raw))
        return parsed

    def items() -> list[Any]:
        calls = body().get("batch")
        return calls if isinstance(calls, list) else []

    source = await _source(request, body)
    if len(raw) > MAX_EVENT_BYTES:
        oversize = [
            {
                "index": i,
                "field": "body",
                "problem": f"the call is {_kb(n)}; the limit is {_kb(MAX_EVENT_BYTES)}",
            }
            for i, item in enumerate(items())
            if (n := _size(item)) > MAX_EVENT_BYTES
        ]
        if oversize:
            raise TooLarge(oversize)
    try:
        valid, problems = parse_batch(raw)
    except MalformedJSON as exc:
        raise _malformed(raw, str(exc)) from exc
    if problems:
        raise BadEvent(problems)
    _storable(raw, items, body)
    await _store(
        request,
        Submission(
            valid.batch, source.key_id, _purchase(request), context=valid.context, sent_at=valid.sentAt
        ),
        batch=True,
    )
    return _accepted()


# Segment's Ruby, Java and .NET libraries post their batches to /v1/import, the older name of /v1/batch
# (Java's default path ends with a slash: answered there, since a redirect to the path without it may
# lose the key, which HTTP clients drop when a proxy's redirect changes the scheme).
router.add_api_route(
    "/import", batch, methods=["POST"], response_model=Accepted, summary="The same as /v1/batch"
)
router.add_api_route("/import/", batch, methods=["POST"], response_model=Accepted, include_in_schema=False)
# ...and the Kotlin and Swift (mobile) libraries to /v1/b, with the key in the body.
router.add_api_route("/b", batch, methods=["POST"], response_model=Accepted, include_in_schema=False)

# After /batch, which is matched first: nearly all traffic is batches (routes are tried in order).
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
