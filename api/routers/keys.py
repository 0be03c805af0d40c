from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import Admin, Session, revoked_keys
from domain.auth import service as auth
from domain.auth.schemas import KeyCreate, KeyCreated, KeyOut
from domain.db import StoredInt

router = APIRouter(prefix="/api/keys", tags=["api keys"])


@router.post("", status_code=201, response_model=KeyCreated, summary="Create a key; the secret is shown once")
async def create_key(spec: KeyCreate, session: Session, _: Admin) -> KeyCreated:
    return await auth.create_key(session, spec)


@router.get("", response_model=list[KeyOut])
async def list_keys(session: Session, _: Admin) -> list[KeyOut]:
    return await auth.list_keys(session)


@router.delete("/{key_id}", response_model=KeyOut, summary="Revoke a key")
async def revoke_key(key_id: StoredInt, session: Session, _: Admin, request: Request) -> KeyOut:
    revoked = await auth.revoke_key(session, key_id)
    revoked_keys(request).add(key_id)
    return revoked
