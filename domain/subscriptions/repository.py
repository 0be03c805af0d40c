from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers.models import Customer, CustomerErasure
from domain.db import insert_ignoring_conflicts, sha256_hex, utcnow
from domain.events import repository as events_repository
from domain.events.models import EventOutbox
from domain.subscriptions.addresses import HASHED, forms, hashed, stronger
from domain.subscriptions.events import CONTEXT, SUBSCRIPTION_CHANGED
from domain.subscriptions.models import Subscription, SubscriptionGroup, Suppression, UnsubscribeMail


async def get_group(session: AsyncSession, group_id: str) -> SubscriptionGroup | None:
    return await session.get(SubscriptionGroup, group_id)


async def lock_group(session: AsyncSession, group_id: str) -> SubscriptionGroup | None:
    """The group, locked until the transaction ends (PostgreSQL): concurrent edits of one group queue,
    so each sees the ``opt_in`` the previous one committed."""
    return await session.get(SubscriptionGroup, group_id, with_for_update=True, populate_existing=True)


async def update_group(session: AsyncSession, group: SubscriptionGroup, changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        setattr(group, name, value)
    await session.flush()


async def list_groups(session: AsyncSession) -> list[SubscriptionGroup]:
    return list(await session.scalars(select(SubscriptionGroup).order_by(SubscriptionGroup.id)))


async def add(session: AsyncSession, row) -> None:
    session.add(row)
    await session.flush()


async def choices(session: AsyncSession, customer_ids: list[int]) -> dict[tuple[int, str], bool]:
    if not customer_ids:
        return {}
    rows = await session.execute(
        select(Subscription.customer_id, Subscription.group_id, Subscription.subscribed).where(
            Subscription.customer_id.in_(customer_ids)
        )
    )
    return {(c, g): s for c, g, s in rows}


async def set_choice(
    session: AsyncSession, customer_id: int, group_id: str, subscribed: bool, source: str
) -> bool:
    """Store the choice; returns whether it differs from the one stored before (or there was none)."""
    inserted = await session.execute(
        insert_ignoring_conflicts(session, Subscription, ["customer_id", "group_id"]).values(
            customer_id=customer_id,
            group_id=group_id,
            subscribed=subscribed,
            source=source,
            updated_at=utcnow(),
        )
    )
    row = await session.scalar(
        select(Subscription).where(Subscription.customer_id == customer_id, Subscription.group_id == group_id)
    )
    changed = bool(inserted.rowcount) or row.subscribed != subscribed
    row.subscribed, row.source, row.updated_at = subscribed, source, utcnow()
    return changed


async def claim_mail(session: AsyncSession, key: str) -> bool:
    """Record the mail as acted on; False when it was already (a concurrent delivery of it waits on
    the key until the first commits, then finds it: PostgreSQL's unique key, SQLite's one writer)."""
    inserted = await session.execute(
        insert_ignoring_conflicts(session, UnsubscribeMail, ["key"]).values(key=key, processed_at=utcnow())
    )
    return bool(inserted.rowcount)


async def unsubscribed_from_all(session: AsyncSession, customer_ids: list[int]) -> set[int]:
    """Those of the customers who unsubscribed from all marketing."""
    if not customer_ids:
        return set()
    rows = await session.scalars(
        select(Customer.id).where(Customer.id.in_(customer_ids), Customer.unsubscribed_all_at.is_not(None))
    )
    return set(rows.all())


async def set_unsubscribed_from_all(session: AsyncSession, customer: Customer, unsubscribed: bool) -> bool:
    """Record (or lift) the customer's unsubscribe from all marketing; returns whether it changed."""
    if (customer.unsubscribed_all_at is not None) == unsubscribed:
        return False
    customer.unsubscribed_all_at = utcnow() if unsubscribed else None
    await session.flush()
    return True


async def suppressed(session: AsyncSession, addresses: list[str]) -> dict[str, str]:
    """The reason each of the addresses is suppressed, whether its entry names it or keeps only its
    digest (an erased person's); absent = not suppressed. One indexed lookup."""
    if not addresses:
        return {}
    asked = {form: address for address in addresses for form in forms(address)}
    rows = await session.execute(
        select(Suppression.address, Suppression.reason).where(Suppression.address.in_(asked))
    )
    out: dict[str, str] = {}
    for stored, reason in rows:
        out[asked[stored]] = stronger(out.get(asked[stored]), reason)
    return out


# Changes to one address's entries (suppressing, lifting, an erasure hashing them) take this lock on
# PostgreSQL, one at a time: each reads the entries in both forms and then writes, and an erasure that
# renamed the entry to its digest in between made a new suppression fail, or delete the digest with
# the entry it had read, leaving the address suppressed nowhere. SQLite runs one writer at a time.
SUPPRESSION_CHANGES_LOCK = 7_301_955  # the lock's class (int4, names it in pg_locks); the address keys it


#
# A transaction that changes several addresses (a feedback batch, an erasure) takes all their locks
# first, in the order of the lock keys (not of the addresses: two addresses can share a key), so two
# of them cannot each hold a lock the other waits for: a feedback batch and another with the same
# addresses in a different order deadlocked (one was answered 503).


def _lock_key(address: str) -> int:
    return int.from_bytes(bytes.fromhex(sha256_hex(address))[:4], "big", signed=True)


async def lock_addresses(session: AsyncSession, addresses: list[str]) -> None:
    """Take the change locks of these addresses (PostgreSQL), each key once, in key order."""
    if session.bind.dialect.name != "postgresql":
        return
    for key in sorted({_lock_key(a) for a in addresses}):
        await session.execute(select(func.pg_advisory_xact_lock(SUPPRESSION_CHANGES_LOCK, key)))


async def _lock_address(session: AsyncSession, address: str) -> None:
    await lock_addresses(session, [address])  # taken again (it stacks) if the caller locked it first


async def suppress(session: AsyncSession, address: str, reason: str, detail: str | None) -> bool:
    """Record a suppression; a stronger reason (bounced > complained > unsubscribed) replaces a weaker.
    Returns whether the address was not suppressed before.

    An entry an erasure left (its digest) is folded in: the address is named again, so it is one
    entry again, with the stronger of the two reasons."""
    await _lock_address(session, address)
    inserted = await session.execute(
        insert_ignoring_conflicts(session, Suppression, ["address"]).values(
            address=address, reason=reason, detail=detail, created_at=utcnow()
        )
    )
    row = await session.scalar(select(Suppression).where(Suppression.address == address))
    erased = await session.scalar(
        delete(Suppression).where(Suppression.address == hashed(address)).returning(Suppression.reason)
    )
    if erased is not None and stronger(row.reason, erased) != row.reason:
        row.reason, row.detail = erased, None
    if stronger(row.reason, reason) != row.reason:
        row.reason, row.detail = reason, detail
    return bool(inserted.rowcount) and erased is None


async def erased_only(session: AsyncSession, addresses: list[str]) -> set[str]:
    """Of these addresses, those an erasure left behind that no profile has now: a digest entry keeps
    it, or an erasure record its profile's address. What is recorded about them must name no one."""
    if not addresses:
        return set()
    by_digest = {sha256_hex(a): a for a in addresses}
    entries = select(Suppression.address).where(Suppression.address.in_([hashed(a) for a in addresses]))
    records = select(CustomerErasure.email_sha256).where(CustomerErasure.email_sha256.in_(by_digest))
    left = {by_digest[e.removeprefix(HASHED)] for e in await session.scalars(entries)}
    left |= {by_digest[d] for d in await session.scalars(records)}
    if not left:
        return set()
    held = set(await session.scalars(select(Customer.email).where(Customer.email.in_(sorted(left)))))
    return left - held


async def list_suppressions(session: AsyncSession, limit: int, after_id: int | None) -> list[Suppression]:
    stmt = select(Suppression).order_by(Suppression.id).limit(limit)
    if after_id is not None:
        stmt = stmt.where(Suppression.id > after_id)
    return list(await session.scalars(stmt))


async def unsuppress(session: AsyncSession, address: str) -> int:
    """Lift the address's suppression, the entry that names it and any an erasure left."""
    await _lock_address(session, address)
    result = await session.execute(delete(Suppression).where(Suppression.address.in_(forms(address))))
    return result.rowcount


async def forget(session: AsyncSession, addresses: list[str]) -> None:
    """Keep only digests of these addresses' entries (an erasure), with their reasons (the stronger
    where a digest is there already) and without their detail, which may quote the address (a
    bounce's SMTP error)."""
    await lock_addresses(session, addresses)  # in the order every batch and erasure takes them
    for address in addresses:
        plain = await session.scalar(select(Suppression).where(Suppression.address == address))
        if plain is None:
            continue
        digest = await session.scalar(select(Suppression).where(Suppression.address == hashed(address)))
        if digest is None:
            plain.address, plain.detail = hashed(address), None
        else:
            digest.reason = stronger(digest.reason, plain.reason)
            await session.delete(plain)
    await session.flush()


async def record_changed(
    session: AsyncSession,
    properties: dict[str, Any],
    *,
    customer_id: int | None = None,
    address: str | None = None,
) -> int:
    """Store a ``Subscription Changed`` event (and queue it for the router) for one customer, or for
    every customer with ``address``; returns how many were stored."""
    customers, outbox = Customer.__table__, EventOutbox.__table__
    at = utcnow()
    change = uuid.uuid4().hex  # one change, one event per customer it concerns
    recorded = events_repository.track_for_each(
        customers,
        customers.c.id == customer_id if customer_id is not None else customers.c.email == address,
        message_id_prefix=f"subscriptions/{change}/",
        name=SUBSCRIPTION_CHANGED,
        properties=properties,
        context=CONTEXT,
        at=at,
    )
    ids = list((await session.execute(recorded)).scalars())
    if ids:
        await session.execute(insert(outbox), [{"event_id": i, "created_at": at} for i in ids])
    return len(ids)
