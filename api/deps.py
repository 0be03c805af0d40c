"""Request-scoped dependencies: the database session and who is calling."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from domain.auth import service as auth
from domain.auth.schemas import KeyKind, Principal, Role
from domain.errors import Forbidden, Unauthorized


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    # One request, one transaction, committed before the response is sent (scope="function"),
    # so a 2xx always means the data is stored, and any error rolls everything back.
    async with request.app.state.sessions() as session, session.begin():
        yield session


Session = Annotated[AsyncSession, Depends(_session, scope="function")]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


def basic_username(request: Request) -> str | None:
    """The HTTP Basic username, which is where Segment libraries put the write key."""
    return (_basic(request) or ("", ""))[0] or None


# Declared so the OpenAPI document (and the Authorize button of /docs) knows how management routes
# authenticate; the key itself is read below, which also takes it as a Basic user name (browsers).
management_key = HTTPBearer(
    scheme_name="ManagementKey",
    description="A management API key (admin, marketer or agent): `Authorization: Bearer <key>`.",
    auto_error=False,
)


ManagementCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(management_key)]


async def _management_principal(
    request: Request,
    session: Session,
    _: ManagementCredentials,
) -> Principal:
    secret = bearer_token(request) or basic_username(request)
    if not secret:
        raise Unauthorized("send a management API key as 'Authorization: Bearer <key>'")
    principal = await auth.authenticate(session, secret)
    if principal is None:
        raise Unauthorized("unknown or revoked API key")
    if principal.kind is KeyKind.write:
        raise Forbidden("a write key can only send events to /v1; use a management key here")
    if principal.kind is not KeyKind.management:
        raise Forbidden(
            "an inbound key can only deliver mail to /api/webhooks/unsubscribe-email; "
            "use a management key here"
        )
    return principal


inbound_key = HTTPBearer(
    scheme_name="InboundKey",
    description="An inbound key (kind `inbound`): `Authorization: Bearer <key>`, or the HTTP Basic "
    "password (`https://inbound:<key>@host/...` in a provider's webhook URL).",
    auto_error=False,
)


async def _inbound_principal(
    request: Request,
    session: Session,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(inbound_key)],
) -> Principal:
    """An inbound key, as a Bearer token or in HTTP Basic (as the password, or as the user name when
    there is none): providers' webhook settings take credentials in the URL, ``https://user:key@host``."""
    user, password = _basic(request) or ("", "")
    secret = bearer_token(request) or password or user
    if not secret:
        raise Unauthorized(
            "send an inbound key as 'Authorization: Bearer <key>' or as the HTTP Basic password"
        )
    principal = await auth.authenticate(session, secret)
    if principal is None:
        raise Unauthorized("unknown or revoked API key")
    if principal.kind is not KeyKind.inbound:
        raise Forbidden(f"this endpoint takes an inbound key (kind 'inbound'), not a {principal.kind} key")
    return principal


def revoked_keys(request: Request) -> set[int]:
    """The ids of keys revoked through this process: a write key it has cached (``/v1`` keeps them for a
    few seconds) is checked again at once instead of working until its entry expires."""
    return request.app.state.__dict__.setdefault("revoked_key_ids", set())


def require(*roles: Role):
    """Dependency: a management key with one of ``roles`` (admin always passes)."""

    async def check(principal: Annotated[Principal, Depends(_management_principal)]) -> Principal:
        if not principal.has_role(*roles):
            wanted = ", ".join(r.value for r in (Role.admin, *roles))
            raise Forbidden(f"this needs a key with role {wanted}; yours is {principal.role}")
        return principal

    return check


Marketer = Annotated[Principal, Depends(require(Role.marketer))]
Admin = Annotated[Principal, Depends(require())]
InboundMail = Annotated[Principal, Depends(_inbound_principal)]
