"""One error shape for every failure: ``{"error": code, "detail": ...}``; refused input (every 422) also
carries ``message`` and ``problems``, the same whichever check refused it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from domain.db import sqlstate, transient
from domain.errors import DomainError

log = logging.getLogger(__name__)

# Segment clients expect 400 for a bad event; the management API uses 422 for a bad body.
_INGEST_PREFIX = "/v1/"


def _field_errors(exc: RequestValidationError) -> list[dict]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        out.append({"field": ".".join(loc) or "body", "problem": err.get("msg", "invalid")})
    return out


def _problems(detail: Any) -> list[dict[str, Any]]:
    """A refusal's detail as a list of ``{"field", "problem", ...}``. The detail itself keeps the shape
    each check has always answered: a list of ``field``/``problem`` (the request's shape), one of them
    (a domain check), ``path`` for ``field`` (segment rules, journey definitions), with more keys
    (``node``, ``line``) kept here too."""
    problems = []
    for entry in detail if isinstance(detail, list) else [detail]:
        found = entry if isinstance(entry, dict) else {"problem": str(entry)}
        field = found.get("field", found.get("path"))
        more = {key: value for key, value in found.items() if key not in ("field", "path", "problem")}
        problem = str(found.get("problem", "is not valid"))
        problems.append({"field": "body" if field is None else str(field), "problem": problem, **more})
    return problems


class RefusalProblem(BaseModel):
    """One problem of refused input (a journey's also names its `node`, a template's its `line`)."""

    model_config = ConfigDict(extra="allow")
    field: str = Field(description="Where: a body field's dotted path, a parameter's name, or `body`")
    problem: str = Field(description="What is wrong with it, in words")


class Refusal(BaseModel):
    """The body of every 422, whichever check refused the input (the OpenAPI document's 422)."""

    error: str = Field(description="The code: `validation_error` (the request's shape), `invalid`, ...")
    detail: Any = Field(description="As each check has always answered: one problem, a list, or text")
    message: str = Field(description="The first problem in words, e.g. `opt_in: Input should be ...`")
    problems: list[RefusalProblem] = Field(description="Every problem alike")


_REF = "#/components/schemas/{model}"
# FastAPI's own 422 (``{"detail": [{loc, msg, type}]}``), which this API never answers.
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")


def document(openapi: dict[str, Any]) -> dict[str, Any]:
    """Make each operation's documented 422 the ``Refusal`` the handlers below answer (in place)."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schema = Refusal.model_json_schema(ref_template=_REF)
    schemas.update(schema.pop("$defs", {}))
    schemas[Refusal.__name__] = schema
    refusal = {
        "description": "Refused input: every problem names the field",
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=Refusal.__name__)}}},
    }
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            if "422" in operation.get("responses", {}):
                operation["responses"]["422"] = refusal
    for name in _FASTAPI_422:
        schemas.pop(name, None)
    return openapi


def _refused(code: str, detail: Any, status: int) -> JSONResponse:
    """Refused input: ``problems`` lists every problem alike, ``message`` says the first in words."""
    problems = _problems(detail)
    first = problems[0] if problems else {"field": "body", "problem": "is not valid"}
    message = f"{first['field']}: {first['problem']}" + (
        f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    )
    body = {"error": code, "detail": detail, "message": message, "problems": problems}
    return JSONResponse(body, status_code=status)


# The page a path prefix of customers' links shows for a broken link, given the status to answer.
LinkPages = Mapping[str, Callable[[int], Response]]


def _link_page(pages: LinkPages, request: Request, status: int, headers: Mapping[str, str] | None):
    """The broken-link page for a browser on a page customers reach from an email (a mangled link: a
    path no route has, a method none takes, text no database stores); None for anyone else, who gets
    the API's JSON like from every endpoint."""
    if "text/html" not in request.headers.get("accept", ""):
        return None
    path = request.url.path
    for prefix, page in pages.items():
        if path == prefix or path.startswith(f"{prefix}/"):
            response = page(status)
            response.headers.update(headers or {})
            return response
    return None


# The order Allow lists methods in; any other method follows, alphabetically.
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed(request: Request) -> str | None:
    """Every method the app's routes take for this path, for a 405's ``Allow``. The router answers the
    first route whose path matched with that route's methods alone, though the path's other routes (a
    HEAD from ``get_and_head``, a POST beside a GET) take more. None if no route matches the path."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= route.methods or set()
    rank = {method: index for index, method in enumerate(_METHOD_ORDER)}
    return ", ".join(sorted(methods, key=lambda method: (rank.get(method, len(rank)), method))) or None


def install(app: FastAPI, link_pages: LinkPages | None = None) -> None:
    pages = link_pages or {}

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError):
        if page := _link_page(pages, request, exc.status_code, None):
            return page
        if exc.status_code == 422:
            return _refused(exc.code, exc.detail, 422)
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        if page := _link_page(pages, request, 422, None):
            return page
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            return JSONResponse(
                {"error": "malformed_json", "detail": "the request body is not valid JSON"}, status_code=400
            )
        status = 400 if request.url.path.startswith(_INGEST_PREFIX) else 422
        return _refused("validation_error", _field_errors(exc), status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405 and (allowed := _allowed(request)):
            headers = {name: value for name, value in headers.items() if name.lower() != "allow"}
            headers["Allow"] = allowed
        if page := _link_page(pages, request, exc.status_code, headers):
            return page
        return JSONResponse(
            {"error": _code(exc.status_code), "detail": exc.detail},
            status_code=exc.status_code,
            headers=headers or None,
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError):
        if not _unique_violation(exc):
            return await _unexpected(request, exc)
        # Two requests creating the same thing at once: both checked that it did not exist, and the
        # database's unique key refused the second. Its transaction was rolled back whole.
        log.info("unique key conflict on %s %s: %s", request.method, request.url.path, exc.orig)
        detail = "another request stored the same thing at the same moment; nothing of this one was saved"
        return JSONResponse({"error": "conflict", "detail": detail}, status_code=409)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError):
        if not transient(exc):
            return await _unexpected(request, exc)
        # Busy (SQLite's one writer) or a deadlock: the transaction was rolled back whole, so the same
        # request can simply be sent again.
        log.warning("transient database error on %s %s: %s", request.method, request.url.path, exc.orig)
        return JSONResponse(
            {"error": "busy", "detail": "the database is busy; nothing was saved, send the request again"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "detail": "unexpected error; see server logs"}, status_code=500
        )


def _unique_violation(exc: IntegrityError) -> bool:
    """PostgreSQL's unique_violation (SQLSTATE 23505), or SQLite's UNIQUE constraint message."""
    return sqlstate(exc) == "23505" or "UNIQUE constraint failed" in str(exc.orig)


def _code(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "too_large",
        415: "unsupported_media_type",
    }.get(status, "error")
