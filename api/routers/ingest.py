"""Segment HTTP Tracking API: what backend systems send."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from api.deps import Session, basic_username, bearer_token
from domain.auth import service as auth
from domain.auth.schemas import KeyKind, Principal
from domain.errors import DomainError, Forbidden, Unauthorized
from domain.events import service as events
from domain.events.schemas import Accepted, IdentifyCall, TrackCall

router = APIRouter(prefix="/v1", tags=["ingestion"])


class BadEvent(DomainError):
    status_code = 400
    code = "invalid_event"


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DomainError("the request body is not valid JSON", code="malformed_json") from exc
    if not isinstance(body, dict):
        raise BadEvent({"field": "body", "problem": "expected a JSON object"})
    return body


async def _source(request: Request, session: Session, body: Annotated[dict, Depends(_body)]) -> Principal:
    body_key = body.get("writeKey") if isinstance(body.get("writeKey"), str) else None
    key = basic_username(request) or bearer_token(request) or body_key
    if not key:
        raise Unauthorized("send the source's write key as the HTTP Basic username or as writeKey")
    principal = await auth.authenticate(session, key)
    if principal is None:
        raise Unauthorized("unknown or revoked write key")
    if principal.kind is not KeyKind.write:
        raise Forbidden("ingestion takes a source write key, not a management key")
    return principal


def _parse(model, body: dict):
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise BadEvent(
            [
                {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"]}
                for err in exc.errors()
            ]
        ) from exc


@router.post("/track", response_model=Accepted, summary="Record an action the customer performed")
async def track(
    session: Session,
    body: Annotated[dict, Depends(_body)],
    source: Annotated[Principal, Depends(_source)],
) -> Accepted:
    await events.ingest(session, _parse(TrackCall, body), source_key_id=source.key_id)
    return Accepted()


@router.post("/identify", response_model=Accepted, summary="Record who the customer is (traits)")
async def identify(
    session: Session,
    body: Annotated[dict, Depends(_body)],
    source: Annotated[Principal, Depends(_source)],
) -> Accepted:
    await events.ingest(session, _parse(IdentifyCall, body), source_key_id=source.key_id)
    return Accepted()
