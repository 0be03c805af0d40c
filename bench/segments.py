"""Segment evaluation benchmark.

Generates customers and events in a fresh database (PostgreSQL: generate_series; SQLite: a recursive
CTE), then times in the same run:

* full evaluation of a behavioural rule ("at least 2 orders in the last 30 days") compiled by
  domain.segments.compiler, against the hand-written GROUP BY ... HAVING query on the best index
  (events (name, timestamp, customer_id): an index-only scan on PostgreSQL);
* the incremental refresh after 10 000 new events (the refresher pass: read events past the cursor,
  re-evaluate the touched customers, store entries/exits and their Segment Entered/Exited events)
  against a full refresh applying the same changes, and against the full evaluation. Both refreshes
  run in a rolled-back transaction on the same state. The four are timed in turn, so all see the
  same machine load.

The new events are drawn as the history is (the same mix of names, customers and properties), at the
moment of the pass. One clock serves the whole run, so the window does not move between the initial
build and the passes, and the bench asserts that the incremental pass and the full refresh leave
exactly the membership the full evaluation computes, with the same Segment Entered/Exited events.

    python bench/segments.py --quick                      # both backends, small, under a minute
    python bench/segments.py --backend postgresql         # 1 M customers / 10 M events
    python bench/segments.py --other-segments 50          # and 50 segments the new events do not concern

The last line printed is one JSON object; ``ratio`` is full evaluation / hand-written (PostgreSQL when
run, else SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import bindparam, text

from bench.scratch_database import scratch_database
from domain.db import UTCDateTime, create_engine, session_factory, utcnow
from domain.segments import compiler, repository
from domain.segments import rules as r
from domain.segments import service as segments
from domain.segments.schemas import SegmentIn
from runtime.migrate import upgrade_async

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


def events_sql(dialect: str, prefix: str, timestamp: str) -> str:
    """INSERT of ``:k`` events drawn like traffic: names in equal shares, a uniformly random customer
    among ``:customers``, a random revenue; ``timestamp`` is an SQL expression per row."""
    if dialect == "postgresql":
        return (
            f"INSERT INTO events {EVENT_COLUMNS} "
            f"SELECT '{prefix}' || g, 'track', (ARRAY[:n1, :n2, :n3, :n4, :n5])[1 + (g % 5)], "
            "1 + floor(random() * :customers)::bigint, "
            "jsonb_build_object('revenue', round((random() * 100)::numeric, 2)), '{}'::jsonb, '{}'::jsonb, "
            f"{timestamp}, now() FROM generate_series(1, :k) g"
        )
    names = ", ".join(f"'{n}'" for n in NAMES)
    return (
        "WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < :k) "
        f"INSERT INTO events {EVENT_COLUMNS} "
        f"SELECT '{prefix}' || g, 'track', json_extract(json_array({names}), '$[' || (g % 5) || ']'), "
        "1 + abs(random()) % :customers, json_object('revenue', (abs(random()) % 10000) / 100.0), "
        "'{}', '{}', "
        f"{timestamp}, datetime('now') FROM seq"
    )


def name_params(dialect: str) -> dict:
    return {f"n{i + 1}": n for i, n in enumerate(NAMES)} if dialect == "postgresql" else {}


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
            text(events_sql("postgresql", "b", "now() - random() * interval '90 days'")),
            {"customers": customers, "k": events, **name_params("postgresql")},
        )
        await conn.execute(text("SET session_replication_role = DEFAULT"))
        await conn.execute(text("ALTER TABLE events ADD CONSTRAINT uq_events_message_id UNIQUE (message_id)"))
        await conn.execute(
            text("CREATE INDEX ix_events_customer_name_time ON events (customer_id, name, timestamp)")
        )
        await conn.execute(
            text("CREATE INDEX ix_events_name_time_customer ON events (name, timestamp, customer_id)")
        )
    await analyze(engine, "VACUUM ANALYZE")


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
        at = "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (abs(random()) % 7776000) || ' seconds') || '000'"
        await conn.execute(text(events_sql("sqlite", "b", at)), {"customers": customers, "k": events})
        await conn.execute(
            text("CREATE INDEX ix_events_customer_name_time ON events (customer_id, name, timestamp)")
        )
        await conn.execute(
            text("CREATE INDEX ix_events_name_time_customer ON events (name, timestamp, customer_id)")
        )
    await analyze(engine, "ANALYZE")


async def analyze(engine, statement: str) -> None:
    """Planner statistics after a bulk change. Autovacuum does this on a live PostgreSQL (it is off
    on the bench server); SQLite keeps whatever ANALYZE last saw."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(statement))


async def add_new_events(engine, dialect: str, customers: int, count: int, at) -> None:
    """``count`` new events arriving at ``at``, drawn as the history was."""
    sql = text(events_sql(dialect, "new", ":at")).bindparams(bindparam("at", type_=UTCDateTime))
    async with engine.begin() as conn:
        await conn.execute(sql, {"k": count, "customers": customers, "at": at, **name_params(dialect)})


async def timed(fns, repeat: int) -> list[float]:
    """Median seconds of each, run in turn so all see the same machine load (2 shared cores)."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, taken in zip(fns, samples, strict=True):
            started = time.perf_counter()
            await fn()
            taken.append(time.perf_counter() - started)
    return [statistics.median(taken) for taken in samples]


async def run_backend(
    backend: str, customers: int, events: int, repeat: int, other_segments: int = 0
) -> dict:
    async with scratch_database(backend, "bench_segments") as url:
        await upgrade_async(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        started = time.perf_counter()
        await (load_postgresql if backend == "postgresql" else load_sqlite)(engine, customers, events)
        load_s = time.perf_counter() - started
        log(f"{backend}: loaded {customers} customers, {events} events in {load_s:.1f}s")

        # One clock for the whole run: the build, the new events, the passes and the full evaluation.
        at = utcnow()
        rule = r.parse(RULE)
        query = compiler.members_query(rule, backend, at)
        handwritten_sql = text(HANDWRITTEN).bindparams(bindparam("since", type_=UTCDateTime))
        params = {"name": "Order Completed", "since": at - timedelta(days=30)}

        async def ours():
            async with sessions() as session:
                return await repository.matching_ids(session, query)

        async def handwritten():
            async with sessions() as session:
                return set((await session.scalars(handwritten_sql, params)).all())

        assert await ours() == await handwritten(), "compiled and hand-written queries disagree"

        started = time.perf_counter()
        async with sessions() as session, session.begin():
            created = await segments.create(
                session, SegmentIn(id="repeat-buyers", name="Repeat buyers", rule=RULE), now=at
            )
            for k in range(other_segments):  # segments the new events do not concern
                rule = {"event": f"Absent {k}", "times": {"at_least": 2}, "within_days": 30}
                await segments.create(
                    session, SegmentIn(id=f"other-{k}", name=f"Other {k}", rule=rule), now=at
                )
            progress = await repository.state(session, segments.EVENT_CURSOR)
            progress.cursor = await session.scalar(text("SELECT max(id) FROM events"))
            progress.ran_at = at
        build_s = time.perf_counter() - started
        await analyze(engine, "ANALYZE segment_memberships")
        log(f"{backend}: initial build {build_s:.2f}s, {created.members} members")

        # 10 000 as specified; 1 % of the history when that is smaller (--quick), so the batch stays a
        # small share of the customer base as it would be in production.
        new_events = min(NEW_EVENTS, events // 100)
        await add_new_events(engine, backend, customers, new_events, at)
        cursor = progress.cursor

        async def incremental(check=None):
            async with sessions() as session:
                await session.begin()
                await segments.refresh_from_events(session, batch_size=new_events, now=at)
                if check:
                    await check(session)
                await session.rollback()

        async def full_refresh(check=None):
            async with sessions() as session:
                await session.begin()
                await segments.rebuild(session, "repeat-buyers", now=at)
                if check:
                    await check(session)
                await session.rollback()

        outcomes: dict[str, tuple] = {}

        def recording(path: str):
            async def check(session):
                members = await repository.current_members(session, "repeat-buyers")
                assert members == await repository.matching_ids(session, query), f"{path} disagrees"
                changes = text(
                    "SELECT name, customer_id FROM events WHERE id > :cursor AND name LIKE 'Segment %'"
                )
                outcomes[path] = (members, set((await session.execute(changes, {"cursor": cursor})).all()))

            return check

        await incremental(recording("incremental"))
        await full_refresh(recording("full refresh"))
        assert outcomes["incremental"] == outcomes["full refresh"], "the two refreshes made different changes"
        entered = sum(1 for name, _ in outcomes["incremental"][1] if name == segments.ENTERED)
        exited = len(outcomes["incremental"][1]) - entered
        full_s, hand_s, incremental_s, full_refresh_s = await timed(
            (ours, handwritten, incremental, full_refresh), repeat
        )
        log(f"{backend}: full evaluation {full_s:.3f}s, hand-written {hand_s:.3f}s")
        log(
            f"{backend}: incremental refresh {incremental_s:.3f}s ({entered} entered, {exited} exited), "
            f"full refresh {full_refresh_s:.3f}s"
        )
        await engine.dispose()
        return {
            "customers": customers,
            "events": events,
            "members": created.members,
            "new_events": new_events,
            "other_segments": other_segments,
            "entered": entered,
            "exited": exited,
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, both backends, under a minute")
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--customers", type=int, help="override the number of customers")
    parser.add_argument("--events", type=int, help="override the number of events")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--other-segments", type=int, default=0, help="also define N segments the new events do not concern"
    )
    args = parser.parse_args()
    sizes = {
        "postgresql": (20_000, 200_000) if args.quick else (1_000_000, 10_000_000),
        "sqlite": (20_000, 200_000) if args.quick else (100_000, 1_000_000),
    }
    results = {}
    for backend in ("postgresql", "sqlite") if args.backend == "both" else (args.backend,):
        customers, events = sizes[backend]
        results[backend] = await run_backend(
            backend, args.customers or customers, args.events or events, args.repeat, args.other_segments
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
