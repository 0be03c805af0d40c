from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, Json, UTCDateTime, utcnow


class Broadcast(Base):
    """A one-off send of one template version to an audience, run by a BroadcastWorkflow.

    ``cursor`` is the last customer id whose batch finished: the audience is paged in customer-id
    order, so progress is one number, durable here and in the workflow's history.
    """

    __tablename__ = "broadcasts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # marketing | operational (a notice everyone must get: sent past unsubscribes, never past bounces)
    kind: Mapped[str] = mapped_column(String(16), default="marketing", server_default="marketing")
    reason: Mapped[str | None] = mapped_column(String(500))  # why an operational one was sent
    created_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    template_id: Mapped[str] = mapped_column(String(64))
    template_version: Mapped[int] = mapped_column(Integer)
    subscription_group: Mapped[str | None] = mapped_column(String(64))
    audience: Mapped[dict[str, Any]] = mapped_column(Json)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "send at this wall-clock time in each recipient's timezone" (ISO, no offset), else None
    local_send_at: Mapped[str | None] = mapped_column(String(32))
    default_timezone: Mapped[str | None] = mapped_column(String(64))
    rate_per_second: Mapped[int | None] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer, default=500)
    # starting (stored, its workflow not yet confirmed) | scheduled | running | paused | cancelled |
    # completed | failed
    status: Mapped[str] = mapped_column(String(16))
    slot: Mapped[int] = mapped_column(Integer, default=0)
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
