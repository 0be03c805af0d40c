"""API keys: creation, lookup by secret, roles."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy.ext.asyncio import AsyncSession

from domain.auth import repository
from domain.auth.models import ApiKey
from domain.auth.schemas import KeyCreate, KeyCreated, KeyKind, KeyOut, Principal, Role
from domain.db import utcnow
from domain.errors import InvalidInput, NotFound

DEV_ADMIN_KEY = "dev-admin-key"
DEV_WRITE_KEY = "dev-write-key"
DEV_INBOUND_KEY = "dev-inbound-key"
_PREFIXES = {KeyKind.management: "jk_", KeyKind.write: "wk_", KeyKind.inbound: "ik_"}


def hash_secret(secret: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough (as GitHub and Stripe do).
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret(kind: KeyKind) -> str:
    return _PREFIXES[kind] + secrets.token_urlsafe(32)


def _out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        kind=KeyKind(key.kind),
        role=Role(key.role) if key.role else None,
        prefix=key.prefix,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


async def create_key(session: AsyncSession, spec: KeyCreate, *, secret: str | None = None) -> KeyCreated:
    if spec.kind is KeyKind.management and spec.role is None:
        raise InvalidInput({"field": "role", "problem": "a management key needs a role"})
    if spec.kind is KeyKind.write and spec.role is not None:
        raise InvalidInput({"field": "role", "problem": "a write key has no role; it can only send events"})
    if spec.kind is KeyKind.inbound and spec.role is not None:
        raise InvalidInput(
            {"field": "role", "problem": "an inbound key has no role; it can only deliver unsubscribe mail"}
        )
    secret = secret or _new_secret(spec.kind)
    key = await repository.add(
        session,
        ApiKey(
            name=spec.name,
            kind=spec.kind.value,
            role=spec.role.value if spec.role else None,
            key_hash=hash_secret(secret),
            prefix=secret[:8],
        ),
    )
    return KeyCreated(**_out(key).model_dump(), secret=secret)


async def ensure_key(session: AsyncSession, spec: KeyCreate, secret: str) -> None:
    """Create a key with a known secret unless it exists (used for the dev keys)."""
    if await repository.by_hash(session, hash_secret(secret)) is None:
        await create_key(session, spec, secret=secret)


async def ensure_dev_keys(session: AsyncSession) -> None:
    await ensure_key(session, KeyCreate(name="dev admin", role=Role.admin), DEV_ADMIN_KEY)
    await ensure_key(session, KeyCreate(name="dev source", kind=KeyKind.write), DEV_WRITE_KEY)
    await ensure_key(session, KeyCreate(name="dev inbound mail", kind=KeyKind.inbound), DEV_INBOUND_KEY)


async def authenticate(session: AsyncSession, secret: str) -> Principal | None:
    key = await repository.by_hash(session, hash_secret(secret))
    if key is None or key.revoked_at is not None:
        return None
    return Principal(
        key_id=key.id,
        name=key.name,
        kind=KeyKind(key.kind),
        role=Role(key.role) if key.role else None,
    )


async def list_keys(session: AsyncSession) -> list[KeyOut]:
    return [_out(k) for k in await repository.list_all(session)]


async def revoke_key(session: AsyncSession, key_id: int) -> KeyOut:
    key = await repository.get(session, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return _out(key)
