from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, case, delete, func, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from domain.customers.models import Customer
from domain.db import insert_ignoring_conflicts, utcnow
from domain.email.models import Message, TemplateVersion
from domain.events.models import Event
from domain.journeys.models import (
    CapReservation,
    Enrollment,
    Journey,
    JourneyListener,
    JourneySendSlot,
    JourneyStep,
    JourneyVersion,
)


async def get(session: AsyncSession, journey_id: str) -> Journey | None:
    return await session.get(Journey, journey_id)


async def list_all(session: AsyncSession) -> list[Journey]:
    return list(await session.scalars(select(Journey).order_by(Journey.created_at, Journey.id)))


async def add(session: AsyncSession, row) -> None:
    session.add(row)
    await session.flush()


async def latest_version_number(session: AsyncSession, journey_id: str) -> int:
    found = await session.scalar(
        select(func.max(JourneyVersion.version)).where(JourneyVersion.journey_id == journey_id)
    )
    return found or 0


async def get_version(session: AsyncSession, journey_id: str, version: int) -> JourneyVersion | None:
    return await session.scalar(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == journey_id, JourneyVersion.version == version
        )
    )


async def _live_versions(session: AsyncSession, entered_by: ColumnElement[bool]) -> list[JourneyVersion]:
    """The published version of every live journey whose entry ``entered_by`` selects."""
    stmt = (
        select(JourneyVersion)
        .join(Journey, Journey.id == JourneyVersion.journey_id)
        .where(Journey.status == "published", JourneyVersion.version == Journey.published_version, entered_by)
    )
    return list(await session.scalars(stmt))


async def live_versions(session: AsyncSession, event_names: set[str]) -> list[JourneyVersion]:
    """The published version of every live journey whose entry is one of these event names."""
    return await _live_versions(session, JourneyVersion.trigger_event.in_(event_names))


async def live_versions_without_event(session: AsyncSession) -> list[JourneyVersion]:
    """Published versions of live journeys that no event enrolls into (date, segment, manual)."""
    return await _live_versions(session, JourneyVersion.trigger_event == "")


async def customers_with_trait(
    session: AsyncSession, after_id: int, limit: int
) -> list[tuple[int, dict, str | None]]:
    """A page of customers (id, traits, timezone), in id order, for sweeps over date traits."""
    rows = await session.execute(
        select(Customer.id, Customer.traits, Customer.timezone)
        .where(Customer.id > after_id)
        .order_by(Customer.id)
        .limit(limit)
    )
    return [(i, t or {}, tz) for i, t, tz in rows]


async def enrollment(session: AsyncSession, workflow_id: str) -> Enrollment | None:
    return await session.scalar(select(Enrollment).where(Enrollment.workflow_id == workflow_id))


async def record_enrollments(session: AsyncSession, rows: list[dict]) -> None:
    if rows:
        await session.execute(insert_ignoring_conflicts(session, Enrollment, ["workflow_id"]), rows)


async def upsert_closed_enrollment(session: AsyncSession, values: dict) -> None:
    """Insert the enrollment closed, or close the existing row (status and completion time only)."""
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(Enrollment.__table__).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["workflow_id"],
        set_={"status": stmt.excluded.status, "completed_at": stmt.excluded.completed_at},
        # A superseded enrollment was ended by the merge: its record stays as the merge left it.
        where=Enrollment.__table__.c.superseded_by.is_(None),
    )
    await session.execute(stmt)


async def finish_enrollment(session: AsyncSession, workflow_id: str, status: str, at) -> None:
    await session.execute(
        update(Enrollment)
        .where(Enrollment.workflow_id == workflow_id, Enrollment.superseded_by.is_(None))
        .values(status=status, completed_at=at)
    )


async def active_enrollments_of(session: AsyncSession, customer_ids: list[int]) -> list[Enrollment]:
    return list(
        await session.scalars(
            select(Enrollment)
            .where(
                Enrollment.customer_id.in_(customer_ids),
                Enrollment.status == "active",
                Enrollment.superseded_by.is_(None),
            )
            .order_by(Enrollment.id)
        )
    )


async def enrollments_of_customers(session: AsyncSession, customer_ids: list[int]) -> list[Enrollment]:
    """Every enrollment of these customers, whatever its status."""
    return list(
        await session.scalars(
            select(Enrollment).where(Enrollment.customer_id.in_(customer_ids)).order_by(Enrollment.id)
        )
    )


async def definitions_of(
    session: AsyncSession, versions: set[tuple[str, int]]
) -> dict[tuple[str, int], dict]:
    """The definition of each of these (journey, version)."""
    if not versions:
        return {}
    rows = await session.execute(
        select(JourneyVersion.journey_id, JourneyVersion.version, JourneyVersion.definition).where(
            JourneyVersion.journey_id.in_(sorted({j for j, _ in versions}))
        )
    )
    return {(j, v): definition for j, v, definition in rows if (j, v) in versions}


async def supersede(session: AsyncSession, workflow_id: str, by_workflow_id: str, at) -> None:
    await session.execute(
        update(Enrollment)
        .where(Enrollment.workflow_id == workflow_id)
        .values(status="exited", completed_at=at, superseded_by=by_workflow_id)
    )
    await remove_listeners(session, workflow_id)


async def superseded_by(session: AsyncSession, workflow_id: str) -> str | None:
    return await session.scalar(select(Enrollment.superseded_by).where(Enrollment.workflow_id == workflow_id))


async def enrollments_of(
    session: AsyncSession, journey_id: str, limit: int, before_id: int | None = None
) -> list[Enrollment]:
    stmt = select(Enrollment).where(Enrollment.journey_id == journey_id).order_by(Enrollment.id.desc())
    if before_id is not None:
        stmt = stmt.where(Enrollment.id < before_id)
    return list(await session.scalars(stmt.limit(limit)))


# --- listeners: which enrollments wait for which of a customer's events -------------------------------


async def add_listeners(session: AsyncSession, workflow_id: str, customer_id: int, names: list[str]) -> None:
    if names:
        await session.execute(
            insert_ignoring_conflicts(session, JourneyListener, ["workflow_id", "event_name"]),
            [
                {
                    "workflow_id": workflow_id,
                    "customer_id": customer_id,
                    "event_name": n,
                    "created_at": utcnow(),
                }
                for n in names
            ],
        )


async def remove_listeners(session: AsyncSession, workflow_id: str, names: list[str] | None = None) -> None:
    """The enrollment's listeners: all of them, or those for ``names``."""
    stmt = delete(JourneyListener).where(JourneyListener.workflow_id == workflow_id)
    if names is not None:
        stmt = stmt.where(JourneyListener.event_name.in_(names))
    await session.execute(stmt)


async def listeners_for(session: AsyncSession, pairs: set[tuple[int, str]]) -> list[tuple[int, str, str]]:
    """``(customer_id, event_name, workflow_id)`` for every enrollment listening to one of the pairs."""
    if not pairs:
        return []
    customers = {c for c, _ in pairs}
    names = {n for _, n in pairs}
    rows = await session.execute(
        select(JourneyListener.customer_id, JourneyListener.event_name, JourneyListener.workflow_id).where(
            JourneyListener.customer_id.in_(customers), JourneyListener.event_name.in_(names)
        )
    )
    return [(c, n, w) for c, n, w in rows if (c, n) in pairs]


async def events_since(
    session: AsyncSession, customer_id: int, names: list[str], after_event_id: int, since: datetime | None
) -> list[Event]:
    stmt = (
        select(Event)
        .where(Event.customer_id == customer_id, Event.name.in_(names), Event.id > after_event_id)
        .order_by(Event.id)
        .limit(100)
    )
    if since is not None:
        stmt = stmt.where(Event.received_at >= since)
    return list(await session.scalars(stmt))


# --- step records and the numbers built from them ---------------------------------------------------


async def upsert_steps(session: AsyncSession, rows: list[dict]) -> None:
    """Insert step records, or update when they left (one statement for the batch)."""
    if not rows:
        return
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(JourneyStep.__table__)  # Core: no ORM bulk-insert bookkeeping per batch
    stmt = stmt.on_conflict_do_update(
        index_elements=["workflow_id", "node_id", "visit"],
        set_={
            "left_at": func.coalesce(stmt.excluded.left_at, JourneyStep.left_at),
            "outcome": func.coalesce(stmt.excluded.outcome, JourneyStep.outcome),
        },
    )
    await session.execute(stmt, rows)


async def steps_of(session: AsyncSession, workflow_ids: list[str]) -> list[JourneyStep]:
    return list(
        await session.scalars(
            select(JourneyStep)
            .where(JourneyStep.workflow_id.in_(workflow_ids))
            .order_by(JourneyStep.entered_at, JourneyStep.id)
        )
    )


async def node_stats(session: AsyncSession, journey_id: str) -> list[tuple]:
    """Per node: entered, completed (left), waiting now (entered, not left, enrollment active),
    converted (enrollments that passed the node and reached the goal)."""
    s = JourneyStep
    if session.bind.dialect.name != "postgresql":  # SQLite walks the steps in node order: one pass
        waiting_now = and_(s.left_at.is_(None), Enrollment.status == "active")
        stmt = (
            select(
                s.node_id,
                func.count(),
                func.count(s.left_at),
                func.sum(case((waiting_now, 1), else_=0)),
                func.count(func.distinct(case((Enrollment.status == "converted", Enrollment.id)))),
            )
            .join(Enrollment, Enrollment.workflow_id == s.workflow_id, isouter=True)
            .where(s.journey_id == journey_id)
            .group_by(s.node_id)
        )
        return list((await session.execute(stmt)).all())
    # PostgreSQL: three reads joined by node. Visits need no enrollment, and only the few open or
    # converted steps meet theirs; one grouping's count(DISTINCT) sorted every step (twice the time).
    visits = (
        select(s.node_id, func.count().label("entered"), func.count(s.left_at).label("completed"))
        .where(s.journey_id == journey_id)
        .group_by(s.node_id)
        .subquery()
    )
    waiting = (
        select(s.node_id, func.count().label("n"))
        .join(Enrollment, Enrollment.workflow_id == s.workflow_id)
        .where(s.journey_id == journey_id, s.left_at.is_(None), Enrollment.status == "active")
        .group_by(s.node_id)
        .subquery()
    )
    converted = (  # an enrollment's workflow id is unique: counting them counts enrollments
        select(s.node_id, func.count(func.distinct(s.workflow_id)).label("n"))
        .join(Enrollment, Enrollment.workflow_id == s.workflow_id)
        .where(s.journey_id == journey_id, Enrollment.status == "converted")
        .group_by(s.node_id)
        .subquery()
    )
    stmt = (
        select(
            visits.c.node_id,
            visits.c.entered,
            visits.c.completed,
            func.coalesce(waiting.c.n, 0),
            func.coalesce(converted.c.n, 0),
        )
        .outerjoin(waiting, waiting.c.node_id == visits.c.node_id)
        .outerjoin(converted, converted.c.node_id == visits.c.node_id)
    )
    return list((await session.execute(stmt)).all())


async def enrollment_counts(session: AsyncSession, journey_id: str) -> dict[str, int]:
    rows = await session.execute(
        select(Enrollment.status, func.count())
        .where(Enrollment.journey_id == journey_id)
        .group_by(Enrollment.status)
    )
    return {status: count for status, count in rows}


async def enrollments_of_customer(
    session: AsyncSession, journey_id: str, customer_id: int
) -> list[Enrollment]:
    return list(
        await session.scalars(
            select(Enrollment)
            .where(Enrollment.journey_id == journey_id, Enrollment.customer_id == customer_id)
            .order_by(Enrollment.id)
        )
    )


async def workflow_ids_of_customer(session: AsyncSession, customer_id: int) -> list[str]:
    stmt = select(Enrollment.workflow_id).where(Enrollment.customer_id == customer_id).order_by(Enrollment.id)
    return list(await session.scalars(stmt))


async def active_workflow_ids(session: AsyncSession, journey_id: str) -> list[str]:
    return list(
        await session.scalars(
            select(Enrollment.workflow_id).where(
                Enrollment.journey_id == journey_id, Enrollment.status == "active"
            )
        )
    )


async def existing_workflow_ids(
    session: AsyncSession, workflow_ids: list[str], entered_since: datetime | None = None
) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(workflow_ids), 500):
        query = select(Enrollment.workflow_id).where(Enrollment.workflow_id.in_(workflow_ids[i : i + 500]))
        if entered_since is not None:
            query = query.where(Enrollment.entered_at >= entered_since)
        found.update(await session.scalars(query))
    return found


async def active_lanes(session: AsyncSession, lanes: set[tuple[str, int]]) -> set[tuple[str, int]]:
    if not lanes:
        return set()
    rows = await session.execute(
        select(Enrollment.journey_id, Enrollment.customer_id)
        .where(
            Enrollment.status == "active",
            Enrollment.journey_id.in_({j for j, _ in lanes}),
            Enrollment.customer_id.in_({c for _, c in lanes}),
        )
        .distinct()
    )
    return {(j, c) for j, c in rows if (j, c) in lanes}


async def lane_summaries(
    session: AsyncSession, lanes: set[tuple[str, int]]
) -> dict[tuple[str, int], tuple[int, int, datetime | None]]:
    """Per (journey, customer): how many enrollments, how many still active, when the latest ended."""
    if not lanes:
        return {}
    rows = await session.execute(
        select(
            Enrollment.journey_id,
            Enrollment.customer_id,
            func.count(),
            func.count(case((Enrollment.status == "active", 1))),
            func.max(Enrollment.completed_at),
        )
        .where(
            Enrollment.journey_id.in_({j for j, _ in lanes}),
            Enrollment.customer_id.in_({c for _, c in lanes}),
        )
        .group_by(Enrollment.journey_id, Enrollment.customer_id)
    )
    return {(j, c): (n, active, left) for j, c, n, active, left in rows if (j, c) in lanes}


async def has_active_enrollment(session: AsyncSession, journey_id: str, customer_id: int) -> bool:
    found = await session.scalar(
        select(Enrollment.id)
        .where(
            Enrollment.journey_id == journey_id,
            Enrollment.customer_id == customer_id,
            Enrollment.status == "active",
        )
        .limit(1)
    )
    return found is not None


async def recent_marketing_sends(
    session: AsyncSession,
    customer_id: int,
    since: datetime,
    *,
    reserved_since: datetime,
    except_key: str | None = None,
) -> list[datetime]:
    """When this customer was sent journey emails since ``since`` (the frequency cap's count), and
    when sends were reserved since ``reserved_since`` whose ledger row does not exist yet (bar
    ``except_key``'s, the asking send's own).

    One statement: a send that records its ledger row meanwhile counts once, as a reservation or as
    a message, never as neither (PostgreSQL reads each statement from one snapshot)."""
    transactional = (
        select(TemplateVersion.id)
        .where(
            TemplateVersion.template_id == Message.template_id,
            TemplateVersion.version == Message.template_version,
            TemplateVersion.category == "transactional",
        )
        .exists()
    )
    sent = select(Message.created_at.label("at")).where(
        Message.customer_id == customer_id,
        Message.journey_id.is_not(None),
        Message.status.in_(("sent", "pending")),
        Message.created_at >= since,
        ~transactional,  # the cap is on marketing email: receipts do not use it up
    )
    recorded = select(Message.id).where(Message.idempotency_key == CapReservation.send_key).exists()
    reserved = select(CapReservation.reserved_at).where(
        CapReservation.customer_id == customer_id,
        CapReservation.reserved_at >= reserved_since,
        ~recorded,
    )
    if except_key is not None:
        reserved = reserved.where(CapReservation.send_key != except_key)
    return sorted(await session.scalars(union_all(sent, reserved)))


async def known_customers(session: AsyncSession, customer_ids: list[int], user_ids: list[str]) -> list[int]:
    found: set[int] = set()
    for i in range(0, len(customer_ids), 500):
        chunk = customer_ids[i : i + 500]
        found.update(await session.scalars(select(Customer.id).where(Customer.id.in_(chunk))))
    for i in range(0, len(user_ids), 500):
        chunk = user_ids[i : i + 500]
        found.update(await session.scalars(select(Customer.id).where(Customer.user_id.in_(chunk))))
    return sorted(found)


# --- the send-rate slot clock ------------------------------------------------------------------------


async def lock_slot_clock(session: AsyncSession, journey_id: str) -> None:
    """Serialise slot taking per journey (SQLite's write transaction already serialises everything)."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(select(Journey.id).where(Journey.id == journey_id).with_for_update())


async def send_slot(session: AsyncSession, send_key: str) -> datetime | None:
    return await session.scalar(select(JourneySendSlot.slot_at).where(JourneySendSlot.send_key == send_key))


async def latest_slots(session: AsyncSession, journey_id: str, limit: int) -> list[datetime]:
    """The journey's ``limit`` latest slots, latest first."""
    return list(
        await session.scalars(
            select(JourneySendSlot.slot_at)
            .where(JourneySendSlot.journey_id == journey_id)
            .order_by(JourneySendSlot.slot_at.desc())
            .limit(limit)
        )
    )


async def forget_slots_before(session: AsyncSession, journey_id: str, before: datetime) -> None:
    await session.execute(
        delete(JourneySendSlot).where(
            JourneySendSlot.journey_id == journey_id, JourneySendSlot.slot_at < before
        )
    )


async def set_send_slot(session: AsyncSession, journey_id: str, send_key: str, at: datetime) -> None:
    updated = await session.execute(
        update(JourneySendSlot).where(JourneySendSlot.send_key == send_key).values(slot_at=at)
    )
    if not updated.rowcount:
        session.add(JourneySendSlot(journey_id=journey_id, send_key=send_key, slot_at=at))
        await session.flush()


# --- frequency-cap reservations ----------------------------------------------------------------------


async def lock_cap_count(session: AsyncSession, customer_id: int) -> bool:
    """Serialise frequency-cap plans per customer until the transaction ends (PostgreSQL; SQLite's
    write transaction already serialises everything). FOR NO KEY UPDATE: rows naming the customer
    (events, messages) are still written meanwhile. False if the customer is gone (merged, erased)."""
    stmt = select(Customer.id).where(Customer.id == customer_id)
    if session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(key_share=True)
    return await session.scalar(stmt) is not None


async def reserve_cap(session: AsyncSession, send_key: str, customer_id: int, at: datetime) -> None:
    """Reserve the send under ``send_key`` at ``at`` (a retried plan moves its own reservation)."""
    updated = await session.execute(
        update(CapReservation)
        .where(CapReservation.send_key == send_key)
        .values(customer_id=customer_id, reserved_at=at)
    )
    if not updated.rowcount:
        await session.execute(
            insert_ignoring_conflicts(session, CapReservation, ["send_key"]).values(
                send_key=send_key, customer_id=customer_id, reserved_at=at
            )
        )


async def forget_cap_reservations_before(session: AsyncSession, customer_id: int, before: datetime) -> None:
    await session.execute(
        delete(CapReservation).where(
            CapReservation.customer_id == customer_id, CapReservation.reserved_at < before
        )
    )
