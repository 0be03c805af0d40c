"""A generated data set for analytics tests: plain rows in memory (the answers are computed from them
in tests/analytics/expected.py) and written to the database table by table.

Everything happens at whole seconds around a reference instant, with deliberate cases on and beside
each boundary: ratings at exactly `from` (counted) and exactly `to` (not), purchases just inside and
outside the activity window, goals inside and outside the conversion window, unsubscribes credited to
the latest of two messages, emails and phones shared between customers, sources that disagree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from domain.broadcasts.models import Broadcast
from domain.cases.models import Case, Team
from domain.customers.models import Customer
from domain.db import transaction
from domain.email.models import Message, Template, TemplateVersion
from domain.email.tracking import CLICKED, OPENED, message_ref
from domain.events.models import Event
from domain.journeys.models import Enrollment, Journey, JourneyStep, JourneyVersion
from domain.subscriptions.events import SUBSCRIPTION_CHANGED

PURCHASE = "Order Completed"
ONBOARDING = {
    "nodes": [
        {"id": "start", "type": "entry", "trigger": "event", "event": "Signed Up", "next": "split"},
        {"id": "split", "type": "split", "paths": [{"weight": 1, "next": "hello"}], "holdout_percent": 30},
        {
            "id": "hello",
            "type": "send_email",
            "template_id": "welcome",
            "template_version": 1,
            "next": "wait",
        },
        {"id": "wait", "type": "wait", "duration": "2d", "seconds": 172800, "next": "done"},
        {"id": "done", "type": "exit"},
    ],
    "rules": {"goal": {"event": PURCHASE}},
}
# Version 2 changes the goal: only an upgrade to the pro plan counts.
ONBOARDING_V2 = {**ONBOARDING, "rules": {"goal": {"event": "Upgraded", "where": {"plan": "pro"}}}}
NEWSLETTER = {
    "nodes": [
        {"id": "start", "type": "entry", "trigger": "event", "event": "Subscribed", "next": "news"},
        {"id": "news", "type": "send_email", "template_id": "promo", "template_version": 1, "next": "end"},
        {"id": "end", "type": "exit"},
    ],
    "rules": {},
}
GOOD_ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"]
CASE_REASONS = [
    "Customer complains about late delivery",
    "COMPLAINT: broken item",
    "Question about an invoice",
    "VIP complained twice",
    "Payment failed twice",
]


@dataclass
class World:
    now: datetime
    start: datetime  # the period under test: [start, end)
    end: datetime
    customers: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    journeys: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    enrollments: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    template_versions: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    broadcasts: list[dict[str, Any]] = field(default_factory=list)

    def event(
        self, customer_id: int, at: datetime, name: str | None, *, kind: str = "track", **columns
    ) -> dict:
        row = {
            "id": len(self.events) + 1,
            "message_id": f"m{len(self.events) + 1}",
            "type": kind,
            "name": name,
            "customer_id": customer_id,
            "properties": columns.pop("properties", {}),
            "traits": columns.pop("traits", {}),
            "context": {},
            "timestamp": at,
            "received_at": at,
            "source_key_id": columns.pop("source_key_id", None),
        }
        self.events.append(row)
        return row

    def message(
        self, key: str, customer_id: int, template_id: str, created: datetime, status: str, **extra
    ) -> dict:
        row = {
            "id": len(self.messages) + 1,
            "idempotency_key": key,
            "message_id": f"<{len(self.messages) + 1}@test>",
            "customer_id": customer_id,
            "template_id": template_id,
            "template_version": 1,
            "journey_id": extra.pop("journey_id", None),
            "node_id": extra.pop("node_id", None),
            "to_address": f"c{customer_id}@example.com",
            "status": status,
            "attempts": 1,
            "meta": extra.pop("meta", {}),
            "created_at": created,
            "sent_at": created + timedelta(seconds=5) if status == "sent" else None,
        }
        self.messages.append(row)
        return row

    def engage(self, message: dict, at: datetime, kind: str) -> None:
        ref = message_ref(message["idempotency_key"], message["template_id"])
        properties = {"message_ref": ref, "template_id": message["template_id"]}
        if kind == CLICKED:
            properties["url"] = "https://shop.example.com/"
        self.event(message["customer_id"], at, kind, properties=properties)


def _seconds(rng: random.Random, low: float, high: float) -> timedelta:
    """A whole number of seconds between ``low`` and ``high`` days."""
    return timedelta(seconds=rng.randrange(int(low * 86_400), int(high * 86_400)))


def build(seed: int = 7, *, customers: int = 240, now: datetime | None = None) -> World:
    rng = random.Random(seed)
    now = (now or datetime(2026, 6, 1, tzinfo=UTC)).replace(microsecond=0)
    world = World(now=now, start=now - timedelta(days=30), end=now - timedelta(days=2))
    start, end = world.start, world.end
    _customers(world, rng, customers)
    _purchases(world, rng)
    _identities(world, rng)
    _cases(world, rng)
    _templates(world)
    _journeys(world, rng)
    _broadcast(world, rng)
    _subscription_changes(world, rng)
    assert start < end
    return world


def _customers(world: World, rng: random.Random, count: int) -> None:
    for i in range(1, count + 1):
        known = i % 25 != 0  # every 25th is an anonymous visitor
        email: str | None = f"c{i}@example.com"
        if i % 17 == 0:
            email = rng.choice(["broken@@example.com", "no-at-sign.example.com", "sp ace@example.com", "a@b"])
        elif i % 19 == 0:
            email = "shared@example.com"  # several customers give the same address
        elif i % 13 == 0:
            email = None
        traits: dict[str, Any] = {"first_name": f"F{i}", "last_name": f"L{i}"}
        if email:
            traits["email"] = email
        if i % 7 == 0:
            del traits["last_name"]
        if i % 11 == 0:
            traits["first_name"] = "   "  # blank counts as missing
        if i % 23 == 0:
            traits["first_name"] = None
        if i % 5 == 0:
            traits["phone"] = rng.choice(["+49 30 1234567", "(030) 123-4567", "+33.1.23.45.67.89"])
        elif i % 9 == 0:
            traits["phone"] = rng.choice(["12", "call me", "+1234567890123456", 4930123456])
        elif i % 31 == 0:
            traits["phone"] = "+4930 1234567"  # the same digits as "+49 30 1234567" written differently
        zone = None
        if i % 3 == 0:
            zone = rng.choice(GOOD_ZONES)
        elif i % 29 == 0:
            zone = "Mars/Olympus_Mons"
        created = world.start + _seconds(rng, -200, 33)  # some after the period's end
        if i == 1:
            created = world.start  # exactly at `from`: new in the period
        if i == 2:
            created = world.end  # exactly at `to`: not in the period
        updated = world.now - _seconds(rng, 0, 400)
        world.customers.append(
            {
                "id": i,
                "user_id": f"u{i}" if known else None,
                "anonymous_id": None if known else f"visitor-{i}",
                "email": email,
                "traits": traits,
                "timezone": zone,
                "first_seen_at": created,
                "last_seen_at": created,
                "created_at": created,
                "updated_at": updated,
            }
        )


def _purchases(world: World, rng: random.Random) -> None:
    window = timedelta(days=90)
    for c in world.customers:
        for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
            at = world.start + _seconds(rng, -130, 32)
            revenue: Any = round(rng.uniform(5, 200), 2)
            if rng.random() < 0.05:
                revenue = "n/a"  # not a number: counts 0
            world.event(c["id"], at, PURCHASE, properties={"revenue": revenue})
    # On the edges of the activity windows (N = 90 days before `from` and before `to`).
    edges = [
        (world.start - window, True),  # first instant of the window: active at `from`
        (world.start - window - timedelta(seconds=1), False),
        (world.start, False),  # `from` itself is outside [from - N, from)
        (world.end - timedelta(seconds=1), True),
        (world.end, False),
    ]
    for index, (at, _) in enumerate(edges):
        world.event(world.customers[index + 10]["id"], at, PURCHASE, properties={"revenue": 10})


def _identities(world: World, rng: random.Random) -> None:
    """Identify calls from two sources (write keys 1 and 2); some disagree on their latest values."""
    for c in world.customers[:120]:
        base = world.now - timedelta(days=50)
        email = c["email"] or f"c{c['id']}@example.com"
        world.event(c["id"], base, None, kind="identify", traits={"email": email}, source_key_id=1)
        if c["id"] % 6 == 0:  # source 2 knows another address
            world.event(
                c["id"],
                base + timedelta(hours=1),
                None,
                kind="identify",
                traits={"email": f"other{c['id']}@example.com"},
                source_key_id=2,
            )
        elif c["id"] % 8 == 0:  # source 2 once disagreed, then caught up: no conflict
            world.event(
                c["id"],
                base - timedelta(days=3),
                None,
                kind="identify",
                traits={"email": "old@example.com"},
                source_key_id=2,
            )
            world.event(
                c["id"],
                base + timedelta(days=1),
                None,
                kind="identify",
                traits={"email": email.upper()},
                source_key_id=2,
            )
        if c["id"] % 10 == 0:
            world.event(c["id"], base, None, kind="identify", traits={"last_name": "Smith"}, source_key_id=1)
            world.event(c["id"], base, None, kind="identify", traits={"last_name": "Smyth"}, source_key_id=2)
        if c["id"] % 14 == 0:  # no source: not a conflict between sources
            world.event(c["id"], base, None, kind="identify", traits={"email": "x@example.com"})


def _cases(world: World, rng: random.Random) -> None:
    world_start, world_end = world.start, world.end
    for i in range(60):
        customer = world.customers[rng.randrange(len(world.customers))]
        created = world_start + _seconds(rng, -10, 32)
        rating = rng.choice([None, 1, 2, 3, 4, 5, 5])
        rated = created + _seconds(rng, 0, 3) if rating else None
        if i == 0:
            created, rating, rated = world_start, 5, world_start  # both at `from`: counted
        if i == 1:
            created, rating, rated = world_end, 1, world_end  # both at `to`: not counted
        world.cases.append(
            {
                "id": i + 1,
                "customer_id": customer["id"],
                "reason": rng.choice(CASE_REASONS),
                "priority": "normal",
                "priority_rank": 1,
                "team_id": "care",
                "status": "resolved" if rating else "open",
                "context": {},
                "first_response_due": created + timedelta(hours=4),
                "resolution_due": created + timedelta(days=1),
                "csat_rating": rating,
                "csat_at": rated,
                "revision": 1,
                "created_at": created,
                "updated_at": created,
            }
        )


def _templates(world: World) -> None:
    for template_id, category in (
        ("welcome", "marketing"),
        ("promo", "marketing"),
        ("receipt", "transactional"),
    ):
        world.templates.append({"id": template_id, "name": template_id, "current_version": 1})
        world.template_versions.append(
            {
                "template_id": template_id,
                "version": 1,
                "subject": "s",
                "html": "<p>h</p>",
                "category": category,
            }
        )


def _journeys(world: World, rng: random.Random) -> None:
    world.journeys += [
        {
            "id": "onboarding",
            "name": "Onboarding",
            "status": "published",
            "draft": ONBOARDING_V2,
            "published_version": 2,
        },
        {
            "id": "newsletter",
            "name": "Newsletter",
            "status": "published",
            "draft": NEWSLETTER,
            "published_version": 1,
        },
    ]
    world.versions += [
        {"journey_id": "onboarding", "version": 1, "definition": ONBOARDING, "trigger_event": "Signed Up"},
        {"journey_id": "onboarding", "version": 2, "definition": ONBOARDING_V2, "trigger_event": "Signed Up"},
        {"journey_id": "newsletter", "version": 1, "definition": NEWSLETTER, "trigger_event": "Subscribed"},
    ]
    known = [c for c in world.customers if c["user_id"]]
    for c in rng.sample(known, 150):
        _enroll_onboarding(world, rng, c)
    for c in rng.sample(known, 60):
        entered = world.start + _seconds(rng, -5, 30)
        wf = f"journey/newsletter/customer/{c['id']}"
        world.enrollments.append(_enrollment(wf, "newsletter", 1, c["id"], entered, "completed"))
        world.steps.append(_step(wf, "newsletter", 1, c["id"], "news", entered, entered, "sent"))
        world.steps.append(_step(wf, "newsletter", 1, c["id"], "end", entered, entered, None))
        m = world.message(
            f"{wf}/0/news/1", c["id"], "promo", entered, "sent", journey_id="newsletter", node_id="news"
        )
        if rng.random() < 0.5:
            world.engage(m, entered + timedelta(hours=2), OPENED)


def _enrollment(
    wf: str, journey_id: str, version: int, customer_id: int, entered: datetime, status: str
) -> dict:
    return {
        "workflow_id": wf,
        "journey_id": journey_id,
        "version": version,
        "customer_id": customer_id,
        "entry_event_id": None,
        "status": status,
        "entered_at": entered,
        "completed_at": None,
    }


def _step(wf, journey_id, version, customer_id, node_id, entered, left, outcome, visit=1) -> dict:
    return {
        "workflow_id": wf,
        "journey_id": journey_id,
        "version": version,
        "customer_id": customer_id,
        "node_id": node_id,
        "visit": visit,
        "entered_at": entered,
        "left_at": left,
        "outcome": outcome,
    }


def _enroll_onboarding(world: World, rng: random.Random, c: dict) -> None:
    entered = world.start + _seconds(rng, -12, 31)
    version = 1 if entered < world.start + timedelta(days=10) else 2
    wf = f"journey/onboarding/customer/{c['id']}"
    holdout = rng.random() < 0.3
    status = "completed"
    split_at = entered + timedelta(seconds=1)
    world.steps.append(
        _step(
            wf,
            "onboarding",
            version,
            c["id"],
            "split",
            split_at,
            split_at,
            "holdout" if holdout else "path:0",
        )
    )
    if not holdout:
        hello_at = split_at + timedelta(seconds=1)
        outcome = rng.choice(["sent"] * 8 + ["skipped", "failed"])
        world.steps.append(_step(wf, "onboarding", version, c["id"], "hello", hello_at, hello_at, outcome))
        m = world.message(
            f"{wf}/{c['id']}/hello/1",
            c["id"],
            "welcome",
            hello_at,
            outcome,
            journey_id="onboarding",
            node_id="hello",
        )
        if outcome == "sent" and rng.random() < 0.6:
            world.engage(m, hello_at + _seconds(rng, 0.01, 2), OPENED)
            if rng.random() < 0.5:
                world.engage(m, hello_at + _seconds(rng, 0.01, 2), CLICKED)
                world.engage(m, hello_at + _seconds(rng, 2, 3), CLICKED)  # a second click: one message
        wait_at = hello_at + timedelta(seconds=1)
        if rng.random() < 0.15:  # still waiting
            world.steps.append(_step(wf, "onboarding", version, c["id"], "wait", wait_at, None, None))
            status = "active"
        else:
            left = wait_at + timedelta(days=2)
            world.steps.append(_step(wf, "onboarding", version, c["id"], "wait", wait_at, left, None))
            world.steps.append(_step(wf, "onboarding", version, c["id"], "done", left, left, None))
    # Goals inside and outside the 7-day window, for both goals (only the version's own counts).
    r = rng.random()
    if r < 0.45:
        at = split_at + _seconds(rng, 0.001, 6.9)
    elif r < 0.6:
        at = split_at + _seconds(rng, 7.01, 12)
    else:
        at = None
    if at is not None:
        if version == 1:
            world.event(c["id"], at, PURCHASE, properties={"revenue": 30})
        else:
            plan = "pro" if rng.random() < 0.8 else "basic"
            world.event(c["id"], at, "Upgraded", properties={"plan": plan})
    world.enrollments.append(_enrollment(wf, "onboarding", version, c["id"], entered, status))


def _broadcast(world: World, rng: random.Random) -> None:
    sent_at = world.start + timedelta(days=5)
    world.broadcasts.append(
        {
            "id": "spring",
            "name": "Spring sale",
            "template_id": "promo",
            "template_version": 1,
            "audience": {"kind": "all"},
            "status": "completed",
            "batch_size": 500,
            "slot": 0,
            "cursor": 0,
            "sent": 0,
            "skipped": 0,
            "failed": 0,
            "created_at": sent_at,
        }
    )
    for c in world.customers:
        if not c["email"] or rng.random() < 0.3:
            continue
        status = "sent" if rng.random() < 0.9 else "skipped"
        created = sent_at + timedelta(seconds=c["id"])
        key = f"broadcast/spring/customer/{c['id']}"
        m = world.message(key, c["id"], "promo", created, status, meta={"broadcast_id": "spring"})
        if status == "sent" and rng.random() < 0.4:
            world.engage(m, created + timedelta(hours=5), OPENED)
        if status == "sent" and rng.random() < 0.2:
            bought = world.event(
                c["id"], created + _seconds(rng, 0.01, 9), PURCHASE, properties={"revenue": 50}
            )
            if c["id"] % 4 == 0:  # a second order at the same instant: both count
                world.event(c["id"], bought["timestamp"], PURCHASE, properties={"revenue": 20})
    # A transactional receipt just before some purchases: never credited (not marketing).
    for e in [e for e in world.events if e["name"] == PURCHASE][:15]:
        receipt_at = e["timestamp"] - timedelta(hours=1)
        world.message(f"receipt/{e['id']}", e["customer_id"], "receipt", receipt_at, "sent")


def _subscription_changes(world: World, rng: random.Random) -> None:
    """Unsubscribes and bounces after some messages (inside and outside the 7-day credit window)."""
    sent = [m for m in world.messages if m["status"] in ("sent", "failed") and m["template_id"] != "receipt"]
    for m in rng.sample(sent, 40):
        kind = rng.choice(["group", "all", "bounce", "bounce", "complaint"])
        at = m["created_at"] + (_seconds(rng, 0.001, 6) if rng.random() < 0.8 else _seconds(rng, 8, 12))
        if kind == "group":
            properties = {"group_id": "newsletter", "subscribed": False, "source": "one_click"}
        elif kind == "all":
            properties = {"suppressed": True, "reason": "unsubscribed"}
        elif kind == "bounce":
            properties = {"suppressed": True, "reason": "bounced"}
        else:
            properties = {"suppressed": True, "reason": "complained"}
        world.event(m["customer_id"], at, SUBSCRIPTION_CHANGED, properties=properties)
    # Opting back in is not an unsubscribe.
    world.event(
        world.customers[3]["id"],
        world.start + timedelta(days=1),
        SUBSCRIPTION_CHANGED,
        properties={"group_id": "newsletter", "subscribed": True, "source": "preferences"},
    )


async def store(sessions, world: World) -> None:
    async with transaction(sessions) as session:
        await session.execute(insert(Team), [{"id": "care", "name": "Care", "auto_assign": False}])
        for model, rows in (
            (Customer, world.customers),
            (Event, world.events),
            (Case, world.cases),
            (Template, world.templates),
            (TemplateVersion, world.template_versions),
            (Journey, world.journeys),
            (JourneyVersion, world.versions),
            (Enrollment, world.enrollments),
            (JourneyStep, world.steps),
            (Message, world.messages),
            (Broadcast, world.broadcasts),
        ):
            for chunk in range(0, len(rows), 500):
                await session.execute(insert(model), rows[chunk : chunk + 500])
