"""Segment evaluation benchmark.

Generates customers and events in a fresh database (PostgreSQL: generate_series; SQLite: a recursive
CTE), then times in the same run:

* full evaluation of a behavioural rule ("at least 2 orders in the last 30 days") compiled by
  domain.segments.compiler, against the hand-written GROUP BY ... HAVING query on the best index
  (events (name, timestamp, customer_id): an index-only scan on PostgreSQL);
* the incremental refresh after 10 000 new events (the refresher pass: read events past the cursor,
  re-evaluate the touched customers, store entries/exits) against a full refresh applying the same
  changes, and against the full evaluation. Both refreshes run in a rolled-back transaction on the same
  state.

    python bench/segments.py --quick                      # both backends, small, under a minute
    python bench/segments.py --backend postgresql         # 1 M customers / 10 M events

The last line printed is one JSON object; ``ratio`` is full evaluation / hand-written (PostgreSQL when
run, else SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from domain.db import create_engine, session_factory, utcnow
from domain.segments import compiler, repository
from domain.segments import rules as r
from domain.segments import service as segments
from domain.segments.schemas import SegmentIn
from runtime.migrate import upgrade_async

PG_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
RULE = {"event": "Order Completed", "times": {"at_least": 2}, "within_days": 30}
NAMES = ["Order Completed", "Viewed Product", "Added To Cart", "Page Viewed", "Email Opened"]
NEW_EVENTS = 10_000
CUSTOMER_COLUMNS = "(id, user_id, traits, first_seen_at, last_seen_at, created_at, updated_at)"
EVENT_COLUMNS = "(message_id, type, name, customer_id, properties, traits, context, timestamp, received_at)"
HANDWRITTEN = """
SELECT customer_id FROM events
WHERE name = :name AND timestamp >= :since
GROUP BY customer_id HAVING count(*) >= 2
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def load_postgresql(engine, customers: int, events: int) -> None:
    async with engine.begin() as conn:
        # Bulk load without per-row foreign-key triggers; indexes are built once afterwards.
        await conn.execute(text("SET session_replication_role = replica"))
        await conn.execute(text("DROP INDEX ix_events_customer_name_time"))
        await conn.execute(text("DROP INDEX ix_events_name_time_customer"))
        await conn.execute(text("ALTER TABLE events DROP CONSTRAINT uq_events_message_id"))
        await conn.execute(
            text(
                f"INSERT INTO customers {CUSTOMER_COLUMNS} "
                "SELECT g, 'u' || g, '{}'::jsonb, now() - interval '1 year', now(), "
                "now() - interval '1 year', now() FROM generate_series(1, :n) g"
            ),
            {"n": customers},
        )
        await conn.execute(text("SELECT setval('customers_id_seq', :n)"), {"n": customers})
        await conn.execute(
            text(
                f"INSERT INTO events {EVENT_COLUMNS} "
                "SELECT 'b' || g, 'track', (ARRAY[:n1, :n2, :n3, :n4, :n5])[1 + (g % 5)], "
                "1 + floor(random() * :customers)::bigint, "
                "jsonb_build_object('revenue', round((random() * 100)::numeric, 2)), "
                "'{}'::jsonb, '{}'::jsonb, "
                "now() - random() * interval '90 days', now() "
                "FROM generate_series(1, :events) g"
            ),
            {"customers": customers, "events": events, **{f"n{i + 1}": n for i, n in enumerate(NAMES)}},
        )
        await conn.execute(text("SET session_replication_role = DEFAULT"))
        await conn.execute(
            text("CREATE INDEX ix_events_customer_name_time ON events (customer_id, name, timestamp)")
        )
        await conn.execute(
            text("CREATE INDEX ix_events_name_time_customer ON events (name, timestamp, customer_id)")
        )
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))


async def load_sqlite(engine, customers: int, events: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DROP INDEX ix_events_customer_name_time"))
        await conn.execute(text("DROP INDEX ix_events_name_time_customer"))
        await conn.execute(
            text(
                "WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < :n) "
                f"INSERT INTO customers {CUSTOMER_COLUMNS} "
                "SELECT g, 'u' || g, '{}', datetime('now', '-1 year'), datetime('now'), "
                "datetime('now', '-1 year'), datetime('now') FROM seq"
            ),
            {"n": customers},
        )
        names = ", ".join(f"'{n}'" for n in NAMES)
        await conn.execute(
            text(
                "WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < :events) "
                f"INSERT INTO events {EVENT_COLUMNS} "
                f"SELECT 'b' || g, 'track', json_extract(json_array({names}), '$[' || (g % 5) || ']'), "
                "1 + abs(random()) % :customers, "
                "json_object('revenue', (abs(random()) % 10000) / 100.0), '{}', '{}', "
                "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (abs(random()) % 7776000) || ' seconds') "
                "|| '000', "
                "datetime('now') FROM seq"
            ),
            {"customers": customers, "events": events},
        )
        await conn.execute(
            text("CREATE INDEX ix_events_customer_name_time ON events (customer_id, name, timestamp)")
        )
        await conn.execute(
            text("CREATE INDEX ix_events_name_time_customer ON events (name, timestamp, customer_id)")
        )
        await conn.execute(text("ANALYZE"))


async def add_new_events(engine, dialect: str, customers: int, count: int) -> None:
    """``count`` new events on random existing customers, the same mix of names as the history."""
    if dialect == "postgresql":
        sql = (
            f"INSERT INTO events {EVENT_COLUMNS} "
            "SELECT 'new' || g, 'track', (ARRAY[:n1, :n2, :n3, :n4, :n5])[1 + (g % 5)], "
            "1 + floor(random() * :customers)::bigint, jsonb_build_object('revenue', 10), '{}', '{}', "
            "now(), now() FROM generate_series(1, :k) g"
        )
        params = {f"n{i + 1}": n for i, n in enumerate(NAMES)}
    else:
        names = ", ".join(f"'{n}'" for n in NAMES)
        sql = (
            "WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < :k) "
            f"INSERT INTO events {EVENT_COLUMNS} "
            f"SELECT 'new' || g, 'track', json_extract(json_array({names}), '$[' || (g % 5) || ']'), "
            "1 + abs(random()) % :customers, json_object('revenue', 10), '{}', '{}', "
            "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000', datetime('now') FROM seq"
        )
        params = {}
    async with engine.begin() as conn:
        await conn.execute(text(sql), {"k": count, "customers": customers, **params})


async def timed_pair(first, second, repeat: int) -> tuple[float, float]:
    """Median seconds of each, run alternately so both see the same machine load (2 shared cores)."""
    a, b = [], []
    for _ in range(repeat):
        for fn, samples in ((first, a), (second, b)):
            started = time.perf_counter()
            await fn()
            samples.append(time.perf_counter() - started)
    return statistics.median(a), statistics.median(b)


async def run_backend(backend: str, customers: int, events: int, repeat: int) -> dict:
    if backend == "postgresql":
        name = f"bench_segments_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    else:
        workdir = tempfile.TemporaryDirectory()
        url = f"sqlite+aiosqlite:///{Path(workdir.name) / 'bench.db'}"
    try:
        await upgrade_async(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        started = time.perf_counter()
        await (load_postgresql if backend == "postgresql" else load_sqlite)(engine, customers, events)
        load_s = time.perf_counter() - started
        log(f"{backend}: loaded {customers} customers, {events} events in {load_s:.1f}s")

        now = utcnow()
        rule = r.parse(RULE)
        query = compiler.members_query(rule, backend, now)
        params = {"name": "Order Completed", "since": now - timedelta(days=30)}
        if backend == "sqlite":
            params["since"] = params["since"].replace(tzinfo=None).isoformat(sep=" ")

        async def ours():
            async with sessions() as session:
                return await repository.matching_ids(session, query)

        async def handwritten():
            async with sessions() as session:
                return set((await session.scalars(text(HANDWRITTEN), params)).all())

        assert await ours() == await handwritten(), "compiled and hand-written queries disagree"
        full_s, hand_s = await timed_pair(ours, handwritten, repeat)
        log(f"{backend}: full evaluation {full_s:.3f}s, hand-written {hand_s:.3f}s")

        started = time.perf_counter()
        async with sessions() as session, session.begin():
            created = await segments.create(
                session, SegmentIn(id="repeat-buyers", name="Repeat buyers", rule=RULE)
            )
            progress = await repository.state(session, segments.EVENT_CURSOR)
            progress.cursor = await session.scalar(text("SELECT max(id) FROM events"))
            progress.ran_at = utcnow()
        build_s = time.perf_counter() - started
        log(f"{backend}: initial build {build_s:.2f}s, {created.members} members")

        # 10 000 as specified; 1 % of the history when that is smaller (--quick), so the batch stays a
        # small share of the customer base as it would be in production.
        new_events = min(NEW_EVENTS, events // 100)
        await add_new_events(engine, backend, customers, new_events)

        async def incremental():
            async with sessions() as session:
                await session.begin()
                await segments.refresh_from_events(session, batch_size=new_events)
                await session.rollback()

        async def full_refresh():
            async with sessions() as session:
                await session.begin()
                await segments.rebuild(session, "repeat-buyers")
                await session.rollback()

        incremental_s, full_refresh_s = await timed_pair(incremental, full_refresh, repeat)
        log(f"{backend}: incremental refresh {incremental_s:.3f}s, full refresh {full_refresh_s:.3f}s")
        await engine.dispose()
        return {
            "customers": customers,
            "events": events,
            "members": created.members,
            "new_events": new_events,
            "load_s": round(load_s, 2),
            "full_eval_s": round(full_s, 4),
            "handwritten_s": round(hand_s, 4),
            "ratio": round(full_s / hand_s, 3),
            "initial_build_s": round(build_s, 3),
            "incremental_s": round(incremental_s, 4),
            "full_refresh_s": round(full_refresh_s, 4),
            "incremental_vs_full_refresh": round(incremental_s / full_refresh_s, 4),
            "incremental_vs_full_eval": round(incremental_s / full_s, 4),
        }
    finally:
        if backend == "postgresql":
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await admin.dispose()
        else:
            workdir.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, both backends, under a minute")
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--customers", type=int, help="override the number of customers")
    parser.add_argument("--events", type=int, help="override the number of events")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    sizes = {
        "postgresql": (20_000, 200_000) if args.quick else (1_000_000, 10_000_000),
        "sqlite": (20_000, 200_000) if args.quick else (100_000, 1_000_000),
    }
    results = {}
    for backend in ("postgresql", "sqlite") if args.backend == "both" else (args.backend,):
        customers, events = sizes[backend]
        results[backend] = await run_backend(
            backend, args.customers or customers, args.events or events, args.repeat
        )
    headline = results.get("postgresql") or results["sqlite"]
    print(
        json.dumps(
            {
                "ratio": headline["ratio"],
                "incremental_vs_full_refresh": headline["incremental_vs_full_refresh"],
                "incremental_vs_full_eval": headline["incremental_vs_full_eval"],
                **{backend: figures for backend, figures in results.items()},
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
