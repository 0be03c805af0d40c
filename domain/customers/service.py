"""Customer profiles: who an event is about, identity merges, facts, the 360 view and erasure."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers import repository
from domain.customers.models import Customer, within_lifetime_value
from domain.customers.repository import Identity
from domain.customers.schemas import (
    Customer360,
    CustomerPage,
    CustomerSummary,
    Erasure,
    EventSummary,
    Facts,
    Profile,
)
from domain.customers.sections import EVERYONE, SECTIONS, Viewer
from domain.db import utcnow
from domain.errors import InvalidInput, NotFound
from domain.segments import repository as segment_repository

Key = tuple[str | None, str | None]  # (userId, anonymousId) as a call carries them
ERASED_ERROR = repository.ERASED_ERROR  # what an erased person's ledger rows keep of an error


@dataclass
class Resolution:
    """Which customer each (userId, anonymousId) of a request belongs to."""

    by_user: dict[str, Identity]
    by_anon: dict[str, Identity]

    def customer_id(self, user_id: str | None, anonymous_id: str | None) -> int:
        # A known userId wins: a visitor id seen with a user id belongs to that user.
        if user_id is not None:
            return self.by_user[user_id].id
        return self.by_anon[anonymous_id].id  # type: ignore[index]


async def resolve_known(session: AsyncSession, keys: dict[Key, datetime]) -> Resolution | None:
    """The read-only fast path: every id already belongs to a customer, consistently (a visitor id
    sent with a userId is already that user's). ``None`` when anything must be created or linked."""
    by_user, by_anon = await repository.identities(
        session, [u for u, _ in keys if u is not None], [a for _, a in keys if a is not None]
    )
    for user_id, anonymous_id in keys:
        known = by_user.get(user_id) if user_id is not None else None
        visitor = by_anon.get(anonymous_id) if anonymous_id is not None else None
        if (user_id is not None and known is None) or (anonymous_id is not None and visitor is None):
            return None
        if known is not None and visitor is not None and known.id != visitor.id:
            return None
    return Resolution(by_user, by_anon)


async def resolve_many(
    session: AsyncSession,
    keys: dict[Key, datetime],
    aliases: Iterable[tuple[str, str]] = (),
) -> Resolution:
    """Resolve (and create) every customer a request mentions with a handful of queries.

    ``keys`` maps each (userId, anonymousId) pair to the earliest time it was seen (a new profile's
    first-seen date). ``aliases`` are (userId, previousId) pairs from ``alias`` calls. Identity changes
    (claiming a visitor profile, merging two profiles) are rare and take the slow path, one by one.
    """
    await repository.serialize_identity_changes(session)
    user_ids = {u for u, _ in keys if u is not None} | {u for u, _ in aliases}
    anon_ids = {a for _, a in keys if a is not None} | {p for _, p in aliases}
    for user_id, previous_id in aliases:
        await link(session, user_id, previous_id, explicit=True, seen_at=keys.get((user_id, None)))
    # Read after every link: a link creates, claims or merges profiles that later pairs may name, and
    # a stale read would alias a visitor id that already is another profile's own.
    by_user, by_anon = await repository.identities(session, user_ids, anon_ids)
    for (user_id, anonymous_id), seen_at in keys.items():
        if user_id is None or anonymous_id is None:
            continue
        known, visitor = by_user.get(user_id), by_anon.get(anonymous_id)
        if known is not None and visitor is not None and known.id == visitor.id:
            continue
        if known is not None and visitor is None:
            await repository.add_alias(session, anonymous_id, known.id)
            by_anon[anonymous_id] = known
            continue
        await link(session, user_id, anonymous_id, explicit=False, seen_at=seen_at)
        by_user, by_anon = await repository.identities(session, user_ids, anon_ids)

    firsts: dict[Key, datetime] = {}
    for (user_id, anonymous_id), seen_at in keys.items():
        key: Key = (user_id, None) if user_id is not None else (None, anonymous_id)
        if (user_id is not None and user_id not in by_user) or (
            user_id is None and anonymous_id not in by_anon
        ):
            firsts[key] = min(seen_at, firsts.get(key, seen_at))
    for user_id, _ in aliases:
        if user_id not in by_user:
            firsts.setdefault((user_id, None), min(keys.values()))
    if firsts:
        await _create(
            session,
            [
                {"user_id": u, "anonymous_id": a, "first_seen_at": at, "last_seen_at": at}
                for (u, a), at in sorted(firsts.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or ""))
            ],
        )
        new_users, new_anons = await repository.identities(
            session, [u for u, _ in firsts if u], [a for u, a in firsts if u is None and a]
        )
        by_user.update(new_users)
        by_anon.update(new_anons)
    return Resolution(by_user, by_anon)


async def link(
    session: AsyncSession, user_id: str, previous_id: str, *, explicit: bool, seen_at: datetime | None
) -> None:
    """Make ``previous_id`` (a visitor id, or with ``alias`` possibly a former userId) part of the
    customer known as ``user_id``: claim the visitor profile, or merge it into the known one."""
    by_user, by_anon = await repository.identities(session, [user_id], [previous_id])
    known, previous = by_user.get(user_id), by_anon.get(previous_id)
    # An alias's previousId may be a userId, the profile's own or a former one (see CustomerUserAlias).
    named = previous is not None and previous.user_id == previous_id
    if previous is None and explicit:
        previous = (await repository.identities(session, [previous_id], []))[0].get(previous_id)
        named = previous is not None
    if previous is None:
        if known is None:
            at = seen_at or utcnow()
            await _create(
                session,
                [{"user_id": user_id, "anonymous_id": previous_id, "first_seen_at": at, "last_seen_at": at}],
            )
        else:
            await repository.add_alias(session, previous_id, known.id)
        return
    if known is None:
        if previous.user_id is None:
            await repository.claim_user_id(session, previous.id, user_id)
        elif explicit and named:
            await repository.rename_user_id(session, previous.id, user_id)
            await repository.add_user_alias(session, previous.user_id, previous.id)
        # Otherwise the visitor id belongs to another known person (a shared device): the user gets a
        # profile of their own and nobody's history is moved.
        return
    if known.id != previous.id and (previous.user_id is None or (explicit and named)):
        await merge(session, source_id=previous.id, target_id=known.id)


async def _create(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Create the customers not there yet, queued in the same transaction for the segment refresher's
    check of new profiles."""
    await segment_repository.queue_newcomers(session, await repository.create_missing(session, rows))


async def merge(session: AsyncSession, *, source_id: int, target_id: int) -> None:
    """Fold profile ``source`` into ``target``: everything recorded about it moves (repository.reattribute),
    its loyalty points too, facts are added up, traits merged (the target's win), its visitor id kept as
    an alias and its userId as a former one, and its id noted as now being ``target`` for the journeys
    started with it. Where both are inside one journey that lets a person in only once
    (``journeys.supersede_duplicates``), the later-entered enrollment is ended."""
    rows = await repository.lock(session, [source_id, target_id])
    source, target = rows.get(source_id), rows.get(target_id)
    if source is None or target is None:
        return
    # Imported here: the journeys and loyalty areas build on customers, not the reverse.
    from domain.journeys import service as journeys
    from domain.loyalty import merging as loyalty

    # Enrollments one person could not have had both of: their awards count once (loyalty.merging).
    once_per_person = await journeys.once_per_person_pairs(session, source_id, target_id)
    # One person inside one journey twice where its re-entry policy allows once: the later goes.
    await journeys.supersede_duplicates(session, source_id, target_id, utcnow())
    await repository.reattribute(session, source_id, target_id)
    await segment_repository.move_stays(session, source_id, target_id)
    await repository.record_merge(session, source_id, target_id)

    await loyalty.fold_member(session, source_id, target_id, utcnow(), once_per_person=once_per_person)
    target.event_count += source.event_count
    target.order_count += source.order_count
    target.lifetime_value = within_lifetime_value(
        Decimal(target.lifetime_value or 0) + Decimal(source.lifetime_value or 0)
    )
    target.first_seen_at = min(target.first_seen_at, source.first_seen_at)
    target.last_seen_at = max(target.last_seen_at, source.last_seen_at)
    target.traits = {**(source.traits or {}), **(target.traits or {})}
    target.email = target.email or source.email
    target.timezone = target.timezone or source.timezone
    target.locale = target.locale or source.locale
    anonymous_id, user_id = source.anonymous_id, source.user_id
    await session.flush()
    await repository.delete_customer(session, source_id)
    session.expunge(source)
    if anonymous_id:
        await repository.add_alias(session, anonymous_id, target_id)
    if user_id:
        await repository.add_user_alias(session, user_id, target_id)
    # The target now owns events older than the refresher's cursor: its segments must be re-evaluated.
    await segment_repository.queue_rechecks(session, [target_id])


async def current_ids(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, int | None]:
    """The profile each id names now: itself, the known customer it was merged into, or ``None`` when
    it was erased. A journey started for a visitor carries the visitor's id; its activities act for
    whom that became, and record nothing more of a person who asked to be forgotten."""
    ids = set(customer_ids)
    found = await repository.current_of(session, ids)
    return {i: found.get(i) for i in ids}


async def hold_current(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, int]:
    """``current_ids`` for rows about to name these customers: the profiles are locked against an
    erasure or a merge until the transaction ends; erased ids are left out."""
    return await repository.hold_current(session, customer_ids)


async def merged_into(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, list[int]]:
    """The profiles merged into each of these (a visitor who logged in): the same person's earlier ids."""
    return await repository.merged_into(session, customer_ids)


async def current_id(session: AsyncSession, customer_id: int) -> int | None:
    return (await current_ids(session, [customer_id]))[customer_id]


def sha256(value: str | None) -> str | None:
    return hashlib.sha256(value.encode()).hexdigest() if value else None


async def get_current(session: AsyncSession, customer_id: int) -> Customer | None:
    """The customer, or the one it was merged into (looked up only when the id is gone)."""
    customer = await repository.get(session, customer_id)
    if customer is None and (moved := (await repository.current_of(session, [customer_id])).get(customer_id)):
        customer = await repository.get(session, moved)
    return customer


async def get_profile(session: AsyncSession, customer_id: int) -> dict[str, Any] | None:
    """The customer as templates and activities see it: plain data, no ORM row. A merged-away id
    gives the profile it became."""
    customer = await get_current(session, customer_id)
    if customer is None:
        return None
    return {
        "id": customer.id,
        "user_id": customer.user_id,
        "email": customer.email,
        "traits": dict(customer.traits or {}),
        "timezone": customer.timezone,
        "locale": customer.locale,
        "lifetime_value": float(customer.lifetime_value or 0),
        "order_count": customer.order_count or 0,
    }


# --- the customer 360 -----------------------------------------------------------------------------


async def former_user_ids(session: AsyncSession, customer_id: int) -> list[str]:
    """The userIds the customer had before (alias renames and merges), oldest first."""
    return await repository.former_user_ids(session, customer_id)


TRAIT_KEY = re.compile(r"^[A-Za-z0-9_.\- ]{1,100}$")


async def search(
    session: AsyncSession,
    *,
    q: str | None = None,
    email: str | None = None,
    trait: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> CustomerPage:
    """Customers matching every filter given, in id order, one page at a time (keyset paging)."""
    trait_filter = None
    if trait is not None:
        key, sep, value = trait.partition(":")
        if not sep or not TRAIT_KEY.fullmatch(key):
            raise InvalidInput({"field": "trait", "problem": "expected key:value, e.g. plan:pro"})
        trait_filter = (key, value)
    rows = await repository.search(
        session, q=q or None, email=email or None, trait=trait_filter, after=after, limit=limit + 1
    )
    items = [CustomerSummary.model_validate(c, from_attributes=True) for c in rows[:limit]]
    return CustomerPage(items=items, next_after=items[-1].id if len(rows) > limit else None)


async def view(
    session: AsyncSession, customer_id: int, *, recent: int = 50, viewer: Viewer | None = None
) -> Customer360:
    from domain.events import repository as events

    customer = await repository.get(session, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id}")
    anonymous_ids = [customer.anonymous_id] if customer.anonymous_id else []
    anonymous_ids += await repository.aliases_of(session, customer_id)
    viewer = viewer or EVERYONE
    sections = {
        name: await section(session, customer_id, recent, viewer) for name, section in SECTIONS.items()
    }
    return Customer360(
        profile=Profile(
            id=customer.id,
            user_id=customer.user_id,
            anonymous_ids=anonymous_ids,
            former_user_ids=await former_user_ids(session, customer_id),
            email=customer.email,
            timezone=customer.timezone,
            locale=customer.locale,
            created_at=customer.created_at,
            updated_at=customer.updated_at,
        ),
        traits=dict(customer.traits or {}),
        facts=Facts(
            first_seen_at=customer.first_seen_at,
            last_seen_at=customer.last_seen_at,
            event_count=customer.event_count,
            track_counts=await events.counts_by_name(session, customer_id, _hidden_events(viewer)),
            order_count=customer.order_count,
            lifetime_value=customer.lifetime_value,
        ),
        recent_events=[
            EventSummary.model_validate(e, from_attributes=True)
            for e in await events.recent_for(session, customer_id, recent, _hidden_events(viewer))
        ],
        **sections,
    )


def _hidden_events(viewer: Viewer):
    """An agent does not see other teams' cases, nor the events about them."""
    if viewer.case_teams is None:
        return None
    from domain.cases import service as cases  # the cases area depends on this one

    return cases.case_events_outside(viewer.case_teams)


async def hold_for_erasure(session: AsyncSession, customer_id: int) -> None:
    """Lock the profile (on PostgreSQL) before the erasure reads what to delete elsewhere: a journey
    being recorded for the customer meanwhile is either recorded first, and found, or waits and finds
    the customer gone (``hold_current``), and then deletes its own workflow."""
    if not await repository.lock(session, [customer_id]):
        raise NotFound(f"no customer {customer_id}")


def erasure_reason(reason: str, field: str = "reason") -> str:
    """The reason an erasure record keeps: an auditor asks why a person was erased, so it must say."""
    if not reason.strip():
        raise InvalidInput({"field": field, "problem": "must say why the customer is erased"})
    return reason.strip()


async def erase(
    session: AsyncSession,
    customer_id: int,
    *,
    by_key_id: int | None,
    reason: str | None,
    workflows_deleted: int = 0,
    workflows_already_gone: int = 0,
) -> Erasure:
    """Right to be forgotten: delete the profile, its events, aliases and enrollments, strip the
    person from the send ledger and the suppression list (which keeps digests of their addresses), and
    keep a record that holds no personal data (with how many of the person's workflow histories the
    caller deleted from Temporal first)."""
    from domain.events import repository as events
    from domain.subscriptions import service as subscriptions  # that area builds on this one

    customer = await repository.get(session, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id}")
    record = await repository.record_erasure(
        session,
        {
            "customer_id": customer.id,
            "user_id_sha256": sha256(customer.user_id),
            "email_sha256": sha256(customer.email),
            "events_erased": await events.count_for(session, customer_id),
            "workflows_deleted": workflows_deleted,
            "workflows_already_gone": workflows_already_gone,
            "erased_by_key_id": by_key_id,
            "reason": reason,
            "erased_at": utcnow(),
        },
        # The audit finds the person by a former userId too (the aliases naming them go with the profile).
        [sha256(u) for u in await repository.former_user_ids(session, customer_id)],
    )
    # Every address the person had, before the ledger and their identify events forget them.
    addresses = (
        {customer.email}
        | await repository.ledger_addresses(session, customer_id)
        | await events.emails_identified(session, customer_id)
    ) - {None}
    await subscriptions.forget_addresses(session, sorted(addresses))
    await repository.anonymise_messages(session, customer_id)
    # The profile goes first: ingestion that is storing events for it right now finishes before the
    # delete (it holds the row share-locked), and none can attribute new ones to it afterwards.
    await repository.delete_customer(session, customer_id)  # aliases, enrollments, ... cascade
    await events.forget_customer(session, customer_id)
    session.expunge(customer)
    return Erasure.model_validate(record, from_attributes=True)


async def erasures_of(session: AsyncSession, user_id: str) -> list[Erasure]:
    return [
        Erasure.model_validate(e, from_attributes=True)
        for e in await repository.erasures(session, sha256(user_id) or "")
    ]


async def update_traits(session: AsyncSession, customer_id: int, traits: dict[str, Any]) -> bool:
    """Merge traits set by the engine itself (a journey's update_trait step); False if no such customer.

    Top-level keys replace, as with identify; email, timezone and locale also update the profile
    columns when they are valid.
    """
    from domain.dates import is_zone
    from domain.events.schemas import normalise_email, normalise_locale

    customer = await repository.get(session, customer_id)
    if customer is None:
        return False
    customer.traits = {**(customer.traits or {}), **traits}
    email, timezone, locale = traits.get("email"), traits.get("timezone"), traits.get("locale")
    if isinstance(email, str):
        with contextlib.suppress(ValueError):
            customer.email = normalise_email(email)
    if is_zone(timezone):
        customer.timezone = timezone
    if isinstance(locale, str):
        customer.locale = normalise_locale(locale) or customer.locale
    # No event records this change: the refresher's next pass re-evaluates the customer's segments.
    await segment_repository.queue_rechecks(session, [customer_id])
    return True
