"""Who a broadcast goes to: an interface that pages customer ids in ascending order.

An audience is a small JSON spec:
- ``{"kind": "all"}``: every customer with an email address;
- ``{"kind": "customers", "customer_ids": [..]}``: an explicit list;
- ``{"kind": "segment", "segment_id": ".."}``: a segment's current members.

Paging by id (``after_id``) rather than offset keeps each page cheap and makes progress one number.
Members are read when their batch runs, so someone who joins before their page is reached gets the
broadcast; the ledger's unique key means nobody gets it twice.

An empty page means the audience is exhausted, so a page never comes back empty while anyone is left:
a customer list pages through the listed ids themselves (the batch leaves out those without an address
or a profile), so ids that do not qualify move the cursor on rather than ending the broadcast.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers.models import Customer
from domain.errors import InvalidInput
from domain.segments import service as segments


async def validate(session: AsyncSession, audience: dict) -> None:
    kind = audience.get("kind")
    if kind == "segment" and not await segments.exists(session, audience["segment_id"], hold=True):
        raise InvalidInput({"field": "audience.segment_id", "problem": "no such segment"})


async def page(session: AsyncSession, audience: dict, after_id: int, limit: int) -> list[int]:
    kind = audience["kind"]
    if kind == "segment":
        return await segments.member_ids(session, audience["segment_id"], after_id, limit)
    if kind == "customers":
        return sorted({i for i in audience["customer_ids"] if i > after_id})[:limit]
    stmt = select(Customer.id).where(Customer.id > after_id, Customer.email.is_not(None))
    return list(await session.scalars(stmt.order_by(Customer.id).limit(limit)))
