from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    String,
    Text,
    any_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    union,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers.models import (
    Customer,
    CustomerAlias,
    CustomerErasure,
    CustomerMerge,
    CustomerUserAlias,
)
from domain.db import insert_ignoring_conflicts, utcnow

customers = Customer.__table__
aliases = CustomerAlias.__table__
user_aliases = CustomerUserAlias.__table__
merges = CustomerMerge.__table__
# What an erased person's failed or skipped message says instead of its error (which may name them).
ERASED_ERROR = "(the error was erased with the customer)"


@dataclass(frozen=True)
class Identity:
    """The ids a customer is known by (no traits: the hot path does not need them)."""

    id: int
    user_id: str | None
    anonymous_id: str | None


async def get(session: AsyncSession, customer_id: int) -> Customer | None:
    return await session.get(Customer, customer_id)


async def add(session: AsyncSession, customer: Customer) -> Customer:
    session.add(customer)
    await session.flush()
    return customer


# --- identity resolution, in bulk -----------------------------------------------------------------


def _one_of(session: AsyncSession, column, values: list[str]):
    """``column IN values``; on PostgreSQL ``= ANY(array)``, one prepared statement for any count."""
    if session.bind.dialect.name == "postgresql":
        return column == any_(bindparam(f"any_{column.name}", values, type_=ARRAY(String)))
    return column.in_(values)


async def identities(
    session: AsyncSession, user_ids: Iterable[str], anonymous_ids: Iterable[str]
) -> tuple[dict[str, Identity], dict[str, Identity]]:
    """Customers by userId (own column or a former one) and by anonymousId (own column or a merged
    alias), in one to three queries (former userIds are looked up only for ids no profile has)."""
    user_ids, anonymous_ids = sorted(set(user_ids)), sorted(set(anonymous_ids))
    cols = (customers.c.id, customers.c.user_id, customers.c.anonymous_id)
    clauses = []
    if user_ids:
        clauses.append(_one_of(session, customers.c.user_id, user_ids))
    if anonymous_ids:
        clauses.append(_one_of(session, customers.c.anonymous_id, anonymous_ids))
    by_user: dict[str, Identity] = {}
    by_anon: dict[str, Identity] = {}
    if not clauses:
        return by_user, by_anon
    rows = (await session.execute(select(*cols).where(or_(*clauses)))).all()
    known = {row[0]: Identity(*row) for row in rows}
    if anonymous_ids:
        aliased = (
            await session.execute(
                select(aliases.c.anonymous_id, *cols)
                .join(customers, customers.c.id == aliases.c.customer_id)
                .where(_one_of(session, aliases.c.anonymous_id, anonymous_ids))
            )
        ).all()
        for row in aliased:
            by_anon[row.anonymous_id] = known.setdefault(row.id, Identity(row.id, row.user_id, row[3]))
    for ident in known.values():
        if ident.user_id is not None:
            by_user[ident.user_id] = ident
        if ident.anonymous_id is not None:
            by_anon[ident.anonymous_id] = ident
    if former := [u for u in user_ids if u not in by_user]:
        renamed = (
            await session.execute(
                select(user_aliases.c.user_id, *cols)
                .join(customers, customers.c.id == user_aliases.c.customer_id)
                .where(_one_of(session, user_aliases.c.user_id, former))
            )
        ).all()
        for former_id, *ids in renamed:
            by_user[former_id] = known.setdefault(ids[0], Identity(*ids))
    return by_user, by_anon


# Identity changes (creating, claiming and merging profiles) take this transaction-level lock on
# PostgreSQL, one resolver at a time: each touches several customers and unique keys in an order only
# the request decides, and two at once deadlocked. They are rare next to plain event writes.
IDENTITY_CHANGES_LOCK = 7_301_955_117  # any constant; it names this lock in pg_locks


async def serialize_identity_changes(session: AsyncSession) -> None:
    if session.bind.dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(IDENTITY_CHANGES_LOCK)))


async def create_missing(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Insert customers (user_id / anonymous_id / seen dates), skipping any id that exists meanwhile;
    returns the ids of those created."""
    if not rows:
        return []
    stmt = insert_ignoring_conflicts(session, customers, None).returning(customers.c.id)
    now = utcnow()
    created = await session.execute(
        stmt,
        [
            {
                "traits": {},
                "event_count": 0,
                "order_count": 0,
                "lifetime_value": Decimal(0),
                "created_at": now,
                "updated_at": now,
                **row,
            }
            for row in rows
        ],
    )
    return list(created.scalars())


async def add_alias(session: AsyncSession, anonymous_id: str, customer_id: int) -> None:
    stmt = insert_ignoring_conflicts(session, CustomerAlias, ["anonymous_id"])
    await session.execute(
        stmt.values(anonymous_id=anonymous_id, customer_id=customer_id, created_at=utcnow())
    )


async def add_user_alias(session: AsyncSession, user_id: str, customer_id: int) -> None:
    """Keep ``user_id`` naming the customer after it stopped being the profile's own."""
    stmt = insert_ignoring_conflicts(session, CustomerUserAlias, ["user_id"])
    await session.execute(stmt.values(user_id=user_id, customer_id=customer_id, created_at=utcnow()))


async def claim_user_id(session: AsyncSession, customer_id: int, user_id: str) -> bool:
    """Give an anonymous profile its userId; False when another writer got there first."""
    result = await session.execute(
        update(customers)
        .where(customers.c.id == customer_id, customers.c.user_id.is_(None))
        .values(user_id=user_id, updated_at=utcnow())
    )
    return result.rowcount == 1


async def rename_user_id(session: AsyncSession, customer_id: int, user_id: str) -> None:
    await session.execute(
        update(customers).where(customers.c.id == customer_id).values(user_id=user_id, updated_at=utcnow())
    )


async def lock(session: AsyncSession, customer_ids: list[int]) -> dict[int, Customer]:
    """Load and (on PostgreSQL) row-lock customers, in id order so two mergers cannot deadlock."""
    stmt = select(Customer).where(Customer.id.in_(customer_ids)).order_by(Customer.id)
    if session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return {c.id: c for c in (await session.scalars(stmt)).all()}


async def reattribute(session: AsyncSession, source_id: int, target_id: int) -> None:
    """Move everything recorded about ``source`` to ``target`` before ``source`` is deleted: events,
    enrollments with their steps and the events they wait for, messages (and sends reserved under a
    frequency cap), cases, aliases, and the subscription choices. Where both chose for one group, the
    later choice stands: they are one person, and an unsubscribe made before logging in must not be
    undone by an older opt-in (a tie keeps ``target``'s)."""
    from domain.cases.models import Case
    from domain.email.models import Message
    from domain.events.models import Event
    from domain.journeys.models import CapReservation, Enrollment, JourneyListener, JourneyStep
    from domain.subscriptions.models import Subscription

    choices = Subscription.__table__
    other = choices.alias("other")

    def overridden(owner: int, by: int, newer):
        """``owner``'s choices for a group where ``by`` chose too, at a time that makes ``by``'s stand."""
        same_group = other.c.group_id == choices.c.group_id
        return delete(choices).where(
            choices.c.customer_id == owner,
            select(other.c.id).where(other.c.customer_id == by, same_group, newer).exists(),
        )

    await session.execute(overridden(source_id, target_id, other.c.updated_at >= choices.c.updated_at))
    await session.execute(overridden(target_id, source_id, other.c.updated_at > choices.c.updated_at))
    for model in (
        Event,
        Enrollment,
        JourneyStep,
        JourneyListener,
        Message,
        CapReservation,
        Case,
        Subscription,
        CustomerAlias,
        CustomerUserAlias,
    ):
        await session.execute(
            update(model.__table__)
            .where(model.__table__.c.customer_id == source_id)
            .values(customer_id=target_id)
        )
    # An unsubscribe from all marketing made by either stands for the person (the target's time if both).
    source_unsubscribed = select(customers.c.unsubscribed_all_at).where(customers.c.id == source_id)
    await session.execute(
        update(customers)
        .where(customers.c.id == target_id)
        .values(
            unsubscribed_all_at=func.coalesce(
                customers.c.unsubscribed_all_at, source_unsubscribed.scalar_subquery()
            )
        )
    )


async def record_merge(session: AsyncSession, source_id: int, target_id: int) -> None:
    """Remember that ``source`` now is ``target``, and so is every profile merged into ``source``."""
    await session.execute(
        update(merges).where(merges.c.customer_id == source_id).values(customer_id=target_id)
    )
    await session.execute(
        insert_ignoring_conflicts(session, CustomerMerge, ["merged_id"]).values(
            merged_id=source_id, customer_id=target_id, merged_at=utcnow()
        )
    )


async def merged_into(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, list[int]]:
    """For each of these profiles, the profiles merged into it (directly or along a chain). One query."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    found: dict[int, list[int]] = {}
    rows = await session.execute(
        select(merges.c.customer_id, merges.c.merged_id)
        .where(merges.c.customer_id.in_(ids))
        .order_by(merges.c.merged_id)
    )
    for customer_id, merged_id in rows:
        found.setdefault(customer_id, []).append(merged_id)
    return found


async def current_of(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, int]:
    """For those of these ids that name a profile now, that profile's id: their own, or the one they
    were merged into. Erased ids are left out. One query."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    kept = select(customers.c.id.label("asked"), customers.c.id.label("now")).where(customers.c.id.in_(ids))
    moved = select(merges.c.merged_id, merges.c.customer_id).where(merges.c.merged_id.in_(ids))
    return {asked: now for asked, now in await session.execute(union_all(kept, moved))}


async def hold_current(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, int]:
    """``current_of``, with the profiles found key-share locked (on PostgreSQL) until the transaction
    ends: none of them is erased or merged away before the caller's rows naming them are written, and
    an erasure or a merge in flight is waited for. Ids left out were erased."""
    wanted = {i: i for i in customer_ids}  # asked id -> the profile it names, as far as known
    found: dict[int, int] = {}
    for _ in range(4):  # a profile merged again while it is looked up moves on; it settles at once
        stmt = select(customers.c.id).where(customers.c.id.in_(sorted(set(wanted.values()))))
        if session.bind.dialect.name == "postgresql":
            stmt = stmt.order_by(customers.c.id).with_for_update(read=True, key_share=True)
        held = set(await session.scalars(stmt))
        found.update({asked: now for asked, now in wanted.items() if now in held})
        missing = [asked for asked, now in wanted.items() if now not in held]
        if not missing:
            return found
        moves = select(merges.c.merged_id, merges.c.customer_id).where(merges.c.merged_id.in_(missing))
        moved = dict((await session.execute(moves)).all())
        # gone, and no merge names a profile not yet tried: erased
        wanted = {a: moved[a] for a in missing if moved.get(a, wanted[a]) != wanted[a]}
        if not wanted:
            return found
    raise RuntimeError(f"customers {sorted(wanted)} kept being merged while they were looked up")


async def delete_customer(session: AsyncSession, customer_id: int) -> None:
    """The profile, its segment stays and its place in the refresher's queues (no foreign keys).

    The queue rows go first, then the profile, in the order a refresher pass takes them (it empties the
    queues before it locks customers), so the two cannot deadlock. The stays go after the profile: a
    statement opening stays holds it key-share locked, so it either finishes before this delete (whose
    stay delete then sees its stays) or waits for it and finds the customer gone."""
    from domain.segments.models import SegmentMembership, SegmentNewcomer, SegmentNewSend, SegmentRecheck

    for table in (SegmentRecheck.__table__, SegmentNewcomer.__table__, SegmentNewSend.__table__):
        await session.execute(delete(table).where(table.c.customer_id == customer_id))
    await session.execute(delete(customers).where(customers.c.id == customer_id))
    stays = SegmentMembership.__table__
    await session.execute(delete(stays).where(stays.c.customer_id == customer_id))


# --- profile facts, in bulk -----------------------------------------------------------------------


async def traits_of(session: AsyncSession, customer_ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = await session.execute(
        select(customers.c.id, customers.c.traits).where(customers.c.id.in_(customer_ids))
    )
    return {row.id: dict(row.traits or {}) for row in rows}


# --- the customer 360 -----------------------------------------------------------------------------


async def search(
    session: AsyncSession,
    *,
    q: str | None,
    email: str | None,
    trait: tuple[str, str] | None,
    after: int | None,
    limit: int,
) -> list[Customer]:
    stmt = select(Customer).order_by(Customer.id).limit(limit)
    if after is not None:
        stmt = stmt.where(Customer.id > after)
    if q:
        # One index lookup per id kind, unioned: an OR of them with the alias subquery made PostgreSQL
        # walk every customer in id order (215 ms at 200 000 customers, growing with the base).
        c = customers.c
        found = [
            select(c.id).where(c.user_id == q),
            select(c.id).where(c.anonymous_id == q),
            select(c.id).where(c.email == q.strip().lower()),
            select(aliases.c.customer_id).where(aliases.c.anonymous_id == q),
            select(user_aliases.c.customer_id).where(user_aliases.c.user_id == q),
        ]
        if q.isascii() and q.isdigit() and len(q) < 19:  # "²" is a digit int() refuses
            found.append(select(c.id).where(c.id == int(q)))
        stmt = stmt.where(Customer.id.in_(union(*found)))
    if email:
        stmt = stmt.where(Customer.email.startswith(email.strip().lower(), autoescape=True))
        if session.bind.dialect.name == "postgresql":
            # Planned for this prefix, every time: the cached generic plan cannot see that the pattern
            # is a prefix, so after five searches it walked every customer in id order (80 ms at
            # 200 000) instead of a range of ix_customers_email (0.1 ms). A prefix most customers share
            # is still planned as the id-order walk, which then stops after one page.
            await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    if trait:
        key, value = trait
        if session.bind.dialect.name == "postgresql":
            stmt = stmt.where(Customer.traits.op("->>")(key) == value)
            if (documents := _trait_documents(key, value)) is not None:
                # ix_customers_traits (GIN) answers containment, not ->>: the traits that could read
                # as this text are contained first, so a value no customer has is found in the index
                # (0.1 ms) instead of by reading every customer (70 ms at 200 000). A value many
                # customers have is still planned as the id-order walk, which stops after one page;
                # the plan is made for each search's value, as for the email prefix above.
                contained = (Customer.traits.op("@>")(cast(literal(d, Text), JSONB)) for d in documents)
                stmt = stmt.where(or_(*contained))
                await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        else:
            # As PostgreSQL's ->> reads it: SQLite's json_extract turns true and false into 1 and 0.
            path = f'$."{key}"'
            kind = func.json_type(Customer.traits, path)
            as_text = case(
                (kind.in_(("true", "false")), kind),
                else_=func.json_extract(Customer.traits, path).cast(Text),
            )
            stmt = stmt.where(as_text == value)
    return list(await session.scalars(stmt))


# How PostgreSQL writes a number as text (``->>``): plain digits, never an exponent or a leading zero.
_NUMBER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


def _trait_documents(key: str, value: str) -> list[str] | None:
    """The JSON documents one of which the traits contain whenever ``traits ->> key`` is ``value``:
    the string, and the number or boolean written so. None when containment cannot narrow it down:
    the text of an object or an array (containment is not equality for those), or a number too long
    to write as a JSON number PostgreSQL reads."""
    if value[:1] in ("{", "[") or len(value) > 1000:
        return None
    documents = [json.dumps({key: value}, ensure_ascii=False)]
    if value in ("true", "false") or _NUMBER_TEXT.fullmatch(value):
        documents.append(f"{{{json.dumps(key)}: {value}}}")
    return documents


async def aliases_of(session: AsyncSession, customer_id: int) -> list[str]:
    return list(
        await session.scalars(
            select(aliases.c.anonymous_id)
            .where(aliases.c.customer_id == customer_id)
            .order_by(aliases.c.created_at, aliases.c.anonymous_id)
        )
    )


async def former_user_ids(session: AsyncSession, customer_id: int) -> list[str]:
    return list(
        await session.scalars(
            select(user_aliases.c.user_id)
            .where(user_aliases.c.customer_id == customer_id)
            .order_by(user_aliases.c.created_at, user_aliases.c.user_id)
        )
    )


async def record_erasure(
    session: AsyncSession, values: dict[str, Any], former_user_id_digests: Iterable[str] = ()
) -> CustomerErasure:
    """The erasure record, then one entry per former userId's digest: a copy of the record after it
    (same customer and time, no address digest) that the audit lookup resolves to the record."""
    row = CustomerErasure(**values)
    session.add(row)
    await session.flush()
    entries = [{**values, "user_id_sha256": d, "email_sha256": None} for d in former_user_id_digests]
    if entries:
        await session.execute(insert(CustomerErasure), entries)
    return row


async def erasures(session: AsyncSession, user_id_sha256: str) -> list[CustomerErasure]:
    """The erasure records of a userId, the profile's own or a former one (the first row written for
    the customer at that time is the record; later ones are its former-userId entries)."""
    e = CustomerErasure.__table__.c
    named = select(e.customer_id, e.erased_at).where(e.user_id_sha256 == user_id_sha256)
    records = (
        select(func.min(e.id))
        .where(tuple_(e.customer_id, e.erased_at).in_(named))
        .group_by(e.customer_id, e.erased_at)
    )
    found = select(CustomerErasure).where(CustomerErasure.id.in_(records)).order_by(CustomerErasure.id)
    return list(await session.scalars(found))


async def ledger_addresses(session: AsyncSession, customer_id: int) -> set[str]:
    """The addresses the send ledger records mailing the customer at."""
    from domain.email.models import Message

    messages = Message.__table__
    rows = await session.scalars(
        select(messages.c.to_address)
        .where(messages.c.customer_id == customer_id, messages.c.to_address.is_not(None))
        .distinct()
    )
    return set(rows)


async def anonymise_messages(session: AsyncSession, customer_id: int) -> None:
    """Keep the send ledger's rows (campaign counts, idempotency) but drop what names the person: the
    error too, which quotes the address (a bounce: ``SMTPRecipientRefused(550, ..., 'ann@...')``) or
    the rendered data; only the fact that there was one stays."""
    from domain.email.models import Message

    messages = Message.__table__
    await session.execute(
        update(messages)
        .where(messages.c.customer_id == customer_id)
        .values(
            to_address=None,
            subject=None,
            meta={},
            customer_id=None,
            error=case((messages.c.error.is_(None), None), else_=ERASED_ERROR),
        )
    )
