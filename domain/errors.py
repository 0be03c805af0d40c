"""Typed domain errors. Each carries the HTTP status the API renders it with."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, detail: Any, *, code: str | None = None):
        super().__init__(detail if isinstance(detail, str) else repr(detail))
        self.detail = detail
        if code:
            self.code = code


class InvalidInput(DomainError):
    status_code = 422
    code = "invalid"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"
