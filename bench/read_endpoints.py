"""The API's read endpoints at the size of a real customer base.

Seeds a PostgreSQL database (generate_series, as bench/segments.py does) with customers, events,
segment stays, a journey's enrollments and steps, the send ledger, opens and clicks of its messages (a
third opened, a tenth clicked, recorded as the product's tracking records them, so the analytics
endpoints match them to messages by ``message_ref``) and a case queue, then times every GET a marketer
or agent uses all day through the whole stack (FastAPI, the session, the ORM): a first page, a deep
page and a search each. Definitions (template, segments, journey, team) are made through
the API itself so they are valid; the bulk rows are written by SQL.

    python bench/read_endpoints.py --quick          # 20 000 customers / 200 000 events, under a minute
    python bench/read_endpoints.py                  # 200 000 customers / 2 M events, ~50 000 enrollments,
                                                    # 100 000 messages, 33 000 opens, 10 000 clicks
    python bench/read_endpoints.py --keep           # leave the database for EXPLAIN afterwards
    python bench/read_endpoints.py --database URL   # time an already seeded database again

The last line printed is one JSON object; ``ratio`` is the slowest endpoint's median over the median
of a primary-key read through the same stack (GET /api/segments/{id}): how many trivial reads the
worst read costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import text

from api.app import create_app
from bench.scratch_database import scratch_database
from config.settings import Settings
from domain.auth import service as auth
from domain.auth.schemas import KeyCreate, KeyKind, Role
from domain.db import create_engine, session_factory, transaction
from domain.email import tracking
from runtime.migrate import upgrade_async

# No opens or clicks: those are seeded from the messages, as tracking records them (below).
NAMES = ["Order Completed", "Viewed Product", "Added To Cart", "Page Viewed", "Products Searched"]
CLICKED_URL = "https://shop.example/sale"
PLANS = ["free", "pro", "team", "enterprise"]
SEGMENTS = {"buyers": 3, "browsers": 4, "vips": 20}  # every n-th customer is a member


def _settings(url: str) -> Settings:
    # Dev mode only spares the production secrets; the app serves the same routes and queries.
    return Settings(database_url=url, dev_mode=True, data_dir=Path(tempfile.gettempdir()) / "bench_reads")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def seed(url: str, customers: int, events: int, enrollments: int, messages: int, cases: int) -> str:
    """Returns an admin key's secret (admins may read every endpoint timed)."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        admin = await auth.create_key(
            session, KeyCreate(name="bench", kind=KeyKind.management, role=Role.admin)
        )
    app = create_app(_settings(url))
    headers = {"Authorization": f"Bearer {admin.secret}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b", headers=headers) as c,
    ):
        for call in (
            c.post(
                "/api/templates", json={"id": "promo", "name": "Promo", "subject": "Hi", "html": "<p>Hi</p>"}
            ),
            c.post("/api/teams", json={"id": "support", "name": "Support"}),
            c.post("/api/teams", json={"id": "vip", "name": "VIP care"}),
            c.post(
                "/api/journeys",
                json={
                    "id": "onboarding",
                    "name": "Onboarding",
                    "definition": {
                        "nodes": [
                            {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"},
                            {"id": "hello", "type": "send_email", "template_id": "promo", "next": "done"},
                            {"id": "done", "type": "exit"},
                        ]
                    },
                },
            ),
            c.post("/api/journeys/onboarding/publish"),
            *(
                c.post(
                    "/api/segments",
                    json={"id": s, "name": s, "rule": {"trait": "plan", "op": "equals", "value": s}},
                )
                for s in SEGMENTS
            ),
        ):
            response = await call
            assert response.status_code in (200, 201), response.text
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(text("SET session_replication_role = replica"))  # no FK triggers while loading
        await conn.execute(
            text(
                "INSERT INTO customers (id, user_id, anonymous_id, email, traits, timezone, first_seen_at, "
                "last_seen_at, created_at, updated_at, event_count, order_count, lifetime_value) "
                "SELECT g, 'user-' || g, 'anon-' || g, 'person' || g || '@example' || (g % 97) || '.com', "
                "jsonb_build_object('plan', (ARRAY['free','pro','team','enterprise'])[1 + g % 4], "
                "'first_name', 'Name' || (g % 1000)), 'Europe/Paris', "
                "now() - interval '1 year', now() - (g % 90) * interval '1 day', "
                "now() - interval '1 year' + g * interval '1 minute', now(), 10, g % 7, (g % 500)::numeric "
                "FROM generate_series(1, :n) g"
            ),
            {"n": customers},
        )
        await conn.execute(text("SELECT setval('customers_id_seq', :n)"), {"n": customers})
        await conn.execute(
            text(
                "INSERT INTO events (message_id, type, name, customer_id, properties, traits, context, "
                "timestamp, received_at) "
                "SELECT 'e' || g, 'track', (ARRAY[:n1, :n2, :n3, :n4, :n5])[1 + (g % 5)], "
                "1 + (g::bigint * 7919) % :customers, jsonb_build_object('revenue', g % 100), '{}'::jsonb, "
                "'{}'::jsonb, now() - (g % 129600) * interval '1 minute', now() "
                "FROM generate_series(1, :k) g"
            ),
            {"customers": customers, "k": events, **{f"n{i + 1}": n for i, n in enumerate(NAMES)}},
        )
        for segment, every in SEGMENTS.items():
            await conn.execute(
                text(
                    "INSERT INTO segment_memberships (segment_id, customer_id, entered_at) "
                    "SELECT :s, g, now() - (g % 30) * interval '1 day' "
                    "FROM generate_series(CAST(:e AS bigint), CAST(:n AS bigint), CAST(:e AS bigint)) g"
                ),
                {"s": segment, "e": every, "n": customers},
            )
        await conn.execute(
            text(
                "INSERT INTO enrollments (workflow_id, journey_id, version, customer_id, status, entered_at, "
                "completed_at) "
                "SELECT 'journey/onboarding/customer/' || g, 'onboarding', 1, g, "
                "CASE WHEN g % 10 = 0 THEN 'active' ELSE 'completed' END, "
                "now() - (:k - g) * interval '1 minute', "
                "CASE WHEN g % 10 = 0 THEN NULL ELSE now() - (:k - g) * interval '1 minute' END "
                "FROM generate_series(1, :k) g"
            ),
            {"k": enrollments},
        )
        for node, outcome in (("start", "ok"), ("hello", "sent"), ("done", None)):
            await conn.execute(
                text(
                    "INSERT INTO journey_steps (workflow_id, journey_id, version, customer_id, node_id, "
                    "visit, entered_at, left_at, outcome) "
                    "SELECT 'journey/onboarding/customer/' || g, 'onboarding', 1, g, :node, 1, now(), "
                    "CASE WHEN g % 10 = 0 AND :last THEN NULL ELSE now() END, :outcome "
                    "FROM generate_series(1, :k) g"
                ),
                {"k": enrollments, "node": node, "outcome": outcome, "last": node == "done"},
            )
        # The ledger: the journey's sends (one per enrollment) and broadcast sends to everyone else, each
        # with its ref (domain.email.refs.message_ref: the digest of its key and its template).
        ref = "substr(encode(sha256(convert_to('m' || g, 'UTF8')), 'hex'), 1, 24) || '~' || 'promo'"
        await conn.execute(
            text(
                "INSERT INTO messages (idempotency_key, message_id, customer_id, template_id, "
                "template_version, journey_id, node_id, to_address, subject, status, attempts, meta, "
                "created_at, sent_at, message_ref) "
                "SELECT 'm' || g, '<m' || g || '@bench>', 1 + (g::bigint * 31) % :customers, 'promo', 1, "
                "CASE WHEN g <= :k THEN 'onboarding' END, CASE WHEN g <= :k THEN 'hello' END, "
                "'person' || g || '@example.com', 'Hi', 'sent', 1, '{}'::jsonb, "
                "now() - (:m - g) * interval '1 second', now() - (:m - g) * interval '1 second', "
                f"{ref} "
                "FROM generate_series(1, :m) g"
            ),
            {"customers": customers, "k": min(enrollments, messages // 2), "m": messages},
        )
        # Engagement as domain.email.tracking.record writes it: the first open of a message, the first
        # click of its link, each naming the message by its message_ref (stored with the message, and
        # copied out of the properties by ingestion), some minutes after the send. A third of the
        # messages are opened, a tenth clicked (a click without a recorded open is a mail app that
        # blocks images).
        url_digest = "substr(encode(sha256(convert_to(CAST(:url AS text), 'UTF8')), 'hex'), 1, 16)"
        for name, every, dedupe, extra in (  # dedupe and extra as record() builds messageId and properties
            (tracking.OPENED, 3, "''", "'{}'::jsonb"),
            (tracking.CLICKED, 10, f"'/' || {url_digest}", "jsonb_build_object('url', CAST(:url AS text))"),
        ):
            await conn.execute(
                text(
                    "INSERT INTO events (message_id, type, name, customer_id, user_id, properties, traits, "
                    "context, timestamp, received_at, message_ref) "
                    f"SELECT CAST(:name AS text) || '/' || ref || {dedupe}, 'track', :name, customer_id, "
                    "'user-' || customer_id, "
                    f"jsonb_build_object('message_ref', ref, 'template_id', template_id) || {extra}, "
                    "'{}'::jsonb, '{}'::jsonb, t, t, ref "
                    "FROM (SELECT message_ref AS ref, customer_id, template_id, "
                    "least(now(), sent_at + (id % 180) * interval '1 minute') AS t "
                    "FROM messages WHERE id % :every = 0) m"
                ),
                {"name": name, "every": every, "url": CLICKED_URL},
            )
        await conn.execute(
            text(
                "INSERT INTO cases (customer_id, reason, priority, priority_rank, team_id, status, context, "
                "first_response_due, resolution_due, due_at, revision, created_at, updated_at, resolved_at) "
                "SELECT 1 + (g::bigint * 13) % :customers, 'complaint', "
                "(ARRAY['low','normal','high','urgent'])[1 + g % 4], "
                "g % 4, CASE WHEN g % 5 = 0 THEN 'vip' ELSE 'support' END, "
                "CASE WHEN g % 3 = 0 THEN 'open' ELSE 'resolved' END, '{}'::jsonb, "
                "now() + g * interval '1 minute', now() + g * interval '2 minute', "
                "now() + g * interval '1 minute', 0, now(), now(), "
                "CASE WHEN g % 3 = 0 THEN NULL ELSE now() END "
                "FROM generate_series(1, :c) g"
            ),
            {"customers": customers, "c": cases},
        )
        await conn.execute(
            text(
                "INSERT INTO broadcasts (id, name, template_id, template_version, audience, batch_size, "
                "status, slot, cursor, sent, skipped, failed, created_at) "
                "SELECT 'b' || g, 'Broadcast ' || g, 'promo', 1, '{\"segment\": \"buyers\"}'::jsonb, 500, "
                "'done', 0, 0, 1000, 0, 0, now() - g * interval '1 day' FROM generate_series(1, 200) g"
            )
        )
        await conn.execute(text("SET session_replication_role = DEFAULT"))
        # The refs must be the product's, or the analytics endpoints would match no open at all.
        key, template, stored = (
            await conn.execute(
                text("SELECT idempotency_key, template_id, message_ref FROM messages WHERE id = 3")
            )
        ).one()
        assert stored == tracking.message_ref(key, template), (
            "the seeded messages' refs are not the product's"
        )
        opened = await conn.scalar(
            text(
                "SELECT count(*) FROM events WHERE name = :name AND properties->>'message_ref' = :ref"
                " AND message_ref = :ref"
            ),
            {"name": tracking.OPENED, "ref": stored},
        )
        assert opened == 1, f"the seeded opens do not name messages as tracking does ({opened})"
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))
    log(f"seeded in {time.perf_counter() - started:.0f}s")
    await engine.dispose()
    return admin.secret


def endpoints(customers: int) -> dict[str, str]:
    deep = customers - 100  # a deep page: keyset paging makes it cost what the first page costs
    return {
        "customers first page": "/api/customers",
        "customers deep page": f"/api/customers?after={deep}",
        "customers search q (userId)": f"/api/customers?q=user-{customers // 2}",
        "customers search q (no match)": "/api/customers?q=nobody@nowhere.example",
        "customers search email prefix": f"/api/customers?email=person{customers // 2}@",
        "customers search email prefix (no match)": "/api/customers?email=zzz",
        "customers search trait": "/api/customers?trait=plan:enterprise",
        "customers search trait (no match)": "/api/customers?trait=plan:none",
        "customers search trait (one in 1000)": "/api/customers?trait=first_name:Name7",
        "customer 360": f"/api/customers/{customers // 3 * 3}",
        "segments list": "/api/segments",
        "segment (pk read)": "/api/segments/buyers",
        "segment members first page": "/api/segments/buyers/members",
        "segment members deep page": f"/api/segments/buyers/members?after={deep}",
        "segments tiers": "/api/segments/tiers",
        "journeys list": "/api/journeys",
        "journey enrollments": "/api/journeys/onboarding/enrollments",
        "journey enrollments limit=1000": "/api/journeys/onboarding/enrollments?limit=1000",
        "journey stats": "/api/journeys/onboarding/stats",
        "broadcasts list": "/api/broadcasts",
        "messages first page": "/api/messages",
        "messages deep page": "/api/messages?before_id=1000",
        "messages of a customer": f"/api/messages?customer_id={customers // 2}",
        "messages of a journey": "/api/messages?journey_id=onboarding",
        "messages of a journey, deep": "/api/messages?journey_id=onboarding&before_id=1000",
        "messages of a journey that sent none": "/api/messages?journey_id=winback",
        "cases queue": "/api/cases",
        "cases of a customer": "/api/cases?customer_id=13",
        "analytics kpis": "/api/analytics/kpis",
        "analytics journey": "/api/analytics/journeys/onboarding",
        "analytics templates": "/api/analytics/templates",
    }


async def time_all(url: str, secret: str, customers: int, repeat: int, only: str | None) -> dict[str, float]:
    app = create_app(_settings(url))
    out: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {secret}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://b", headers=headers, timeout=600
        ) as c,
    ):
        for name, path in endpoints(customers).items():
            if only and only not in name:
                continue
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                response = await c.get(path)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, (path, response.status_code, response.text[:300])
            out[name] = statistics.median(times) * 1000
            log(f"{out[name]:9.1f} ms  {name}  ({len(response.content)} bytes)")
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20 000 customers, 200 000 events")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--database", help="time this already seeded database (with --secret, --customers)")
    parser.add_argument("--secret", help="an admin key of --database")
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", help="time only endpoints whose name contains this")
    args = parser.parse_args()
    n = 20_000 if args.quick else args.customers
    if args.database:
        results = await time_all(args.database, args.secret, n, args.repeat, args.only)
    else:
        async with scratch_database("postgresql", "bench_reads", keep=args.keep) as url:
            await upgrade_async(url)
            secret = await seed(url, n, n * 10, n // 4, n // 2, max(n // 50, 100))
            log(f"database {url} admin key {secret}")
            results = await time_all(url, secret, n, 3 if args.quick else args.repeat, args.only)
    worst = max(results, key=results.get)
    base = results.get("segment (pk read)") or min(results.values())
    print(
        json.dumps({"customers": n, "worst": worst, "ratio": round(results[worst] / base, 1), "ms": results})
    )


if __name__ == "__main__":
    asyncio.run(main())
