from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.events.models import Event, EventOutbox
from domain.loyalty import service as loyalty
from domain.loyalty.models import LoyaltyEntry
from domain.loyalty.schemas import ProgramConfig

PROGRAM = {
    "rules": [
        {"id": "purchase", "event": "Order Completed", "points_per_unit": 1, "amount_property": "revenue"},
        {"id": "review", "event": "Review Written", "points": 50, "cap_per_day": 100},
    ],
    "tiers": [
        {"name": "member", "threshold": 0},
        {"name": "silver", "threshold": 500, "multiplier": 1.5},
        {"name": "gold", "threshold": 2000, "multiplier": 2},
    ],
    "tier_window_months": 12,
    "expiry_months": 12,
    "expiry_warning_days": 30,
}


async def make_customer(sessions, user_id: str = "u1", email: str | None = None) -> int:
    async with transaction(sessions) as session:
        customer = Customer(user_id=user_id, email=email, traits={})
        session.add(customer)
        await session.flush()
        return customer.id


async def set_program(sessions, config: dict | None = None, *, since: datetime | None = None) -> None:
    raw = dict(config or PROGRAM)
    if since is not None:  # let rules earn from events stored before the programme existed
        raw["rules"] = [{**r, "since": since.isoformat()} for r in raw["rules"]]
    async with transaction(sessions) as session:
        await loyalty.put_program(session, ProgramConfig.model_validate(raw), utcnow())


async def entries(sessions, customer_id: int | None = None) -> list[LoyaltyEntry]:
    async with sessions() as session:
        stmt = select(LoyaltyEntry).order_by(LoyaltyEntry.id)
        if customer_id is not None:
            stmt = stmt.where(LoyaltyEntry.customer_id == customer_id)
        return list(await session.scalars(stmt))


async def emitted(sessions, name: str | None = None) -> list[Event]:
    """Events the programme put into the stream (and the outbox), oldest first."""
    async with sessions() as session:
        stmt = select(Event).where(Event.message_id.like("loyalty/%")).order_by(Event.id)
        if name is not None:
            stmt = stmt.where(Event.name == name)
        found = list(await session.scalars(stmt))
        queued = set(await session.scalars(select(EventOutbox.event_id)))
    assert all(e.id in queued for e in found), "every emitted event is queued for routing"
    return found


async def count_entries(sessions) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(LoyaltyEntry))


async def audit(sessions, customer_id: int):
    async with sessions() as session:
        return await loyalty.audit(session, customer_id)
