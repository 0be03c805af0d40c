"""Analytics benchmark on PostgreSQL: each KPI over the last 30 days on 1 M customers / 10 M events.

The data comes from bench/segments.py's generator (customers, and events of five names over 90 days,
a fifth of them purchases), enriched here with what analytics reads: profile traits and dates, a
journey with a 20 % holdout and its steps, journey, broadcast and receipt emails, opens and clicks
naming their messages, unsubscribes and bounces, identify calls from two sources, and cases with CSAT
ratings. The enrichment's events count towards the total.

For each KPI the same run times our path (the service call the API makes) against a hand-written SQL
query computing the same figure, alternately, and checks both agree. Journey analytics, template
engagement and the data-quality review are timed too.

    python bench/analytics.py --quick        # 20 000 customers / 200 000 events, under a minute
    python bench/analytics.py                # 1 M customers / 10 M events

The last line is one JSON object; ``ratio`` is the sum of our KPI times over the sum of the hand-written
ones (above 1: ours is slower), ``slowest_kpi_s`` the slowest KPI call (the target is under 2 s).
Through the real API (the app on httpx's ASGI transport, key check included): ``api_kpis_s`` is
GET /api/analytics/kpis (every KPI and the index, target under 2 s) against ``handwritten_sum_s``, the
hand-written queries run one after the other (``api_kpis_ratio``), and ``report_page_s`` is GET
/api/analytics/report (84 days, monthly trend, the journey, value tiers, the data-quality review).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import text

from api.app import create_app
from bench.scratch_database import scratch_database
from bench.segments import load_postgresql, log
from bench.segments import timed as timed_in_turn
from config.settings import Settings
from domain.analytics import campaigns, kpis, quality
from domain.analytics.periods import Period
from domain.auth import service as auth
from domain.auth.schemas import KeyCreate, Role
from domain.db import create_engine, session_factory, transaction, utcnow
from runtime.migrate import upgrade_async

JOURNEY = {
    "nodes": [
        {"id": "start", "type": "entry", "trigger": "event", "event": "Signed Up", "next": "split"},
        {"id": "split", "type": "split", "paths": [{"weight": 1, "next": "hello"}], "holdout_percent": 20},
        {
            "id": "hello",
            "type": "send_email",
            "template_id": "welcome",
            "template_version": 1,
            "next": "done",
        },
        {"id": "done", "type": "exit"},
    ],
    "rules": {"goal": {"event": "Order Completed"}},
}
# Share of the events the enrichment adds (identify calls, opens, clicks, subscription changes).
ENRICHMENT_SHARE = 0.09
HOLDOUT = "(customer_id * 7919) % 100 < 20"


def ref(key: str, template: str) -> str:
    """SQL of the ref a message stores and its opens and clicks carry (domain.email.refs.message_ref)."""
    return f"substr(encode(sha256(convert_to({key}, 'UTF8')), 'hex'), 1, 24) || '~' || {template}"


ENRICH = [
    # Profiles: emails (a few shared or missing), names, phones, time zones, creation and update dates.
    """UPDATE customers SET
        email = CASE WHEN id % 50 = 0 THEN NULL
                     WHEN id % 97 = 0 THEN 'shared' || (id % 1000) || '@example.com'
                     ELSE 'u' || id || '@example.com' END,
        traits = jsonb_strip_nulls(jsonb_build_object(
            'first_name', CASE WHEN id % 20 = 0 THEN NULL ELSE 'F' || id END,
            'last_name', CASE WHEN id % 15 = 0 THEN NULL ELSE 'L' || id END,
            'email', 'u' || id || '@example.com',
            'phone', CASE WHEN id % 3 = 0 THEN '+49 30 ' || (1000000 + id % 8999999)
                          WHEN id % 301 = 0 THEN '12' END)),
        timezone = CASE WHEN id % 4 = 0 THEN 'Europe/Paris' WHEN id % 1001 = 0 THEN 'Mars/Base' END,
        created_at = now() - random() * interval '730 days',
        updated_at = now() - random() * interval '365 days'""",
    "INSERT INTO teams (id, name, auto_assign, created_at) VALUES ('care', 'Care', false, now())",
    """INSERT INTO templates (id, name, current_version, created_at, updated_at) VALUES
        ('welcome', 'Welcome', 1, now(), now()), ('promo', 'Promo', 1, now(), now()),
        ('receipt', 'Receipt', 1, now(), now())""",
    """INSERT INTO template_versions (template_id, version, subject, html, category, variants, created_at)
       VALUES ('welcome', 1, 's', 'h', 'marketing', '{}', now()),
              ('promo', 1, 's', 'h', 'marketing', '{}', now()),
              ('receipt', 1, 's', 'h', 'transactional', '{}', now())""",
    """INSERT INTO journeys (id, name, status, draft, published_version, created_at, updated_at)
       VALUES ('onboarding', 'Onboarding', 'published', CAST(:journey AS jsonb), 1, now(), now())""",
    """INSERT INTO journey_versions (journey_id, version, definition, trigger_event, published_at)
       VALUES ('onboarding', 1, CAST(:journey AS jsonb), 'Signed Up', now())""",
    # Half the customers entered the journey over the 90 days.
    """INSERT INTO enrollments (workflow_id, journey_id, version, customer_id, status, entered_at)
       SELECT 'journey/onboarding/customer/' || g, 'onboarding', 1, g, 'completed',
              now() - random() * interval '90 days'
       FROM generate_series(1, :customers, 2) g""",
    f"""INSERT INTO journey_steps (workflow_id, journey_id, version, customer_id, node_id, visit, entered_at,
                                   left_at, outcome)
        SELECT workflow_id, journey_id, 1, customer_id, 'split', 1, entered_at, entered_at,
               CASE WHEN {HOLDOUT} THEN 'holdout' ELSE 'path:0' END FROM enrollments
        UNION ALL
        SELECT workflow_id, journey_id, 1, customer_id, 'hello', 1, entered_at + interval '1 second',
               entered_at + interval '1 second', 'sent' FROM enrollments WHERE NOT ({HOLDOUT})
        UNION ALL
        SELECT workflow_id, journey_id, 1, customer_id, 'done', 1, entered_at + interval '2 seconds',
               entered_at + interval '2 seconds', NULL FROM enrollments WHERE NOT ({HOLDOUT})""",
    f"""INSERT INTO messages (idempotency_key, message_id, customer_id, template_id, template_version,
                              journey_id, node_id, to_address, status, attempts, meta, created_at, sent_at,
                              message_ref)
        SELECT workflow_id || '/0/hello/1', '<' || customer_id || '.hello@bench>', customer_id, 'welcome', 1,
               'onboarding', 'hello', 'u' || customer_id || '@example.com',
               CASE WHEN customer_id % 50 = 1 THEN 'skipped' ELSE 'sent' END, 1, '{{}}',
               entered_at + interval '1 second',
               CASE WHEN customer_id % 50 = 1 THEN NULL ELSE entered_at + interval '2 seconds' END,
               {ref("workflow_id || '/0/hello/1'", "'welcome'")}
        FROM enrollments WHERE NOT ({HOLDOUT})""",
    # A broadcast to a third of the customers 20 days ago, and receipts (transactional) to a tenth.
    """INSERT INTO broadcasts (id, name, template_id, template_version, audience, status, batch_size, slot,
                               cursor, sent, skipped, failed, created_at)
       VALUES ('spring', 'Spring sale', 'promo', 1, '{"kind": "all"}', 'completed', 500, 0, 0, 0, 0, 0,
               now())""",
    f"""INSERT INTO messages (idempotency_key, message_id, customer_id, template_id, template_version,
                             to_address, status, attempts, meta, created_at, sent_at, message_ref)
       SELECT 'broadcast/spring/customer/' || g, '<' || g || '.spring@bench>', g, 'promo', 1,
              'u' || g || '@example.com', 'sent', 1, '{{"broadcast_id": "spring"}}',
              now() - interval '20 days' + g * interval '1 millisecond',
              now() - interval '20 days' + g * interval '1 millisecond' + interval '1 second',
              {ref("'broadcast/spring/customer/' || g", "'promo'")}
       FROM generate_series(1, :customers, 3) g""",
    f"""INSERT INTO messages (idempotency_key, message_id, customer_id, template_id, template_version,
                             to_address, status, attempts, meta, created_at, sent_at, message_ref)
       SELECT 'receipt/' || g, '<' || g || '.receipt@bench>', g, 'receipt', 1, 'u' || g || '@example.com',
              'sent', 1, '{{}}', now() - random() * interval '90 days', now() - random() * interval '90 days',
              {ref("'receipt/' || g", "'receipt'")}
       FROM generate_series(1, :customers, 10) g""",
    # Opens (40 % of journey and broadcast sends), clicks (10 %), unsubscribes and bounces (0.5 %),
    # naming their message as tracking records them (events.message_ref as ingestion copies it).
    """INSERT INTO events (message_id, type, name, customer_id, properties, traits, context, timestamp,
                            received_at, message_ref)
       SELECT 'open/' || id, 'track', 'Email Opened', customer_id,
              jsonb_build_object('message_ref', message_ref, 'template_id', template_id),
              '{}', '{}', created_at + random() * interval '2 days', now(), message_ref
       FROM messages WHERE status = 'sent' AND template_id <> 'receipt' AND id % 5 < 2""",
    """INSERT INTO events (message_id, type, name, customer_id, properties, traits, context, timestamp,
                            received_at, message_ref)
       SELECT 'click/' || id, 'track', 'Email Link Clicked', customer_id,
              jsonb_build_object('message_ref', message_ref, 'template_id', template_id,
                                 'url', 'https://shop.example/'),
              '{}', '{}', created_at + random() * interval '2 days', now(), message_ref
       FROM messages WHERE status = 'sent' AND template_id <> 'receipt' AND id % 10 = 0""",
    """INSERT INTO events (message_id, type, name, customer_id, properties, traits, context, timestamp,
                           received_at)
       SELECT 'sub/' || id, 'track', 'Subscription Changed', customer_id,
              CASE WHEN id % 400 = 0 THEN '{"suppressed": true, "reason": "bounced"}'::jsonb
                   ELSE '{"group_id": "newsletter", "subscribed": false, "source": "one_click"}'::jsonb END,
              '{}', '{}', created_at + random() * interval '3 days', now()
       FROM messages WHERE status = 'sent' AND template_id <> 'receipt' AND id % 200 = 0""",
    # Identify calls: half the customers from source 1; one in a hundred also from source 2, another email.
    """INSERT INTO events (message_id, type, customer_id, properties, traits, context, timestamp, received_at,
                           source_key_id)
       SELECT 'identify/' || g, 'identify', g, '{}'::jsonb,
              jsonb_build_object('email', 'u' || g || '@example.com'), '{}'::jsonb,
              now() - random() * interval '90 days', now(), 1
       FROM generate_series(2, :customers, 2) g
       UNION ALL
       SELECT 'identify2/' || g, 'identify', g, '{}'::jsonb,
              jsonb_build_object('email', 'x' || g || '@example.com'), '{}'::jsonb,
              now() - random() * interval '90 days', now(), 2
       FROM generate_series(100, :customers, 100) g""",
    # Cases, some complaints, most rated.
    """INSERT INTO cases (customer_id, reason, priority, priority_rank, team_id, status, context,
                          first_response_due, resolution_due, csat_rating, csat_at, revision, created_at,
                          updated_at)
       SELECT 1 + (g * 7919) % :customers,
              (ARRAY['Customer complains about delivery', 'Question about an invoice', 'Payment failed twice',
                     'COMPLAINT: broken item'])[1 + g % 4],
              'normal', 1, 'care', 'resolved', '{}', now(), now(),
              CASE WHEN g % 3 = 0 THEN NULL ELSE 1 + g % 5 END,
              CASE WHEN g % 3 = 0 THEN NULL ELSE now() - random() * interval '88 days' END,
              1, now() - random() * interval '90 days', now()
       FROM generate_series(1, :cases) g""",
]

# Hand-written SQL for each KPI, as one would write it for PostgreSQL (the baselines).
HANDWRITTEN = {
    "customer_satisfaction": """
        SELECT avg(csat_rating), count(csat_rating) FROM cases
        WHERE csat_rating IS NOT NULL AND csat_at >= :start AND csat_at < :end""",
    "complaint_count": """
        SELECT count(*) FILTER (WHERE lower(reason) LIKE '%complain%'), count(*) FROM cases
        WHERE created_at >= :start AND created_at < :end""",
    "customer_growth_rate": """
        SELECT count(*) FILTER (WHERE created_at < :start), count(*) FILTER (WHERE created_at >= :start)
        FROM customers WHERE user_id IS NOT NULL AND created_at < :end""",
    "retention_rate": """
        SELECT count(*) FILTER (WHERE a), count(*) FILTER (WHERE a AND b) FROM (
          SELECT bool_or(timestamp >= :start_window AND timestamp < :start) AS a,
                 bool_or(timestamp >= :end_window AND timestamp < :end) AS b
          FROM events
          WHERE name = 'Order Completed'
            AND ((timestamp >= :start_window AND timestamp < :start)
              OR (timestamp >= :end_window AND timestamp < :end))
          GROUP BY customer_id) per_customer""",
    "marketing_conversion_rate": """
        SELECT count(*), count(*) FILTER (WHERE EXISTS (
                 SELECT 1 FROM events g WHERE g.customer_id = e.customer_id AND g.name = 'Order Completed'
                   AND g.timestamp >= e.entered_at AND g.timestamp < e.entered_at + interval '7 days'))
        FROM enrollments e
        WHERE e.journey_id = 'onboarding' AND e.version = 1
          AND e.entered_at >= :start AND e.entered_at < :end
          AND EXISTS (SELECT 1 FROM messages m
                      WHERE m.customer_id = e.customer_id AND m.journey_id = e.journey_id
                        AND m.status = 'sent'
                        AND left(m.idempotency_key, length(e.workflow_id) + 1) = e.workflow_id || '/')""",
    "roi": """
        SELECT (SELECT coalesce(sum(CASE WHEN jsonb_typeof(p.properties -> 'revenue') = 'number'
                                         THEN (p.properties ->> 'revenue')::float ELSE 0 END), 0)
                FROM events p
                WHERE p.name = 'Order Completed' AND p.timestamp >= :start AND p.timestamp < :end
                  AND EXISTS (SELECT 1 FROM messages m JOIN template_versions v
                                ON v.template_id = m.template_id AND v.version = m.template_version
                              WHERE m.customer_id = p.customer_id AND m.status = 'sent'
                                AND v.category = 'marketing' AND m.sent_at < p.timestamp
                                AND m.sent_at >= p.timestamp - interval '7 days')),
               (SELECT count(*) FROM messages m JOIN template_versions v
                  ON v.template_id = m.template_id AND v.version = m.template_version
                WHERE m.status = 'sent' AND v.category = 'marketing'
                  AND m.sent_at >= :start AND m.sent_at < :end)""",
}


def _ours(settings: Settings):
    """The service call behind each KPI, and how to read the figures the hand-written query returns."""
    return {
        "customer_satisfaction": (
            lambda s, p: kpis.satisfaction(s, [p]),
            lambda k: (round(k.value, 9) if k.value is not None else None, k.ratings),
            lambda row: (round(float(row[0]), 9) if row[0] is not None else None, row[1]),
        ),
        "complaint_count": (
            lambda s, p: kpis.complaints(s, [p], settings),
            lambda k: (k.value, k.cases_opened),
            tuple,
        ),
        "customer_growth_rate": (
            lambda s, p: kpis.growth(s, [p]),
            lambda k: (k.customers_at_start, k.new_customers),
            tuple,
        ),
        "retention_rate": (
            lambda s, p: kpis.retention(s, [p], settings),
            lambda k: (k.active_at_start, k.retained),
            tuple,
        ),
        "marketing_conversion_rate": (
            lambda s, p: kpis.conversion(s, [p], settings),
            lambda k: (k.recipients, k.converted),
            tuple,
        ),
        "roi": (
            lambda s, p: kpis.roi(s, [p], settings),
            lambda k: (round(k.attributed_revenue, 2), k.messages_sent),
            lambda row: (round(float(row[0]), 2), row[1]),
        ),
    }


async def enrich(engine, customers: int) -> None:
    params = {"customers": customers, "cases": max(1_000, customers // 20), "journey": json.dumps(JOURNEY)}
    async with engine.begin() as conn:
        for statement in ENRICH:
            started = time.perf_counter()
            await conn.execute(text(statement), params)
            log(f"  {statement.split()[0]} {statement.split()[2]}: {time.perf_counter() - started:.1f}s")
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))


async def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - started)
    return sorted(samples)[len(samples) // 2]


async def marketer_key(sessions) -> str:
    async with transaction(sessions) as session:
        created = await auth.create_key(session, KeyCreate(name="bench", role=Role.marketer))
    return created.secret


async def through_the_api(settings: Settings, sessions, period: Period, bounds: dict, figures, repeat: int):
    """GET /api/analytics/kpis (every KPI and the index) against the hand-written queries run one after
    the other, and the HTML report page (84 days, monthly trend, the journey, the data-quality review)."""
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {await marketer_key(sessions)}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=600
        ) as client,
    ):

        async def get(path: str, params: dict) -> httpx.Response:
            got = await client.get(path, params=params, headers=headers)
            assert got.status_code == 200, got.text[:500]
            return got

        window = {"from": period.start.isoformat(), "to": period.end.isoformat()}

        async def api_kpis():
            return (await get("/api/analytics/kpis", window)).json()

        async def handwritten_all():
            async with sessions() as session:
                return [(await session.execute(text(sql), bounds)).one() for sql in HANDWRITTEN.values()]

        answer = await api_kpis()
        assert answer["customer_satisfaction"]["ratings"] == figures["customer_satisfaction"]["value"][1]
        assert answer["roi"]["messages_sent"] == figures["roi"]["value"][1]
        assert answer["retention_rate"]["retained"] == figures["retention_rate"]["value"][1]
        api_s, hand_s = await timed_in_turn([api_kpis, handwritten_all], repeat)
        log(f"GET /api/analytics/kpis: {api_s:.3f}s, hand-written queries in turn {hand_s:.3f}s")

        now = period.end
        report_params = {
            "from": (now - timedelta(days=84)).isoformat(),
            "to": now.isoformat(),
            "interval": "month",
            "journey_id": "onboarding",
        }
        report_s = await timed(lambda: get("/api/analytics/report", report_params), max(1, repeat // 2))
        log(f"GET /api/analytics/report: {report_s:.3f}s")
    return {
        "api_kpis_s": round(api_s, 4),
        "handwritten_sum_s": round(hand_s, 4),
        "api_kpis_ratio": round(api_s / hand_s, 3),
        "report_page_s": round(report_s, 4),
    }


async def run(customers: int, events: int, repeat: int, keep: bool = False) -> dict:
    async with scratch_database("postgresql", "bench_analytics", keep=keep) as url:
        await upgrade_async(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        started = time.perf_counter()
        await load_postgresql(engine, customers, round(events * (1 - ENRICHMENT_SHARE)))
        await enrich(engine, customers)
        load_s = time.perf_counter() - started
        async with engine.connect() as conn:
            counts = {
                table: await conn.scalar(text(f"SELECT count(*) FROM {table}"))
                for table in ("customers", "events", "messages", "enrollments", "journey_steps", "cases")
            }
        log(f"loaded in {load_s:.0f}s: {counts}")

        # Active = a purchase in the last 30 days: the generated history spans 90, so retention has meaning.
        settings = Settings(dev_mode=True, database_url=url, analytics_active_days=30)
        now = utcnow()
        period = Period(now - timedelta(days=30), now)
        active = timedelta(days=settings.analytics_active_days)
        bounds = {
            "start": period.start,
            "end": period.end,
            "start_window": period.start - active,
            "end_window": period.end - active,
        }
        figures: dict[str, dict] = {}
        for kpi, (service_call, ours_reads, baseline_reads) in _ours(settings).items():

            async def ours(call=service_call):
                async with sessions() as session:
                    return await call(session, period)

            async def handwritten(sql=HANDWRITTEN[kpi]):
                async with sessions() as session:
                    return (await session.execute(text(sql), bounds)).one()

            mine, theirs = ours_reads((await ours()).whole), baseline_reads(await handwritten())
            assert mine == theirs, f"{kpi}: ours {mine} != hand-written {theirs}"
            ours_s, hand_s = await timed_in_turn([ours, handwritten], repeat)
            figures[kpi] = {
                "ours_s": round(ours_s, 4),
                "handwritten_s": round(hand_s, 4),
                "value": list(mine),
            }
            log(f"{kpi}: ours {ours_s:.3f}s, hand-written {hand_s:.3f}s ({mine})")

        async def call(fn):
            async with sessions() as session:
                return await fn(session)

        others = {
            "journey_analytics_s": lambda s: campaigns.journey(s, "onboarding", period, settings),
            "broadcast_analytics_s": lambda s: campaigns.broadcast(s, "spring", settings),
            "template_engagement_s": lambda s: campaigns.templates(s, period, settings),
            "data_quality_s": lambda s: quality.review(s, settings, now=now, limit=100),
            "trend_12_weeks_s": lambda s: kpis.trend(
                s, Period(now - timedelta(weeks=12), now), "week", settings
            ),
        }
        extra = {}
        for label, fn in others.items():
            extra[label] = round(await timed(lambda fn=fn: call(fn), max(1, repeat // 2)), 4)
            log(f"{label}: {extra[label]:.3f}s")
        extra |= await through_the_api(settings, sessions, period, bounds, figures, repeat)
        await engine.dispose()
        ours_total = sum(f["ours_s"] for f in figures.values())
        hand_total = sum(f["handwritten_s"] for f in figures.values())
        return {
            "ratio": round(ours_total / hand_total, 3),
            "api_kpis_s": extra.pop("api_kpis_s"),
            "handwritten_sum_s": extra.pop("handwritten_sum_s"),
            "api_kpis_ratio": extra.pop("api_kpis_ratio"),
            "report_page_s": extra.pop("report_page_s"),
            "slowest_kpi_s": max(f["ours_s"] for f in figures.values()),
            "under_2s": all(f["ours_s"] < 2 for f in figures.values()),
            **counts,
            "load_s": round(load_s, 1),
            "kpis": figures,
            **extra,
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="20 000 customers / 200 000 events, under a minute"
    )
    parser.add_argument("--customers", type=int, help="override the number of customers")
    parser.add_argument("--events", type=int, help="override the number of events")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keep", action="store_true", help="keep the database (to EXPLAIN queries); drop it after"
    )
    args = parser.parse_args()
    customers, events = (20_000, 200_000) if args.quick else (1_000_000, 10_000_000)
    result = await run(args.customers or customers, args.events or events, args.repeat, args.keep)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
