"""The SQL compiler (full and scoped shapes) and the in-Python evaluator agree on random rules and data.

Hypothesis draws a small customer base (traits, time zones, events, messages, scores, email addresses,
suppressions, subscription choices, loyalty accounts) and a batch of rules per example; every rule is
evaluated three ways. A fixed seed keeps CI reproducible.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from domain.customers.models import Customer
from domain.db import create_engine, session_factory, transaction
from domain.email.models import Message
from domain.events.models import Event
from domain.loyalty.models import LoyaltyAccount
from domain.segments import compiler, repository
from domain.segments import rules as r
from domain.segments.evaluate import evaluate
from domain.segments.models import CustomerScore
from domain.subscriptions.models import Subscription, SubscriptionGroup, Suppression

EXAMPLES = 45
RULES_PER_EXAMPLE = 12
CUSTOMERS = 8

KEYS = ["city", "age", "birthday"]
ZONES = [None, "UTC", "Europe/Berlin", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kolkata", "Not/AZone"]
NAMES = ["Order Completed", "Viewed Product", "Email Opened", "Email Link Clicked"]
TEMPLATES = ["welcome", "promo"]
STRINGS = ["Berlin", "berlin", "Ber", "", "Zürich", "a-b"]
# newsletter is opt-out, offers opt-in; "gone" names no group (the send-time check treats it as opt-out).
GROUPS = {"newsletter": False, "offers": True}
RULE_GROUPS = ["newsletter", "offers", "gone", r.ALL_MARKETING]
LOYALTY_TIERS = ["member", "silver", "gold"]
POINTS = [0, 100, 250, 300]


def _day(now: datetime, offset: int, year: int | None = None, suffix: str = "") -> str:
    d = (now + timedelta(days=offset)).date()
    return f"{year or d.year:04d}-{d.month:02d}-{d.day:02d}{suffix}"


def scalars():
    return st.one_of(
        st.sampled_from(STRINGS), st.integers(0, 5), st.sampled_from([2.5, 10.0, -0.5]), st.booleans()
    )


def trait_values(now: datetime):
    dates = st.builds(
        _day,
        st.just(now),
        st.integers(-6, 6),
        st.sampled_from([None, 1990, 2000]),
        st.sampled_from(["", "T08:30:00Z"]),
    )
    return st.one_of(st.none(), scalars(), dates, st.lists(st.sampled_from(["a", "b"]), max_size=2))


def value_tests(now: datetime, key_field: str, ops: set[str]):
    def build(key, op, scalar, many, text, number, days, date):
        raw = {key_field: key, "op": op}
        if op in r.SCALAR_OPS:
            raw["value"] = scalar
        elif op in r.LIST_OPS:
            raw["value"] = many
        elif op in r.STRING_OPS:
            raw["value"] = text
        elif op in r.NUMBER_OPS:
            raw["value"] = number
        elif op in r.DAYS_OPS:
            raw["value"] = days
        elif op in r.DATE_OPS:
            raw["value"] = date
        return raw

    keys = st.sampled_from(KEYS if key_field == "trait" else ["revenue", "template_id"])
    return st.builds(
        build,
        keys,
        st.sampled_from(sorted(ops)),
        scalars(),
        st.lists(scalars(), min_size=1, max_size=3),
        st.sampled_from(STRINGS),
        st.one_of(st.integers(0, 5), st.sampled_from([2.5, 10.0])),
        st.integers(0, 5),
        st.builds(_day, st.just(now), st.integers(-6, 6)),
    )


def leaf_rules(now: datetime):
    event = st.builds(
        lambda name, where, times, within: {
            "event": name,
            "where": where,
            **({"times": times} if times else {}),
            **({"within_days": within} if within is not None else {}),
        },
        st.sampled_from(NAMES),
        st.lists(value_tests(now, "property", r.VALUE_OPS), max_size=2),
        st.one_of(
            st.none(),
            st.dictionaries(st.sampled_from(r.COUNT_OPS), st.integers(0, 3), min_size=1, max_size=1),
        ),
        st.one_of(st.none(), st.integers(0, 8)),
    )
    message = st.builds(
        lambda action, template, within: {
            "message": action,
            **({"template_id": template} if template else {}),
            **({"within_days": within} if within is not None else {}),
        },
        st.sampled_from(r.MESSAGE_ACTIONS),
        st.one_of(st.none(), st.sampled_from(TEMPLATES)),
        st.one_of(st.none(), st.integers(0, 8)),
    )
    tier = st.lists(st.sampled_from(r.TIERS), min_size=1, max_size=3).map(lambda t: {"value_tier": t})
    rfm = st.builds(
        lambda d, op, v: {"rfm": d, "op": op, "value": v},
        st.sampled_from(r.RFM_DIMENSIONS),
        st.sampled_from(sorted(r.RFM_OPS)),
        st.integers(1, 5),
    )
    subscription = st.sampled_from(RULE_GROUPS).map(lambda g: {"subscription": g})
    loyalty_tier = st.lists(st.sampled_from(LOYALTY_TIERS), min_size=1, max_size=2).map(
        lambda t: {"loyalty_tier": t}
    )
    balance = st.dictionaries(
        st.sampled_from(r.BALANCE_OPS), st.sampled_from(POINTS), min_size=1, max_size=2
    ).map(lambda tests: {"loyalty_balance": tests})
    return st.one_of(
        value_tests(now, "trait", r.TRAIT_OPS),
        event,
        message,
        tier,
        rfm,
        subscription,
        loyalty_tier,
        balance,
    )


def rules(now: datetime):
    return st.recursive(
        leaf_rules(now),
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
            st.lists(children, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
            children.map(lambda x: {"not": x}),
        ),
        max_leaves=6,
    )


def customers(now: datetime):
    event = st.fixed_dictionaries(
        {
            "name": st.sampled_from(NAMES),
            "properties": st.fixed_dictionaries(
                {},
                optional={
                    "revenue": st.one_of(st.integers(0, 5), st.sampled_from([2.5, 10.0]), st.just("12")),
                    "template_id": st.sampled_from(TEMPLATES),
                    "sku": st.sampled_from(STRINGS),
                },
            ),
            "age": st.one_of(st.integers(0, 10 * 24), st.just(-5)),  # hours before now (negative: future)
        }
    )
    message = st.fixed_dictionaries(
        {
            "template_id": st.one_of(st.none(), st.sampled_from(TEMPLATES)),
            "status": st.sampled_from(["sent", "failed"]),
            "age": st.integers(0, 10 * 24),
            "has_sent_at": st.booleans(),
        }
    )
    score = st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {
                "tier": st.sampled_from(r.TIERS),
                "recency": st.one_of(st.none(), st.integers(1, 5)),
                "frequency": st.one_of(st.none(), st.integers(1, 5)),
                "monetary": st.one_of(st.none(), st.integers(1, 5)),
            }
        ),
    )
    customer = st.fixed_dictionaries(
        {
            "traits": st.dictionaries(st.sampled_from(KEYS), trait_values(now), min_size=1, max_size=3),
            "timezone": st.sampled_from(ZONES),
            "events": st.lists(event, min_size=1, max_size=5),
            "messages": st.lists(message, max_size=2),
            "score": score,
            "email": st.sampled_from([None, "", "mail"]),  # "mail": an address of its own
            "suppressed": st.booleans(),
            "choices": st.dictionaries(st.sampled_from(sorted(GROUPS)), st.booleans(), max_size=2),
            "account": st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {"tier": st.sampled_from(LOYALTY_TIERS), "balance": st.sampled_from(POINTS)}
                ),
            ),
        }
    )
    return st.lists(customer, min_size=5, max_size=CUSTOMERS)


@st.composite
def scenarios(draw):
    now = draw(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31))).replace(
        tzinfo=UTC
    )
    return (
        now,
        draw(customers(now)),
        draw(st.lists(rules(now), min_size=RULES_PER_EXAMPLE, max_size=RULES_PER_EXAMPLE)),
        draw(st.sampled_from(["member", "silver"])),  # the programme's lowest tier
    )


async def _load(sessions, now: datetime, people: list[dict]) -> list[int]:
    async with transaction(sessions) as session:
        tables = (LoyaltyAccount, Subscription, Suppression, SubscriptionGroup, CustomerScore, Message, Event)
        for table in (*tables, Customer):
            await session.execute(delete(table))
        for group_id, opt_in in GROUPS.items():
            await session.execute(insert(SubscriptionGroup).values(id=group_id, name=group_id, opt_in=opt_in))
        ids = []
        for i, person in enumerate(people):
            cid = i + 1
            ids.append(cid)
            email = f"c{cid}@example.com" if person["email"] == "mail" else person["email"]
            await session.execute(
                insert(Customer).values(
                    id=cid,
                    user_id=f"u{cid}",
                    email=email,
                    traits=person["traits"],
                    timezone=person["timezone"],
                    first_seen_at=now,
                    last_seen_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
            for j, e in enumerate(person["events"]):
                at = now - timedelta(hours=e["age"])
                await session.execute(
                    insert(Event).values(
                        message_id=f"m{cid}-{j}",
                        type="track",
                        name=e["name"],
                        customer_id=cid,
                        properties=e["properties"],
                        traits={},
                        context={},
                        timestamp=at,
                        received_at=at,
                    )
                )
            for j, m in enumerate(person["messages"]):
                at = now - timedelta(hours=m["age"])
                await session.execute(
                    insert(Message).values(
                        idempotency_key=f"k{cid}-{j}",
                        message_id=f"<{cid}-{j}>",
                        customer_id=cid,
                        template_id=m["template_id"],
                        status=m["status"],
                        created_at=at,
                        sent_at=at if m["has_sent_at"] else None,
                        meta={},
                    )
                )
            if email and person["suppressed"]:
                await session.execute(insert(Suppression).values(address=email, reason="unsubscribed"))
            for group_id, chosen in person["choices"].items():
                await session.execute(
                    insert(Subscription).values(
                        customer_id=cid, group_id=group_id, subscribed=chosen, source="api"
                    )
                )
            if person["account"]:
                await session.execute(insert(LoyaltyAccount).values(customer_id=cid, **person["account"]))
            if person["score"]:
                await session.execute(
                    insert(CustomerScore).values(
                        customer_id=cid, ltv=1.0, order_count=1, computed_at=now, **person["score"]
                    )
                )
    return ids


async def _check(sessions, dialect: str, scenario, counter: list[int]) -> None:
    now, people, raw_rules, lowest = scenario
    ids = await _load(sessions, now, people)
    async with sessions() as session:
        facts = {
            cid: await repository.customer_facts(session, cid, set(NAMES), lowest_tier=lowest) for cid in ids
        }
        for raw in raw_rules:
            rule = r.parse(raw)
            full = await repository.matching_ids(
                session, compiler.members_query(rule, dialect, now, lowest_tier=lowest)
            )
            scoped = await repository.matching_ids(
                session, compiler.members_query(rule, dialect, now, customer_ids=ids, lowest_tier=lowest)
            )
            in_python = {cid for cid in ids if evaluate(rule, facts[cid], now)}
            assert full == in_python == scoped, (
                f"rule {raw} at {now.isoformat()} (lowest tier {lowest}): "
                f"sql={full} scoped={scoped} python={in_python}"
            )
            counter[0] += 1
            counter[1] += 0 < len(full) < len(ids)
            for i, kind in enumerate((r.Subscribed, r.LoyaltyTier, r.LoyaltyBalance)):
                counter[2 + i] += any(isinstance(node, kind) for node in r.walk(rule))


def _run_property_test(database_url: str) -> int:
    loop = asyncio.new_event_loop()
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    dialect = engine.dialect.name
    # cases, cases that split the customers (some in, some out), cases on subscriptions, tiers, balances
    counter = [0, 0, 0, 0, 0]

    @seed(20261122)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(scenarios())
    def agree(scenario):
        loop.run_until_complete(_check(sessions, dialect, scenario, counter))

    try:
        agree()
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
    return counter


async def test_sql_and_python_evaluators_agree(database_url, sessions):
    # Hypothesis drives a synchronous test; it gets a thread and event loop of its own.
    result: dict = {}

    def target():
        try:
            result["cases"] = _run_property_test(database_url)
        except BaseException as exc:  # re-raised in the test's own thread
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    await asyncio.to_thread(thread.join)
    if "error" in result:
        raise result["error"]
    cases, splitting, *kinds = result["cases"]
    assert cases >= 500
    assert min(kinds) >= 30, kinds  # subscription, loyalty tier and balance conditions were exercised
    # The data must make rules discriminate, or agreement would prove little.
    assert splitting >= cases // 5, (splitting, cases)
