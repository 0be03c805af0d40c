from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class Role(StrEnum):
    admin = "admin"
    marketer = "marketer"
    agent = "agent"


class KeyKind(StrEnum):
    management = "management"
    write = "write"
    # An inbound-mail provider's key: it can only deliver mail to the unsubscribe-by-email endpoint, so
    # the secret kept in the provider's webhook settings opens nothing else.
    inbound = "inbound"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a management key with a role, a source's write key, or an inbound-mail key."""

    key_id: int
    name: str
    kind: KeyKind
    role: Role | None

    def has_role(self, *roles: Role) -> bool:
        return self.kind is KeyKind.management and (self.role is Role.admin or self.role in roles)


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: KeyKind = KeyKind.management
    role: Role | None = None


class KeyOut(BaseModel):
    id: int
    name: str
    kind: KeyKind
    role: Role | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    secret: str = Field(description="Shown once; only its hash is stored.")
