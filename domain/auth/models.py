from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, BigId, UTCDateTime, utcnow


class ApiKey(Base):
    """A management key (Bearer, with a role), an ingestion write key (one per source), or an inbound
    key (an inbound-mail provider's, for the unsubscribe-by-email endpoint only).

    Only the SHA-256 of the secret is stored; the secret is shown once, at creation.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # "management" | "write" | "inbound"
    role: Mapped[str | None] = mapped_column(String(16))  # admin | marketer | agent (management only)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
