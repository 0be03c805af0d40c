"""The answers for a generated World, computed from its rows in plain Python, straight from the written
definitions (README, Analytics). Nothing here imports the analytics code it checks."""

from __future__ import annotations

import math
import zoneinfo
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import mean
from typing import Any

from domain.email.tracking import CLICKED, OPENED, message_ref
from domain.revenue import amount as order_amount
from domain.subscriptions.events import SUBSCRIPTION_CHANGED
from tests.analytics.dataset import PURCHASE, World

DAY = timedelta(days=1)
WEIGHTS = {
    "satisfaction": 0.25,
    "retention": 0.25,
    "growth": 0.1,
    "conversion": 0.2,
    "complaints": 0.1,
    "roi": 0.1,
}


def within(moment: datetime | None, start: datetime, end: datetime) -> bool:
    return moment is not None and start <= moment < end


def share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def goal_of(world: World, journey_id: str, version: int) -> dict | None:
    for v in world.versions:
        if v["journey_id"] == journey_id and v["version"] == version:
            return (v["definition"].get("rules") or {}).get("goal")
    raise KeyError((journey_id, version))


def is_goal(event: dict, goal: dict) -> bool:
    name, where = goal["event"], goal.get("where") or {}
    return event["name"] == name and all(event["properties"].get(k) == v for k, v in where.items())


def reached(world: World, customer_id: int, goal: dict, since: datetime, days: float) -> bool:
    return any(
        e["customer_id"] == customer_id and since <= e["timestamp"] < since + days * DAY and is_goal(e, goal)
        for e in world.events
    )


def _revenue(event: dict) -> float:
    return float(order_amount(event["properties"].get("revenue")))


def marketing(world: World, message: dict) -> bool:
    category = next(
        v["category"]
        for v in world.template_versions
        if v["template_id"] == message["template_id"] and v["version"] == message["template_version"]
    )
    return category == "marketing"


# -- KPIs ------------------------------------------------------------------------------------------------
def kpis(
    world: World,
    start: datetime,
    end: datetime,
    *,
    active_days=90,
    conversion_days=7.0,
    attribution_days=7.0,
    cost_per_message=0.001,
    terms=("complain",),
) -> dict[str, Any]:
    ratings = [c["csat_rating"] for c in world.cases if c["csat_rating"] and within(c["csat_at"], start, end)]
    opened_cases = [c for c in world.cases if within(c["created_at"], start, end)]
    complaints = [c for c in opened_cases if any(t in c["reason"].lower() for t in terms)]

    known = [c for c in world.customers if c["user_id"]]
    at_start = [c for c in known if c["created_at"] < start]
    new = [c for c in known if within(c["created_at"], start, end)]

    purchases = [e for e in world.events if e["name"] == PURCHASE]

    def active(moment: datetime) -> set[int]:
        return {p["customer_id"] for p in purchases if moment - active_days * DAY <= p["timestamp"] < moment}

    active_start = active(start)
    retained = active_start & active(end)

    recipients = converted = 0
    for e in world.enrollments:
        goal = goal_of(world, e["journey_id"], e["version"])
        if not goal or not within(e["entered_at"], start, end):
            continue
        got_email = any(
            m["status"] == "sent"
            and m["customer_id"] == e["customer_id"]
            and m["journey_id"] == e["journey_id"]
            and m["idempotency_key"].startswith(e["workflow_id"] + "/")
            for m in world.messages
        )
        if got_email:
            recipients += 1
            converted += reached(world, e["customer_id"], goal, e["entered_at"], conversion_days)

    sent_marketing = [m for m in world.messages if m["status"] == "sent" and marketing(world, m)]
    attributed = [
        p
        for p in purchases
        if within(p["timestamp"], start, end)
        and any(
            m["customer_id"] == p["customer_id"]
            and p["timestamp"] - attribution_days * DAY <= m["sent_at"] < p["timestamp"]
            for m in sent_marketing
        )
    ]
    revenue = sum(_revenue(p) for p in attributed)
    sent_in_period = [m for m in sent_marketing if within(m["sent_at"], start, end)]
    cost = len(sent_in_period) * cost_per_message

    out = {
        "customer_satisfaction": mean(ratings) if ratings else None,
        "ratings": len(ratings),
        "retention_rate": share(len(retained), len(active_start)),
        "active_at_start": len(active_start),
        "retained": len(retained),
        "customer_growth_rate": share(len(new), len(at_start)),
        "customers_at_start": len(at_start),
        "new_customers": len(new),
        "marketing_conversion_rate": share(converted, recipients),
        "recipients": recipients,
        "converted": converted,
        "complaint_count": len(complaints),
        "cases_opened": len(opened_cases),
        "roi": share(revenue, cost),
        "attributed_revenue": revenue,
        "attributed_purchases": len(attributed),
        "messages_sent": len(sent_in_period),
    }
    normalised = {
        "satisfaction": (out["customer_satisfaction"] - 1) / 4 if ratings else None,
        "retention": out["retention_rate"],
        "growth": min(1, out["customer_growth_rate"]) if out["customer_growth_rate"] is not None else None,
        "conversion": out["marketing_conversion_rate"],
        "complaints": 1 - len(complaints) / len(opened_cases) if opened_cases else None,
        "roi": out["roi"] / (1 + out["roi"]) if out["roi"] is not None else None,
    }
    weighed = {k: v for k, v in normalised.items() if v is not None}
    out["normalised"] = normalised
    out["crm_effectiveness_index"] = (
        sum(WEIGHTS[k] * v for k, v in weighed.items()) / sum(WEIGHTS[k] for k in weighed)
        if weighed
        else None
    )
    return out


# -- messages --------------------------------------------------------------------------------------------
def _credited(world: World, days: float) -> dict[int, set[str]]:
    """Message id -> the changes (bounced, unsubscribed) credited to it: each change goes to the customer's
    latest message (sent or failed) created at most ``days`` before it."""
    out: dict[int, set[str]] = {}
    for e in world.events:
        if e["name"] != SUBSCRIPTION_CHANGED:
            continue
        p = e["properties"]
        if p.get("suppressed") is True and p.get("reason") == "bounced":
            kind = "bounced"
        elif p.get("subscribed") is False or (
            p.get("suppressed") is True and p.get("reason") == "unsubscribed"
        ):
            kind = "unsubscribed"
        else:
            continue
        candidates = [
            m
            for m in world.messages
            if m["customer_id"] == e["customer_id"]
            and m["status"] in ("sent", "failed")
            and e["timestamp"] - days * DAY <= m["created_at"] <= e["timestamp"]
        ]
        if candidates:
            latest = max(candidates, key=lambda m: (m["created_at"], m["id"]))
            out.setdefault(latest["id"], set()).add(kind)
    return out


def message_numbers(world: World, selected: list[dict], *, days: float = 7.0) -> dict[str, Any]:
    refs = {kind: set() for kind in (OPENED, CLICKED)}
    for e in world.events:
        if e["name"] in refs:
            refs[e["name"]].add(e["properties"]["message_ref"])
    credited = _credited(world, days)
    sent = [m for m in selected if m["status"] == "sent"]
    bounced = [m for m in selected if "bounced" in credited.get(m["id"], ())]
    delivered = len(sent) - len([m for m in bounced if m["status"] == "sent"])

    def ref(m):
        return message_ref(m["idempotency_key"], m["template_id"])

    opened = len([m for m in selected if ref(m) in refs[OPENED]])
    clicked = len([m for m in selected if ref(m) in refs[CLICKED]])
    unsubscribed = len([m for m in selected if "unsubscribed" in credited.get(m["id"], ())])
    return {
        "sent": len(sent),
        "delivered": delivered,
        "bounced": len(bounced),
        "opened": opened,
        "clicked": clicked,
        "unsubscribed": unsubscribed,
        "failed": len([m for m in selected if m["status"] == "failed"]),
        "skipped": len([m for m in selected if m["status"] == "skipped"]),
        "open_rate": share(opened, delivered),
        "click_rate": share(clicked, delivered),
        "click_to_open_rate": share(clicked, opened),
        "unsubscribe_rate": share(unsubscribed, delivered),
    }


def journey(
    world: World, journey_id: str, start: datetime, end: datetime, *, days: float = 7.0
) -> dict[str, Any]:
    """Per node numbers, links and split groups of one journey over [start, end)."""
    enrolled = [
        e for e in world.enrollments if e["journey_id"] == journey_id and within(e["entered_at"], start, end)
    ]
    has_goal = any(
        goal_of(world, journey_id, e["version"]) for e in world.enrollments if e["journey_id"] == journey_id
    )
    converted = sum(
        reached(world, e["customer_id"], goal, e["entered_at"], days)
        for e in enrolled
        if (goal := goal_of(world, journey_id, e["version"]))
    )
    nodes: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, list[int]]] = {}
    for s in world.steps:
        if s["journey_id"] != journey_id or s["visit"] != 1 or not within(s["entered_at"], start, end):
            continue
        node = nodes.setdefault(s["node_id"], {"entered": 0, "converted": 0})
        node["entered"] += 1
        goal = goal_of(world, journey_id, s["version"])
        hit = bool(goal) and reached(world, s["customer_id"], goal, s["entered_at"], days)
        node["converted"] += hit
        if s["outcome"] == "holdout" or (s["outcome"] or "").startswith("path:"):
            slot = groups.setdefault(s["node_id"], {}).setdefault(s["outcome"], [0, 0])
            slot[0] += 1
            slot[1] += hit
    for node_id, node in nodes.items():
        selected = [
            m
            for m in world.messages
            if m["journey_id"] == journey_id
            and m["node_id"] == node_id
            and within(m["created_at"], start, end)
        ]
        node.update(message_numbers(world, selected))
    by_workflow: dict[str, list[dict]] = {}
    for s in sorted(world.steps, key=lambda s: s["entered_at"]):
        if s["journey_id"] == journey_id:
            by_workflow.setdefault(s["workflow_id"], []).append(s)
    links: dict[tuple[str, str], int] = {}
    for path in by_workflow.values():
        for previous, s in zip([None, *path], path, strict=False):
            if within(s["entered_at"], start, end):
                key = (previous["node_id"] if previous else "start", s["node_id"])
                links[key] = links.get(key, 0) + 1
        last = path[-1]
        if within(last["entered_at"], start, end):
            end_name = (
                "waiting" if last["left_at"] is None else {"holdout": "holdout"}.get(last["outcome"] or "")
            )
            if end_name:
                links[(last["node_id"], end_name)] = links.get((last["node_id"], end_name), 0) + 1
    return {
        "enrolled": len(enrolled),
        "converted": converted if has_goal else None,
        "nodes": nodes,
        "links": links,
        "groups": groups,
    }


# -- data quality ----------------------------------------------------------------------------------------
DIGITS = set("0123456789")
SEPARATORS = " -.()"


def _email_ok(email: str) -> bool:
    local, _, domain = email.partition("@")
    dot = any(ch == "." and 0 < i < len(domain) - 1 for i, ch in enumerate(domain))
    return email.count("@") == 1 and bool(local) and " " not in email and dot


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch not in SEPARATORS)


def _phone_ok(phone: Any) -> bool:
    if not isinstance(phone, str):
        return False
    digits = _digits(phone)
    digits = digits[1:] if digits.startswith("+") else digits
    return 7 <= len(digits) <= 15 and set(digits) <= DIGITS


def _present(traits: dict, key: str) -> bool:
    value = traits.get(key)
    return value is not None and (not isinstance(value, str) or value.strip(" ") != "")


def data_quality(world: World, *, required=("email", "first_name", "last_name"), days=180) -> dict[str, Any]:
    known = [c for c in world.customers if c["user_id"]]
    zones = zoneinfo.available_timezones()
    inaccurate: dict[int, set[str]] = {}
    for c in known:
        bad = set()
        if c["email"] is not None and not _email_ok(c["email"]):
            bad.add("email")
        if c["traits"].get("phone") is not None and not _phone_ok(c["traits"]["phone"]):
            bad.add("phone")
        if c["timezone"] is not None and c["timezone"] not in zones:
            bad.add("timezone")
        if bad:
            inaccurate[c["id"]] = bad
    missing = {(c["id"], t) for c in known for t in required if not _present(c["traits"], t)}

    conflicts: set[tuple[int, str]] = set()
    by_email: dict[str, list[int]] = {}
    by_phone: dict[str, list[int]] = {}
    for c in known:
        if c["email"] is not None:
            by_email.setdefault(c["email"], []).append(c["id"])
        phone = c["traits"].get("phone")
        if isinstance(phone, str) and _digits(phone):
            by_phone.setdefault(_digits(phone), []).append(c["id"])
    for field_name, groups in (("email", by_email), ("phone", by_phone)):
        for ids in groups.values():
            if len(ids) > 1:
                conflicts |= {(i, field_name) for i in ids}
    known_ids = {c["id"] for c in known}
    for field_name in dict.fromkeys(["email", "phone", *required]):
        latest: dict[tuple[int, int], tuple[datetime, int, Any]] = {}
        for e in world.events:
            value = e["traits"].get(field_name)
            if e["type"] != "identify" or e["source_key_id"] is None or value is None:
                continue
            value = value.lower() if field_name == "email" else value
            value = (isinstance(value, bool), value)  # JSON values: true is not 1 (1 is 1.0)
            key = (e["customer_id"], e["source_key_id"])
            if key not in latest or (e["timestamp"], e["id"]) > latest[key][:2]:
                latest[key] = (e["timestamp"], e["id"], value)
        values: dict[int, set] = {}
        for (customer_id, _), (_, _, value) in latest.items():
            values.setdefault(customer_id, set()).add(value)
        conflicts |= {(i, field_name) for i, v in values.items() if len(v) > 1 and i in known_ids}
    stale = {c["id"] for c in known if c["updated_at"] < world.now - days * DAY}

    n = len(known)
    accuracy = share(n - len(inaccurate), n)
    completeness = share(n * len(required) - len(missing), n * len(required))
    consistency = share(n - len({i for i, _ in conflicts}), n)
    timeliness = share(n - len(stale), n)
    return {
        "customers": n,
        "accuracy": accuracy,
        "completeness": completeness,
        "consistency": consistency,
        "timeliness": timeliness,
        "score": 0.4 * accuracy + 0.3 * completeness + 0.2 * consistency + 0.1 * timeliness,
        "inaccurate": {(i, f) for i, fields in inaccurate.items() for f in fields},
        "missing": missing,
        "conflicts": conflicts,
        "stale": stale,
    }


def tiers(world: World) -> dict[str, int]:
    """Customers per value tier by lifetime value (each order's amount as the profile counts it): top
    1 % key, to 5 % major, to 20 % ordinary (ranks rounded up; customers who spent alike counted
    together, so they share the tier the last of them reaches), the rest and everyone without
    revenue small."""
    ltv = {c["id"]: Decimal(0) for c in world.customers}
    for e in world.events:
        if e["name"] == PURCHASE:
            ltv[e["customer_id"]] += order_amount(e["properties"].get("revenue"))
    out = {"key": 0, "major": 0, "ordinary": 0, "small": 0}
    for mine in ltv.values():
        reached = sum(1 for other in ltv.values() if other >= mine)
        tier = "small"
        if mine > 0:
            for name, top in (("key", 0.01), ("major", 0.05), ("ordinary", 0.20)):
                if reached <= math.ceil(len(ltv) * top):
                    tier = name
                    break
        out[tier] += 1
    return out
