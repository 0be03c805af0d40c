"""Segments: validated rules with versions, stored membership kept fresh incrementally, value tiers."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.db import transient, utcnow
from domain.errors import Conflict, InvalidInput, NotFound
from domain.journeys.definition import segment_references  # pure; journeys.service imports this one
from domain.loyalty import service as loyalty
from domain.segments import calendar as cal
from domain.segments import compiler, repository
from domain.segments import rules as r
from domain.segments.evaluate import DEFAULT_LOWEST_TIER, CustomerFacts, evaluate
from domain.segments.models import Segment, SegmentVersion
from domain.segments.schemas import (
    CustomerBrief,
    MemberOut,
    MembersPage,
    PreviewIn,
    PreviewOut,
    RefreshStats,
    ScoresOut,
    SegmentIn,
    SegmentOut,
    SegmentUpdate,
    SegmentVersionOut,
    TierOut,
    TiersOut,
)

log = logging.getLogger(__name__)

ENTERED = "Segment Entered"
EXITED = "Segment Exited"
EVENT_CURSOR = "event_cursor"
WINDOW_EDGES = "window_edges"
# An event id skipped by the cursor (its transaction had not committed) is looked for this long.
PENDING_SECONDS = 60
PENDING_MAX = 10_000


# -- the catalogue of rules ----------------------------------------------------------------------------
class Catalog:
    """Every segment's current rule, parsed; expands references for evaluation.

    ``rules`` holds the segments that can be evaluated. A stored rule today's language refuses (saved
    before one of its checks) cannot, nor can a rule referring to such a segment, to one that is gone
    or back to itself: those are in ``unusable`` with why, left out of every pass and lookup (one old
    rule used to fail them all) until a new rule is saved."""

    def __init__(self, rows: list[tuple[str, int, dict[str, Any]]], lowest_tier: str = DEFAULT_LOWEST_TIER):
        self.versions = {sid: version for sid, version, _ in rows}
        self.parsed: dict[str, r.Rule] = {}  # every rule that parses, usable or not
        self.unreadable: dict[str, str] = {}  # the rules that do not
        for sid, _, raw in rows:
            try:
                self.parsed[sid] = r.parse(raw)
            except r.RuleError as exc:
                problem = f"its rule can no longer be read ({exc.path}: {exc.problem}); save a new one"
                self.unreadable[sid] = problem
        self.rules, self.unusable = usable(self.parsed, self.unreadable)
        self.lowest_tier = lowest_tier  # loyalty tier of customers without an account
        self.erased: frozenset[int] = frozenset()  # repository.erased_address_customers
        self.failing: set[str] = set()  # segments the last pass could not evaluate

    def expanded(self, segment_id: str) -> r.Rule:
        return r.expand(self.rules[segment_id], self.rules)

    def holds_for_blank(self, expanded: r.Rule, at: datetime) -> bool:
        """Whether a customer with nothing yet (no traits, events, address or scores) matches the
        ``expanded`` rule of one of these segments: "never ordered" does, "ordered twice" does not."""
        return evaluate(expanded, CustomerFacts(traits={}, loyalty_tier=self.lowest_tier), at)

    def dependents(self, segment_id: str) -> list[str]:
        """Segments whose rule refers to ``segment_id``, directly or through others (usable or not)."""
        found, frontier = [], {segment_id}
        while frontier:
            nxt = {
                sid
                for sid, rule in self.parsed.items()
                if sid not in found
                and sid not in frontier
                and any(ref.segment_id in frontier for ref in r.references(rule))
            }
            found += sorted(nxt)
            frontier = nxt
        return found


def usable(parsed: dict[str, r.Rule], unreadable: dict[str, str]) -> tuple[dict[str, r.Rule], dict[str, str]]:
    """The rules of ``parsed`` that expand (every segment they refer to, through others too, exists and
    can be evaluated, and none leads back to them), and every other segment with why it cannot be."""
    problems: dict[str, str | None] = {}
    path: list[str] = []

    def problem_of(sid: str) -> str | None:
        if sid in problems:
            return problems[sid]
        if sid in path:
            return "circular reference: " + " -> ".join([*path[path.index(sid) :], sid])
        path.append(sid)
        found = None
        for ref in r.references(parsed[sid]):
            target = ref.segment_id
            if target in unreadable or target not in parsed:
                which = "cannot be evaluated" if target in unreadable else "does not exist"
                found = f"it refers to segment {target!r}, which {which}"
            elif (inner := problem_of(target)) is not None:
                circular = inner.startswith("circular")
                found = inner if circular else f"it refers to segment {target!r}, which cannot be evaluated"
            if found:
                break
        path.pop()
        problems[sid] = found
        return found

    unusable = dict(unreadable)
    for sid in sorted(parsed):
        if (problem := problem_of(sid)) is not None:
            unusable[sid] = problem
    return {sid: rule for sid, rule in parsed.items() if sid not in unusable}, unusable


async def _note_unusable(session: AsyncSession, catalog: Catalog, at: datetime) -> None:
    """Keep on each segment a pass cannot evaluate why (shown by the API and /api/health)."""
    for segment_id, problem in sorted(catalog.unusable.items()):
        if segment_id not in catalog.failing:
            await repository.note_refresh(session, segment_id, at, f"cannot be evaluated: {problem}")
            catalog.failing.add(segment_id)


async def _lowest_tier(session: AsyncSession) -> str:
    return (await loyalty.program(session)).tiers[0].name


async def _lookups(session: AsyncSession, rules: Iterable[r.Rule]) -> tuple[str, frozenset[int]]:
    """What the compiler needs beside ``rules``: the programme's first tier (the loyalty tier of customers
    without an account) and the customers at an erased address (repository.erased_address_customers).
    Each is read only when some rule has a condition reading it, ``loyalty_tier`` or ``subscription``
    (references are not followed: pass expanded rules, or every rule they refer to)."""
    tiered = subscribed = False
    for node in (node for rule in rules for node in r.walk(rule)):
        tiered = tiered or isinstance(node, r.LoyaltyTier)
        subscribed = subscribed or isinstance(node, r.Subscribed)
    lowest_tier = await _lowest_tier(session) if tiered else DEFAULT_LOWEST_TIER
    erased = await repository.erased_address_customers(session) if subscribed else frozenset()
    return lowest_tier, erased


async def _catalog(session: AsyncSession) -> Catalog:
    await repository.share_rule_changes(session)  # the rules read stay current until the transaction ends
    catalog = Catalog(await repository.current_rules(session))
    catalog.failing = await repository.failing_ids(session)
    catalog.lowest_tier, catalog.erased = await _lookups(session, catalog.rules.values())
    return catalog


def _invalid(path: str, problem: str) -> InvalidInput:
    return InvalidInput({"path": path, "problem": problem}, code="invalid_rule")


def parse_rule(raw: Any) -> r.Rule:
    try:
        rule = r.parse(raw)
        r.check_size(rule)
        return rule
    except r.NotAvailable as exc:
        raise InvalidInput({"path": exc.path, "problem": exc.problem}, code="not_available_yet") from exc
    except r.RuleError as exc:
        raise _invalid(exc.path, exc.problem) from exc


async def _check_names(session: AsyncSession, rule: r.Rule) -> None:
    """Subscription groups and loyalty tiers a rule names exist (a typo would silently match nobody)."""
    needs_groups = any(isinstance(n, r.Subscribed) and n.group_id != r.ALL_MARKETING for n in r.walk(rule))
    group_ids = await repository.subscription_group_ids(session) if needs_groups else set()
    tier_names: list[str] | None = None
    for node in r.walk(rule):
        if isinstance(node, r.Subscribed) and node.group_id != r.ALL_MARKETING:
            if node.group_id not in group_ids:
                known = ", ".join(sorted(group_ids)) or "none defined"
                problem = f"no subscription group {node.group_id!r} (known: {known}; '*' for any)"
                raise _invalid(node.path, problem)
        elif isinstance(node, r.LoyaltyTier):
            if tier_names is None:
                tier_names = [t.name for t in (await loyalty.program(session)).tiers]
            for tier in node.tiers:
                if tier not in tier_names:
                    known = ", ".join(tier_names)
                    raise _invalid(node.path, f"no loyalty tier {tier!r} (the programme's tiers: {known})")


def _check_references(rule: r.Rule, segment_id: str | None, catalog: Catalog) -> None:
    """Every referenced segment exists, no chain of references leads back to ``segment_id``, and the
    rule, and every rule that refers to this segment, stays within the size and depth limits once
    expanded."""
    _check_reference_targets(rule, segment_id, catalog)
    rules = catalog.rules
    if segment_id:  # with this rule saved (it may make segments referring to it usable again)
        unreadable = {sid: why for sid, why in catalog.unreadable.items() if sid != segment_id}
        rules, _ = usable({**catalog.parsed, segment_id: rule}, unreadable)
    try:
        r.check_expanded_depth(rule, rules)
    except r.RuleError as exc:
        raise _invalid(exc.path, exc.problem) from exc
    _check_expanded_size(rule, rules, "")
    for dependent in catalog.dependents(segment_id) if segment_id else []:
        if dependent in rules:
            whose = f" segment {dependent!r}, which refers to this one:"
            _check_expanded_size(rules[dependent], rules, whose)


def _check_expanded_size(rule: r.Rule, rules: dict[str, r.Rule], whose: str) -> None:
    expanded = r.expand(rule, rules)
    try:
        r.check_size(expanded)
    except r.RuleError as exc:
        raise _invalid("rule", f"with the segments it refers to expanded,{whose} {exc.problem}") from exc
    if whose and r.nesting(expanded) > r.MAX_DEPTH:
        problem = f"rules nest at most {r.MAX_DEPTH} levels deep (it would nest {r.nesting(expanded)})"
        raise _invalid("rule", f"with the segments it refers to expanded,{whose} {problem}")


def _check_reference_targets(rule: r.Rule, segment_id: str | None, catalog: Catalog) -> None:
    for ref in r.references(rule):
        if ref.segment_id == segment_id:
            raise _invalid(ref.path, f"segment {segment_id!r} cannot refer to itself")
        if ref.segment_id in catalog.unusable:
            problem = catalog.unusable[ref.segment_id]
            raise _invalid(ref.path, f"segment {ref.segment_id!r} cannot be evaluated: {problem}")
        if ref.segment_id not in catalog.parsed:
            raise _invalid(ref.path, f"segment {ref.segment_id!r} does not exist")
        if segment_id is None:
            continue
        chain = _path_to(ref.segment_id, segment_id, catalog, [segment_id, ref.segment_id])
        if chain:
            raise _invalid(ref.path, "circular reference: " + " -> ".join(chain))


def _path_to(start: str, target: str, catalog: Catalog, trail: list[str]) -> list[str] | None:
    for ref in r.references(catalog.parsed.get(start, r.All(()))):
        if ref.segment_id == target:
            return [*trail, target]
        if ref.segment_id in trail:
            continue
        found = _path_to(ref.segment_id, target, catalog, [*trail, ref.segment_id])
        if found:
            return found
    return None


# -- CRUD ----------------------------------------------------------------------------------------------
async def _out(session: AsyncSession, segment: Segment) -> SegmentOut:
    version = await repository.get_version(session, segment.id, segment.current_version)
    return _described(segment, version.rule, await repository.member_count(session, segment.id))


def _described(segment: Segment, rule: dict[str, Any], members: int) -> SegmentOut:
    return SegmentOut(
        id=segment.id,
        name=segment.name,
        description=segment.description,
        version=segment.current_version,
        rule=rule,
        members=members,
        created_at=segment.created_at,
        updated_at=segment.updated_at,
        refresh_failed_at=segment.refresh_failed_at,
        refresh_error=segment.refresh_error,
    )


async def _segment(session: AsyncSession, segment_id: str, *, lock: bool = False) -> Segment:
    found = await repository.get(session, segment_id, lock=lock)
    if found is None:
        raise NotFound(f"segment {segment_id!r} does not exist")
    return found


async def create(session: AsyncSession, spec: SegmentIn, *, now: datetime | None = None) -> SegmentOut:
    rule = parse_rule(spec.rule)
    await repository.lock_rule_changes(session)  # before the rules its references are checked against
    segment_id = spec.id or uuid.uuid4().hex[:12]
    if await repository.get(session, segment_id) is not None:
        raise Conflict({"field": "id", "problem": f"a segment with id {segment_id!r} exists"})
    _check_references(rule, segment_id, await _catalog(session))
    await _check_names(session, rule)
    at = now or utcnow()
    segment = Segment(
        id=segment_id,
        name=spec.name,
        description=spec.description,
        current_version=1,
        created_at=at,
        updated_at=at,
    )
    await repository.add(session, segment)
    await repository.add(
        session, SegmentVersion(segment_id=segment_id, version=1, rule=spec.rule, created_at=at)
    )
    await rebuild(session, segment_id, now=at)
    return await _out(session, segment)


async def update(
    session: AsyncSession, segment_id: str, spec: SegmentUpdate, *, now: datetime | None = None
) -> SegmentOut:
    if spec.rule is not None:
        rule = parse_rule(spec.rule)
        await repository.lock_rule_changes(session)  # taken before the row, as create takes it
    segment = await _segment(session, segment_id, lock=True)
    at = now or utcnow()
    if spec.rule is not None:
        _check_references(rule, segment_id, await _catalog(session))
        await _check_names(session, rule)
        segment.current_version += 1
        await repository.add(
            session,
            SegmentVersion(
                segment_id=segment_id, version=segment.current_version, rule=spec.rule, created_at=at
            ),
        )
    if spec.name is not None:
        segment.name = spec.name
    if spec.description is not None:
        segment.description = spec.description
    segment.updated_at = at
    if spec.rule is not None:
        segment.refresh_failed_at = segment.refresh_error = None  # rebuilt below, or the save fails
        catalog = await _catalog(session)
        usable_now = [sid for sid in catalog.dependents(segment_id) if sid in catalog.rules]
        for sid in [segment_id, *usable_now]:
            await rebuild(session, sid, now=at, catalog=catalog)
            if sid != segment_id and sid in catalog.failing:
                await repository.note_refresh(session, sid, None, None)
    return await _out(session, segment)


async def failing(session: AsyncSession) -> list[str]:
    """Segments a background pass could not evaluate: their membership is stale."""
    return sorted(await repository.failing_ids(session))


async def delete(session: AsyncSession, segment_id: str) -> None:
    # Locked before the checks: a broadcast or journey taking the segment up (repository.hold) either
    # committed before this lock, and the checks see it, or waits and finds the segment gone; so does
    # a save of a rule referring to it (repository.lock_rule_changes).
    await repository.lock_rule_changes(session)
    if await repository.lock_for_delete(session, segment_id) is None:
        raise NotFound(f"segment {segment_id!r} does not exist")
    journeys = sorted(
        {
            journey_id
            for journey_id, definition in await repository.published_journey_definitions(session)
            if _mentions_segment(definition, segment_id)
        }
    )
    # A broadcast to the segment reads its members as it goes: with the segment gone it would finish
    # having sent nothing (or send to a new segment given the same id).
    broadcasts = [
        broadcast_id
        for broadcast_id, audience in await repository.unfinished_broadcast_audiences(session)
        if audience.get("kind") == "segment" and audience.get("segment_id") == segment_id
    ]
    dependents = (await _catalog(session)).dependents(segment_id)
    # every user at once, so the marketer sees in one answer all there is to change first
    users = {
        "journeys": (journeys, "used by published journeys"),
        "broadcasts": (broadcasts, "the audience of broadcasts still to send"),
        "segments": (dependents, "used by other segments"),
    }
    found = {kind: ids for kind, (ids, _) in users.items() if ids}
    if found:
        problem = ", ".join(says for ids, says in users.values() if ids)
        raise Conflict({"problem": f"segment {segment_id!r} is {problem}", **found}, code="segment_in_use")
    await repository.delete_segment(session, segment_id)


def _mentions_segment(definition: Any, segment_id: str) -> bool:
    """Whether a journey definition refers to the segment, where the journey language names one
    (a key called ``segment`` elsewhere, e.g. a trait a journey sets, is no reference)."""
    return any(ref.segment == segment_id for ref in segment_references(definition))


async def get(session: AsyncSession, segment_id: str) -> SegmentOut:
    return await _out(session, await _segment(session, segment_id))


async def list_all(session: AsyncSession) -> list[SegmentOut]:
    return [_described(*row) for row in await repository.list_all(session)]


async def versions(session: AsyncSession, segment_id: str) -> list[SegmentVersionOut]:
    await _segment(session, segment_id)
    return [
        SegmentVersionOut(segment_id=v.segment_id, version=v.version, rule=v.rule, created_at=v.created_at)
        for v in await repository.versions(session, segment_id)
    ]


async def preview(session: AsyncSession, spec: PreviewIn, *, now: datetime | None = None) -> PreviewOut:
    """Count and sample of who a rule selects right now; nothing is stored."""
    rule = parse_rule(spec.rule)
    catalog = await _catalog(session)
    _check_references(rule, None, catalog)
    await _check_names(session, rule)
    expanded = r.expand(rule, catalog.rules)
    at = now or utcnow()
    dialect = session.bind.dialect.name
    # The catalogue read its lookups for the saved rules; this rule is unsaved and may need others.
    lowest_tier, erased = await _lookups(session, [expanded])
    known = {"lowest_tier": lowest_tier, "erased": erased}
    count = await repository.scalar(session, compiler.count_query(expanded, dialect, at, **known))
    sample_query = (
        compiler.members_query(expanded, dialect, at, **known).order_by(None).limit(spec.sample_size)
    )
    ids = sorted(await repository.matching_ids(session, sample_query))
    sample = [
        CustomerBrief(id=i, user_id=u, email=e) for i, u, e in await repository.customers_brief(session, ids)
    ]
    return PreviewOut(count=count, sample=sample)


async def members(session: AsyncSession, segment_id: str, *, after: int = 0, limit: int = 100) -> MembersPage:
    await _segment(session, segment_id)
    rows = await repository.members_page(session, segment_id, after, limit)
    page = [MemberOut(customer_id=c, user_id=u, email=e, entered_at=at) for c, u, e, at in rows]
    return MembersPage(members=page, next_after=page[-1].customer_id if len(page) == limit else None)


# -- evaluation -------------------------------------------------------------------------------------------
async def exists(session: AsyncSession, segment_id: str, *, hold: bool = False) -> bool:
    """``hold``: the caller saves something that uses the segment; a concurrent delete waits for its
    transaction (and then refuses) rather than both succeeding."""
    if hold:
        return await repository.hold(session, segment_id)
    return await repository.get(session, segment_id) is not None


async def member_ids(session: AsyncSession, segment_id: str, after: int, limit: int) -> list[int]:
    """Current members in ascending id order, one page (broadcast audiences)."""
    return [row[0] for row in await repository.members_page(session, segment_id, after, limit)]


async def matches(
    session: AsyncSession, segment_id: str, customer_id: int, *, now: datetime | None = None
) -> bool:
    """Decide for one customer, live (journey branches and entry filters)."""
    catalog = await _catalog(session)
    if segment_id in catalog.unusable:
        raise NotFound(f"segment {segment_id!r} cannot be evaluated: {catalog.unusable[segment_id]}")
    if segment_id not in catalog.rules:
        raise NotFound(f"segment {segment_id!r} does not exist")
    return await matches_rule(session, catalog.expanded(segment_id), customer_id, now=now)


async def matches_rule(
    session: AsyncSession, expanded: r.Rule, customer_id: int, *, now: datetime | None = None
) -> bool:
    facts = await repository.customer_facts(
        session,
        customer_id,
        set(r.dependencies(expanded).event_names),
        lowest_tier=await _lowest_tier(session),
    )
    return facts is not None and evaluate(expanded, facts, now or utcnow())


async def rebuild(
    session: AsyncSession, segment_id: str, *, now: datetime | None = None, catalog: Catalog | None = None
) -> RefreshStats:
    """Full evaluation of one segment over every customer, applied as entries and exits."""
    catalog = catalog or await _catalog(session)
    at = now or utcnow()
    query = compiler.members_query(
        catalog.expanded(segment_id),
        session.bind.dialect.name,
        at,
        lowest_tier=catalog.lowest_tier,
        erased=catalog.erased,
    )
    matched = await repository.matching_ids(session, query)
    current = await repository.current_members(session, segment_id)
    entered = await repository.open_memberships(session, segment_id, matched - current, at)
    exited = await repository.close_memberships(session, segment_id, current - matched, at)
    properties = _event_properties(segment_id, catalog)
    await repository.record_events(session, ENTERED, properties, entered, at)
    await repository.record_events(session, EXITED, properties, exited, at)
    return RefreshStats(entered=len(entered), exited=len(exited), customers=len(matched))


async def rebuild_reading_group(
    session: AsyncSession, group_id: str, *, now: datetime | None = None
) -> list[str]:
    """Rebuild every segment whose rule, references expanded, has a ``subscription`` condition on
    ``group_id``; returns their ids. The group's ``opt_in`` flag decides the condition for customers
    without a choice, and a change of it is no event, so the incremental refresher would miss it."""
    return await _rebuild_reading(
        session, lambda node: isinstance(node, r.Subscribed) and node.group_id == group_id, now
    )


async def rebuild_reading_loyalty_tier(session: AsyncSession, *, now: datetime | None = None) -> list[str]:
    """Rebuild every segment whose rule, references expanded, has a ``loyalty_tier`` condition; returns
    their ids. Customers without an account are in the programme's first tier, so replacing that tier
    moves them all, and it is no event of theirs."""
    return await _rebuild_reading(session, lambda node: isinstance(node, r.LoyaltyTier), now)


async def _rebuild_reading(
    session: AsyncSession, reads: Callable[[Any], bool], now: datetime | None
) -> list[str]:
    catalog = await _catalog(session)
    at = now or utcnow()
    reading = [
        segment_id
        for segment_id in sorted(catalog.rules)
        if any(reads(node) for node in r.walk(catalog.expanded(segment_id)))
    ]
    for segment_id in reading:
        await rebuild(session, segment_id, now=at, catalog=catalog)
    return reading


def _event_properties(segment_id: str, catalog: Catalog) -> dict[str, Any]:
    return {"segment_id": segment_id, "segment_version": catalog.versions[segment_id]}


async def reevaluate(
    session: AsyncSession,
    segment_id: str,
    *,
    may_enter: repository.Scope,
    may_exit: repository.Scope,
    catalog: Catalog,
    at: datetime,
) -> RefreshStats:
    """Re-evaluate some customers against one segment: those of ``may_enter`` outside it, those of
    ``may_exit`` inside it (whoever can have moved only one way needs no check the other way). Each
    is one statement that evaluates, compares with stored membership and writes the change and its
    Segment Entered/Exited events (PostgreSQL; SQLite records the events in a second one)."""
    rule, properties = catalog.expanded(segment_id), _event_properties(segment_id, catalog)
    known = {"lowest_tier": catalog.lowest_tier, "erased": catalog.erased}
    exited = await repository.exit_unmatched(
        session, segment_id, rule, may_exit, at, **known, record=(EXITED, properties)
    )
    entered = await repository.enter_matching(
        session, segment_id, rule, may_enter, at, **known, record=(ENTERED, properties)
    )
    return RefreshStats(entered=len(entered), exited=len(exited))


@asynccontextmanager
async def _on_its_own(
    session: AsyncSession, segment_id: str, work: str, catalog: Catalog, at: datetime
) -> AsyncIterator[None]:
    """One segment's share of a background pass, in a savepoint: a segment whose statements fail (one
    stored before a limit of today's, say) is left as it was, and the pass goes on with the others
    instead of failing for all of them, over and over. The failure is logged and kept on the segment
    (shown by the API and /api/health) until a pass evaluates it again. Errors worth a retry (a
    deadlock, a busy database) still fail the whole pass, which is then repeated."""
    try:
        async with session.begin_nested():
            yield
    except Exception as exc:
        if transient(exc):
            raise
        log.exception("segment %r: %s failed; its membership is left as it was", segment_id, work)
        await repository.note_refresh(session, segment_id, at, f"{work} failed: {_summary(exc)}")
        catalog.failing.add(segment_id)
    else:
        if segment_id in catalog.failing:
            await repository.note_refresh(session, segment_id, None, None)
            catalog.failing.discard(segment_id)


def _summary(exc: Exception) -> str:
    """The error's first line, without the statement and parameters SQLAlchemy appends."""
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"[:300]


async def refresh_customers(
    session: AsyncSession,
    customer_ids: set[int] | list[int],
    *,
    now: datetime | None = None,
    segment_ids: list[str] | None = None,
    catalog: Catalog | None = None,
) -> RefreshStats:
    """Re-evaluate only these customers against every segment (or ``segment_ids``), both ways; a
    segment that fails is logged and skipped (``_on_its_own``)."""
    scope = set(customer_ids)
    total = RefreshStats(customers=len(scope))
    if not scope:
        return total
    catalog = catalog or await _catalog(session)
    at = now or utcnow()
    for segment_id in segment_ids if segment_ids is not None else sorted(catalog.rules):
        async with _on_its_own(session, segment_id, "re-evaluating customers", catalog, at):
            stats = await reevaluate(
                session, segment_id, may_enter=scope, may_exit=scope, catalog=catalog, at=at
            )
            total.entered += stats.entered
            total.exited += stats.exited
    return total


async def refresh_from_events(
    session: AsyncSession, *, batch_size: int = 5_000, now: datetime | None = None
) -> int:
    """One pass of the incremental refresher: customers of events stored since the last pass.

    Reads events by id after a cursor kept in the database, in the same transaction as the membership
    changes, so a crash repeats the pass and a repeat changes nothing. An id skipped because its
    transaction was still open is retried for a while rather than lost. Each segment re-evaluates only
    the customers whose new events can change it (compiler.change_signals: events its conditions
    count, changes of the traits and state it reads), and only in the direction those events can move
    it; a segment none of the new events concern is skipped without building anything. Customers
    queued for a recheck (a merge or a journey's trait update changed them without an event of
    theirs: repository.queue_rechecks) are evaluated both ways, and so are new customers
    (repository.queue_newcomers), once, by the segments a blank profile matches. The touched
    customers are found inside the evaluating statement: the events stay in the database.
    """
    if not await repository.has_work(session, EVENT_CURSOR):
        return 0
    at = now or utcnow()
    progress = await repository.state(session, EVENT_CURSOR)
    pending = {int(i): float(t) for i, t in (progress.pending or [])}
    batch = await repository.event_batch(session, progress.cursor, sorted(pending), batch_size)
    progress.ran_at = at
    if batch.has_gaps:
        _note_gaps(batch.after, await repository.event_ids(session, batch), pending)
    for event_id in batch.retried:
        pending.pop(event_id, None)
    progress.cursor = batch.upto
    _expire_pending(progress, pending)
    rechecks = await repository.take_rechecks(session, batch_size)
    newcomers = await repository.take_newcomers(session, batch_size)
    if not batch.size and not rechecks and not newcomers:
        return 0

    catalog = await _catalog(session)
    await _note_unusable(session, catalog, at)
    dialect = session.bind.dialect.name
    for segment_id in sorted(catalog.rules):
        rule = catalog.expanded(segment_id)
        # Customers queued for a recheck are evaluated both ways against every segment. New customers
        # start blank and get everything else through their events, which the signals cover; so they
        # are evaluated the same way, once, only where a blank profile matches ("never ordered").
        both_ways = rechecks | newcomers if newcomers and catalog.holds_for_blank(rule, at) else rechecks
        if compiler.may_signal(rule, batch.kinds):
            signals = compiler.change_signals(rule, dialect, at)
        elif both_ways:
            signals = compiler.NO_SIGNALS
        else:
            continue  # no new event concerns this segment: nothing is built or run for it
        async with _on_its_own(session, segment_id, "the refresh of new events", catalog, at):
            await reevaluate(
                session,
                segment_id,
                may_enter=repository.batch_customers(dialect, batch, signals.raises, both_ways),
                may_exit=repository.batch_customers(dialect, batch, signals.lowers, both_ways),
                catalog=catalog,
                at=at,
            )
    return batch.size + len(rechecks) + len(newcomers)


def _note_gaps(cursor: int, fresh: list[int], pending: dict[int, float]) -> None:
    """Ids missing between the cursor and the newest event read may belong to open transactions."""
    clock = time.time()
    previous = cursor
    for event_id in fresh:
        for gap in range(previous + 1, min(event_id, previous + 1 + PENDING_MAX)):
            pending.setdefault(gap, clock)
        previous = event_id


def _expire_pending(progress, pending: dict[int, float]) -> None:
    horizon = time.time() - PENDING_SECONDS
    kept = sorted((i, t) for i, t in pending.items() if t >= horizon)[-PENDING_MAX:]
    progress.pending = [[i, t] for i, t in kept]


async def note_sends(session: AsyncSession, message_keys: list[str]) -> None:
    """Messages just recorded as sent (in this transaction): their customers are re-evaluated by the
    next window-edge pass against the segments on received messages. Queued with the send, not found
    later by its ``sent_at``, so a send that commits after a pass read the messages is not lost."""
    await repository.queue_sends(session, message_keys)


async def refresh_window_edges(session: AsyncSession, *, now: datetime | None = None) -> RefreshStats:
    """Move customers whose time windows moved since the last pass, and only them.

    A window "within N days" loses events whose timestamp crossed now - N days since the last pass;
    the customers owning those events are re-evaluated. Date traits relative to today (within the last
    N days, birthdays) change when some zone's date changes; those segments are re-evaluated whole.
    Customers sent a message since the last pass (queued by note_sends) are picked up here for
    segments on received messages; the queue is emptied whether or not such a segment exists.
    """
    at = now or utcnow()
    progress = await repository.state(session, WINDOW_EDGES)
    since = progress.ran_at
    sent_to = await repository.take_sends(session)  # before any customer is locked, as erasure expects
    catalog = await _catalog(session)
    await _note_unusable(session, catalog, at)
    total = RefreshStats()
    for segment_id in sorted(catalog.rules):
        deps = r.dependencies(catalog.expanded(segment_id))
        # Sends are not events: segments on received messages pick new sends up here too.
        timed = deps.event_windows or deps.messages or deps.clock_traits
        if not timed:
            continue
        if since is None or (deps.clock_traits and _some_date_changed(since, at)):
            stats = RefreshStats()
            async with _on_its_own(session, segment_id, "the rebuild at a window edge", catalog, at):
                stats = await rebuild(session, segment_id, now=at, catalog=catalog)
        else:
            crossing: set[int] = set()
            for name, days in deps.event_windows:
                span = timedelta(days=days)
                crossing |= await repository.customers_with_events_between(
                    session, name, since - span, at - span
                )
            if deps.messages:
                crossing |= sent_to
            for days in deps.message_windows:
                span = timedelta(days=days)
                crossing |= await repository.customers_with_messages_between(session, since - span, at - span)
            stats = await refresh_customers(
                session, crossing, now=at, segment_ids=[segment_id], catalog=catalog
            )
        total.entered += stats.entered
        total.exited += stats.exited
        total.customers += stats.customers
    progress.ran_at = at
    return total


def _some_date_changed(since: datetime, now: datetime) -> bool:
    if cal.utc_today(since) != cal.utc_today(now):
        return True
    return any(cal.local_date(zone, since) != cal.local_date(zone, now) for zone in cal.known_zones())


# -- value tiers and RFM -----------------------------------------------------------------------------
async def recompute_scores(
    session: AsyncSession,
    purchase_event: str,
    revenue_property: str = "revenue",
    *,
    now: datetime | None = None,
) -> RefreshStats:
    """Recompute tiers and RFM; customers whose scores changed are re-evaluated in segments using them."""
    at = now or utcnow()
    changed = await repository.recompute_scores(session, purchase_event, revenue_property, at)
    catalog = await _catalog(session)
    using = [sid for sid in sorted(catalog.rules) if r.dependencies(catalog.expanded(sid)).scores]
    stats = await refresh_customers(session, changed, now=at, segment_ids=using, catalog=catalog)
    stats.customers = len(changed)
    return stats


async def scores_for(session: AsyncSession, customer_id: int) -> ScoresOut | None:
    """The customer's lifetime value, order count, value tier and RFM (None before the first pass)."""
    found = await repository.score(session, customer_id)
    return ScoresOut.model_validate(found, from_attributes=True) if found is not None else None


async def tiers(session: AsyncSession) -> TiersOut:
    rows = {
        tier: (n, low, high, revenue)
        for tier, n, low, high, revenue in await repository.tier_summary(session)
    }
    total = sum(revenue for _, _, _, revenue in rows.values()) or 0.0
    out = []
    for tier in r.TIERS:
        n, low, high, revenue = rows.get(tier, (0, None, None, 0.0))
        out.append(
            TierOut(
                tier=tier,
                customers=n,
                min_ltv=low,
                max_ltv=high,
                revenue=revenue,
                revenue_share=(revenue / total) if total else 0.0,
            )
        )
    top = sum(t.revenue_share for t in out if t.tier != "small")
    return TiersOut(tiers=out, top_20_percent_revenue_share=top)
