"""Broadcasts: creating them (template version pinned), their state machine, and the database side of
each batch the BroadcastWorkflow runs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain import dates
from domain.auth.schemas import Principal
from domain.broadcasts import audience, repository
from domain.broadcasts.models import Broadcast
from domain.broadcasts.schemas import BroadcastIn, BroadcastOut
from domain.customers import service as customers_service
from domain.db import utcnow
from domain.email import repository as email_repository
from domain.email import service as email
from domain.email.models import TemplateVersion
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.segments import service as segments
from domain.subscriptions import service as subscriptions

OPERATIONAL = "operational"
# Stored, its workflow not yet known to be started: the API commits the row before it starts the
# workflow (so no transaction waits on Temporal) and marks it scheduled once it has; the workflow's
# first batch takes it on too (the API may have stopped in between), and a worker's start sweep starts
# the workflow of one left so past CREATE_GRACE (runtime/broadcast_start.py). A row withdrawn because
# the start failed leaves the workflow, should it exist after all, nothing to send.
STARTING = "starting"
# How long the create that stored a row as starting owns it: only within this may it withdraw the row
# (its start failed); past it the start sweep may start the workflow (the API stopped before it did).
# Both sides test the stored created_at against their own clock, so of the two exactly one may act
# (with clocks that agree to well within this); the API's attempt at Temporal is bounded far below it.
CREATE_GRACE = timedelta(minutes=2)
ACTIVE = (STARTING, "scheduled", "running", "paused")
FINAL = ("cancelled", "completed", "failed")


def workflow_id(broadcast_id: str) -> str:
    return f"broadcast/{broadcast_id}"


def message_key(broadcast_id: str, customer_id: int) -> str:
    return f"{_key_prefix(broadcast_id)}{customer_id}"


def _key_prefix(broadcast_id: str) -> str:
    return f"broadcast/{broadcast_id}/customer/"


# Why a customer is passed over whose merged-away profile already got (or is getting) the broadcast.
REACHED_BY_MERGE = "already sent to a profile merged into this customer"
# Why a planned recipient is passed over who was erased before their message went out.
ERASED = "customer erased before the send"


def out(row: Broadcast) -> BroadcastOut:
    return BroadcastOut.model_validate(row, from_attributes=True)


async def create(session: AsyncSession, spec: BroadcastIn, *, by: Principal | None = None) -> Broadcast:
    """``by``: the key asking (kept with the broadcast); an operational broadcast needs an admin's."""
    operational = spec.kind == OPERATIONAL
    if operational and not (by and by.has_role()):
        # It reaches people who said no to marketing: one the whole company answers for, not a campaign.
        raise Forbidden("an operational broadcast needs a key with role admin")
    reason = (spec.reason or "").strip()
    if operational and not reason:
        raise InvalidInput({"field": "reason", "problem": "an operational broadcast must say why it is sent"})
    if not operational and spec.reason is not None:
        raise InvalidInput({"field": "reason", "problem": "only an operational broadcast takes a reason"})
    if operational and spec.subscription_group is not None:
        raise InvalidInput(
            {
                "field": "subscription_group",
                "problem": "an operational broadcast goes to every customer, whatever their groups",
            }
        )
    template = await email_repository.get_template(session, spec.template_id)
    if template is None:
        raise InvalidInput({"field": "template_id", "problem": f"no template {spec.template_id!r}"})
    version_number = spec.template_version or template.current_version
    version = await email_repository.get_version(session, spec.template_id, version_number)
    if version is None:
        raise InvalidInput({"field": "template_version", "problem": f"no version {version_number}"})
    wanted = subscriptions.TRANSACTIONAL if operational else subscriptions.MARKETING
    if version.category != wanted:
        # A marketing broadcast with a transactional template would reach people who unsubscribed, with
        # no way out of it; an operational one with a marketing template would send marketing so.
        why = (
            "an operational broadcast is sent past unsubscribes: use a transactional template"
            if operational
            else "a broadcast is marketing email, which honours unsubscribes: use a marketing template "
            "(or send an operational broadcast)"
        )
        raise InvalidInput(
            {
                "field": "template_version" if spec.template_version else "template_id",
                "problem": f"template {spec.template_id!r} version {version_number} is {version.category}; "
                + why,
            }
        )
    group = None if operational else spec.subscription_group or version.subscription_group
    if spec.subscription_group is not None:
        await subscriptions.require_group(session, spec.subscription_group, "subscription_group")
    spec_audience = spec.audience.model_dump()
    await audience.validate(session, spec_audience)
    broadcast_id = spec.id or uuid.uuid4().hex[:12]
    if await repository.get(session, broadcast_id) is not None:
        raise Conflict({"field": "id", "problem": f"a broadcast with id {broadcast_id!r} exists"})
    row = Broadcast(
        id=broadcast_id,
        name=spec.name,
        kind=spec.kind,
        reason=reason or None,
        created_by_key_id=by.key_id if by else None,
        template_id=spec.template_id,
        template_version=version_number,
        subscription_group=group,
        audience=spec_audience,
        send_at=spec.send_at.astimezone(UTC) if spec.send_at else None,  # answered as GET answers it
        local_send_at=spec.local_send_at.isoformat() if spec.local_send_at else None,
        default_timezone=spec.default_timezone,  # every broadcast's dates show in it, not only a local one's
        slot=0,
        rate_per_second=spec.rate_per_second,
        batch_size=spec.batch_size,
        status=STARTING,
        cursor=0,
        sent=0,
        skipped=0,
        failed=0,
        created_at=utcnow(),
    )
    await repository.add(session, row)
    return row


async def started(session: AsyncSession, broadcast_id: str) -> Broadcast:
    """Its workflow is started: scheduled, unless the workflow (or a marketer) moved it on already."""
    await scheduled(session, broadcast_id)
    row = await get(session, broadcast_id)
    await session.refresh(row)
    return row


async def withdraw(session: AsyncSession, broadcast_id: str, *, now: datetime | None = None) -> bool:
    """Its workflow could not be started: the row goes, unless a workflow took it on meanwhile (the
    start failed only as far as the API could tell), or the create outlasted ``CREATE_GRACE`` (the
    start sweep starts it). False: it is being sent, or will be."""
    since = (now or utcnow()) - CREATE_GRACE
    return await repository.delete_if(session, broadcast_id, STARTING, created_after=since)


@dataclass
class Unstarted:
    """A broadcast left starting past its create's grace: what its workflow is started with."""

    id: str
    send_at: datetime | None
    local_time: bool


async def left_starting(session: AsyncSession, *, now: datetime | None = None, limit: int = 100):
    """Broadcasts still starting whose create's grace has passed (oldest first): the API stopped before
    it started their workflow (or before it marked them scheduled)."""
    rows = await repository.starting_before(session, (now or utcnow()) - CREATE_GRACE, limit)
    return [Unstarted(r.id, r.send_at, r.local_send_at is not None) for r in rows]


async def scheduled(session: AsyncSession, broadcast_id: str) -> bool:
    """Its workflow is started (by the API or the sweep, or found started): scheduled, if still
    starting."""
    return await repository.set_if(session, broadcast_id, (STARTING,), status="scheduled")


async def status_of(session: AsyncSession, broadcast_id: str) -> str | None:
    row = await repository.get(session, broadcast_id)
    return row.status if row is not None else None


async def refused_id(session: AsyncSession, broadcast_id: str) -> bool:
    """Still starting, its id's workflow an earlier broadcast's that has ended: it cannot be sent under
    this id. Failed, saying so (the API answers a create so with a 409)."""
    problem = (
        "its id was used by an earlier broadcast, whose workflow is kept: create it again under another id"
    )
    return await repository.set_if(
        session, broadcast_id, (STARTING,), status="failed", error=problem, finished_at=utcnow()
    )


async def get(session: AsyncSession, broadcast_id: str) -> Broadcast:
    row = await repository.get(session, broadcast_id)
    if row is None:
        raise NotFound(f"no broadcast {broadcast_id!r}")
    return row


async def list_broadcasts(session: AsyncSession, limit: int) -> list[BroadcastOut]:
    return [out(r) for r in await repository.list_all(session, limit)]


_TRANSITIONS = {"pause": ("scheduled", "running"), "resume": ("paused",), "cancel": ACTIVE}


async def change(
    session: AsyncSession, broadcast_id: str, action: str, *, by: Principal | None = None
) -> Broadcast:
    """pause / resume / cancel: the database says what the marketer asked, and is committed before
    the workflow is signalled. A pause or cancel holds even if the signal is lost: every batch reads
    the stored status first and stops on it. A resume does not: a paused workflow runs no batch and
    moves only on the signal, so one it could not be told is undone (``resume_not_delivered``).

    The transition is one compare-and-set on the stored status, so of two requests at once that
    conflict (two resumes; a pause read before a cancel committed) exactly one wins and the other is a
    409 naming the state the first left: a pause never brings back a broadcast cancelled meanwhile.
    ``by``: the key asking."""
    row = await get(session, broadcast_id)
    if row.kind == OPERATIONAL and not (by and by.has_role()):
        # Holding or stopping a notice the company must send is the admins' call, as sending it was.
        raise Forbidden(f"only a key with role admin may {action} an operational broadcast")
    target = {"pause": "paused", "resume": "resumed"}.get(action, "cancelled")
    moved = await repository.move(session, broadcast_id, _TRANSITIONS[action], target)
    await session.refresh(row)  # what the statement left (or, if it matched nothing, what stopped it)
    if not moved:
        raise Conflict(f"cannot {action} a broadcast that is {row.status}")
    return row


async def resume_not_delivered(session: AsyncSession, broadcast_id: str, resumed_status: str) -> bool:
    """Back to paused after a resume the workflow never got, unless the status moved on since."""
    return await repository.set_if(session, broadcast_id, (resumed_status,), status="paused")


# -- the database side of one batch ------------------------------------------------------------------


@dataclass
class BatchPlan:
    status: str
    operational: bool = False  # sent as transactional mail: no unsubscribe link, header or tracking
    version: TemplateVersion | None = None
    group_id: str | None = None
    group_name: str | None = None
    last_id: int = 0
    rate_per_second: int | None = None
    # the zone send times were planned in for customers without a known one; their dates show in it too
    default_timezone: str | None = None
    # customers to send to now; the rest of the page is already settled (sent/skipped/failed)
    todo: list[dict[str, Any]] = field(default_factory=list)
    blocked: dict[int, str] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # every ledger key of this page


async def time_slots(
    session: AsyncSession, broadcast_id: str, *, served: set[str] = frozenset()
) -> list[tuple[datetime, list[str]]]:
    """For a local-time broadcast: the UTC instants to send at, each with the timezones it serves
    (``""`` = customers without a known timezone, who get the default one). Earliest first; a time
    already past sends as soon as the broadcast starts (or at once, when planned late).

    ``served``: timezones that already have a send time. The workflow asks again after each send time
    for the zones of the audience not among them (customers who joined or moved there since)."""
    row = await repository.get(session, broadcast_id)
    if row is None:  # withdrawn: its workflow was started after all, and has nothing to send
        return []
    local = datetime.fromisoformat(row.local_send_at)
    zones: set[str] = set()
    after = 0
    while ids := await audience.page(session, row.audience, after, 5000):
        zones |= await repository.timezones(session, ids)
        after = ids[-1]
    by_instant: dict[datetime, list[str]] = {}
    for zone in sorted(zones - served):
        tz = dates.zone(zone, row.default_timezone)
        by_instant.setdefault(local.replace(tzinfo=tz).astimezone(UTC), []).append(zone)
    return sorted(by_instant.items())


async def plan_batch(
    session: AsyncSession, broadcast_id: str, after_id: int, message_id, timezones: list[str] | None = None
) -> BatchPlan:
    """Page the audience after ``after_id``, claim ledger rows, and sort recipients into to-send /
    blocked (suppressed or unsubscribed, checked now) / already settled by an earlier attempt."""
    row = await repository.get(session, broadcast_id)
    if row is None:  # withdrawn: its start looked failed to the API, which said nothing was stored
        return BatchPlan(status="cancelled")
    if row.status in FINAL or row.status == "paused":
        return BatchPlan(status=row.status)
    if row.status in (STARTING, "scheduled"):  # this workflow runs, so it was started
        running = {"status": "running", "started_at": utcnow()}
        if not await repository.set_if(session, broadcast_id, (row.status,), **running):
            session.expunge(row)  # withdrawn, paused or cancelled since it was read: look again
            return await plan_batch(session, broadcast_id, after_id, message_id, timezones)
        await session.refresh(row)
    ids = await audience.page(session, row.audience, after_id, row.batch_size)
    if not ids:
        return BatchPlan(status="done")
    version = await email_repository.get_version(session, row.template_id, row.template_version)
    customers = [c for c in await repository.profiles(session, ids) if c["email"]]
    if timezones is not None:  # this send time's share of the audience
        wanted = set(timezones)
        customers = [c for c in customers if (c["timezone"] or "") in wanted]
    keys = {c["id"]: message_key(broadcast_id, c["id"]) for c in customers}
    meta = {"broadcast_id": broadcast_id} | ({"kind": OPERATIONAL} if row.kind == OPERATIONAL else {})
    now = utcnow()
    statuses = await repository.claim_messages(
        session,
        [
            {
                "idempotency_key": keys[c["id"]],
                "message_id": message_id(keys[c["id"]]),
                "customer_id": c["id"],
                "template_id": row.template_id,
                "template_version": row.template_version,
                "to_address": c["email"],
                "status": "pending",
                "attempts": 0,
                "meta": meta,
                "created_at": now,
            }
            for c in customers
        ],
    )
    pending = [c for c in customers if statuses.get(keys[c["id"]]) == "pending"]
    # Marketing unless created operational, whatever the template says: a broadcast created by an
    # earlier release with a transactional template still honours unsubscribes and the suppression list.
    operational = row.kind == OPERATIONAL
    blocked = await subscriptions.blocked(
        session,
        {c["id"]: c["email"] for c in pending},
        subscriptions.OPERATIONAL if operational else subscriptions.MARKETING,
        None if operational else row.subscription_group,
    )
    # One person, one message: a profile that got it before being merged into this one (further on in
    # the audience) brought its ledger row along.
    merged = await repository.reached_through_other_profiles(
        session,
        _key_prefix(broadcast_id),
        {c["id"]: keys[c["id"]] for c in pending if c["id"] not in blocked},
    )
    blocked |= dict.fromkeys(sorted(merged), REACHED_BY_MERGE)
    await repository.mark_each(
        session,
        [
            {"k": keys[cid], "s": "skipped", "e": reason, "subj": None, "at": None}
            for cid, reason in blocked.items()
        ],
    )
    return BatchPlan(
        status="running",
        operational=operational,
        version=version,
        group_id=row.subscription_group,
        group_name=await subscriptions.group_name(session, row.subscription_group),
        last_id=ids[-1],
        rate_per_second=row.rate_per_second,
        default_timezone=row.default_timezone,
        todo=[c for c in pending if c["id"] not in blocked],
        blocked=blocked,
        keys=list(keys.values()),
    )


async def hold_recipients(
    session: AsyncSession, broadcast_id: str, planned: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Right before sending to these planned recipients: key-share lock their profiles until the
    transaction ends, as a journey send's claim does (``customers.hold_current``, which an erasure's
    ``hold_for_erasure`` waits for, and which waits for an erasure in flight), and re-read their ledger
    rows. Returns the recipients to send to (profile there, row pending at the address it was claimed
    for) and the keys of those erased since the page was planned (their rows were anonymised), to be
    recorded as skipped. Rows settled meanwhile by another attempt are in neither."""
    if not planned:
        return [], []
    held = await customers_service.hold_current(session, [c["id"] for c in planned])
    keys = {c["id"]: message_key(broadcast_id, c["id"]) for c in planned}
    rows = await repository.ledger_rows(session, list(keys.values()))
    todo: list[dict[str, Any]] = []
    erased: list[str] = []
    for c in planned:
        status, address = rows.get(keys[c["id"]], (None, None))
        if status != "pending":
            continue
        if c["id"] in held and address == c["email"]:
            todo.append(c)
        else:
            erased.append(keys[c["id"]])
    return todo, erased


async def record_results(
    session: AsyncSession, sent: dict[str, str | None], failures: list[dict[str, Any]]
) -> None:
    """Sent messages (key -> the subject its recipient got, as a journey send records it); failures
    row by row. The sends are queued for segments on received messages in the same transaction.

    A row an erasure anonymised meanwhile (SQLite, where the send's check does not hold the profile
    until now) keeps neither the subject nor the error (``email.erased_since_claim``).
    """
    gone = await email.erased_since_claim(session, [*sent, *(f["k"] for f in failures)])
    if gone:
        sent = {k: None if k in gone else subject for k, subject in sent.items()}
        erased = [f["k"] in gone and f["s"] == "failed" for f in failures]
        failures = [
            f | {"subj": None, "e": email.erased_error(f["e"])} if e else f
            for f, e in zip(failures, erased, strict=True)
        ]
    await repository.mark_sent(session, sent)
    await segments.note_sends(session, list(sent))
    await repository.mark_each(session, failures)


async def finish_batch(
    session: AsyncSession, broadcast_id: str, slot: int, cursor: int, keys: list[str]
) -> dict[str, int]:
    """Move the cursor past this page and add its outcome to the totals (once, even if retried)."""
    counts = await repository.count_statuses(session, keys)
    await repository.advance(
        session,
        broadcast_id,
        slot,
        cursor,
        counts.get("sent", 0),
        counts.get("skipped", 0),
        counts.get("failed", 0),
    )
    return counts


async def finish(session: AsyncSession, broadcast_id: str, status: str, error: str | None) -> None:
    row = await repository.get(session, broadcast_id)
    if row is None:
        return
    if row.status not in FINAL:
        row.status = status
        row.error = error
        row.finished_at = utcnow()
