"""Loyalty ledger throughput: our path against the bare library doing the same work, in the same run.

* redeem: concurrent redemptions through ``service.redeem`` (account lock, idempotency key, lots spent
  oldest first, ledger entry, `Points Redeemed` event) against a bare SQLAlchemy transaction doing the
  minimum a correct ledger must do (guarded balance UPDATE + entry INSERT).
* earn: stored purchase events turned into points by the earner (``earn_once``: cursor, rules, lots,
  tier, `Points Earned` events) against bare INSERT ... ON CONFLICT DO NOTHING of the entries plus a
  balance UPDATE per event.

    python bench/loyalty.py [--quick] [--backend sqlite|postgresql]

Prints one JSON object as its last line; ``ratio`` is ours / bare for redemptions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch_database import scratch_database
from domain.customers.models import Customer
from domain.db import create_engine, session_factory, transaction, utcnow
from domain.events.models import Event
from domain.loyalty import service as loyalty
from domain.loyalty.earner import EventCursor, earn_once
from domain.loyalty.schemas import AdjustIn, ProgramConfig, RedeemIn
from runtime.migrate import upgrade_async

CONCURRENCY = 8


async def setup(sessions, customers: int) -> list[int]:
    async with transaction(sessions) as session:
        await loyalty.put_program(
            session,
            ProgramConfig.model_validate(
                {
                    "rules": [
                        {
                            "id": "purchase",
                            "event": "Order Completed",
                            "points_per_unit": 1,
                            "since": "2000-01-01T00:00:00Z",
                        }
                    ],
                    "expiry_months": 12,
                }
            ),
            utcnow(),
        )
        rows = [Customer(user_id=f"bench-{i}", traits={}) for i in range(customers)]
        session.add_all(rows)
        await session.flush()
        ids = [c.id for c in rows]
    for cid in ids:
        async with transaction(sessions) as session:
            await loyalty.adjust(session, cid, "seed", AdjustIn(points=1_000_000, reason="bench"), utcnow())
    await_bare_accounts = """
        CREATE TABLE IF NOT EXISTS bare_accounts (customer_id BIGINT PRIMARY KEY, balance BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS bare_entries (
            id BIGSERIAL PRIMARY KEY, idempotency_key VARCHAR(400) UNIQUE NOT NULL,
            customer_id BIGINT NOT NULL, points BIGINT NOT NULL, created_at TIMESTAMP NOT NULL)
    """
    async with transaction(sessions) as session:
        serial = "BIGSERIAL" if session.bind.dialect.name == "postgresql" else "INTEGER"
        for statement in await_bare_accounts.replace("BIGSERIAL", serial).split(";"):
            await session.execute(text(statement))
        for cid in ids:
            await session.execute(
                text("INSERT INTO bare_accounts (customer_id, balance) VALUES (:c, 1000000)"), {"c": cid}
            )
    return ids


async def run_concurrently(jobs, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(job):
        async with gate:
            await job()

    started = time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    return time.perf_counter() - started


async def bench_redeem(sessions, customers: list[int], n: int) -> tuple[float, float]:
    tag = uuid.uuid4().hex[:6]

    def ours(i: int):
        async def job():
            async with transaction(sessions) as session:
                await loyalty.redeem(
                    session, customers[i % len(customers)], f"{tag}-{i}", RedeemIn(points=1), utcnow()
                )

        return job

    def bare(i: int):
        async def job():
            async with transaction(sessions) as session:
                cid = customers[i % len(customers)]
                done = await session.execute(
                    text(
                        "UPDATE bare_accounts SET balance = balance - 1 "
                        "WHERE customer_id = :c AND balance >= 1"
                    ),
                    {"c": cid},
                )
                assert done.rowcount == 1
                await session.execute(
                    text(
                        "INSERT INTO bare_entries (idempotency_key, customer_id, points, created_at) "
                        "VALUES (:k, :c, -1, :t)"
                    ),
                    {"k": f"{tag}-{i}", "c": cid, "t": datetime.now(UTC).replace(tzinfo=None)},
                )

        return job

    bare_s = await run_concurrently([bare(i) for i in range(n)], CONCURRENCY)
    ours_s = await run_concurrently([ours(i) for i in range(n)], CONCURRENCY)
    return n / ours_s, n / bare_s


async def bench_earn(sessions, customers: list[int], n: int) -> tuple[float, float]:
    async with sessions() as session:
        before = (await session.execute(text("SELECT coalesce(max(id), 0) FROM events"))).scalar()
    async with transaction(sessions) as session:
        session.add_all(
            Event(
                message_id=f"ev-{uuid.uuid4().hex}",
                type="track",
                name="Order Completed",
                customer_id=customers[i % len(customers)],
                properties={"revenue": 10 + i % 90},
                traits={},
                context={},
                timestamp=utcnow(),
            )
            for i in range(n)
        )
    async with sessions() as session:
        events = (
            await session.execute(
                text(
                    "SELECT id, customer_id, properties FROM events "
                    "WHERE name = 'Order Completed' AND id > :before ORDER BY id"
                ),
                {"before": before},
            )
        ).all()

    started = time.perf_counter()
    for start in range(0, len(events), 500):
        async with transaction(sessions) as session:
            for event_id, cid, props in events[start : start + 500]:
                props = json.loads(props) if isinstance(props, str) else props
                points = int(props["revenue"])
                stmt = (
                    "INSERT INTO bare_entries (idempotency_key, customer_id, points, created_at) "
                    "VALUES (:k, :c, :p, :t) ON CONFLICT (idempotency_key) DO NOTHING"
                )
                await session.execute(
                    text(stmt),
                    {
                        "k": f"e-{event_id}",
                        "c": cid,
                        "p": points,
                        "t": datetime.now(UTC).replace(tzinfo=None),
                    },
                )
                await session.execute(
                    text("UPDATE bare_accounts SET balance = balance + :p WHERE customer_id = :c"),
                    {"p": points, "c": cid},
                )
    bare_s = time.perf_counter() - started

    cursor = EventCursor()
    started = time.perf_counter()
    written = 0
    while True:
        read, wrote = await earn_once(sessions, cursor, utcnow(), 500)
        written += wrote
        if read == 0:
            break
    ours_s = time.perf_counter() - started
    assert written == n, (written, n)
    return n / ours_s, n / bare_s


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    # Several short rounds, ours right after bare each time, and the median: the machine is shared, and
    # a pair measured back to back sees the same load.
    rounds, redemptions, events, customers = (3, 150, 400, 50) if args.quick else (5, 1000, 4000, 200)

    redeem, earn = [], []
    async with scratch_database(args.backend, "bench_loyalty") as url:
        await upgrade_async(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        ids = await setup(sessions, customers)
        for _ in range(rounds):
            redeem.append(await bench_redeem(sessions, ids, redemptions))
            earn.append(await bench_earn(sessions, ids, events))
        await engine.dispose()
    figures = {
        "backend": args.backend,
        "rounds": rounds,
        "redeem_per_s": round(median(o for o, _ in redeem), 1),
        "redeem_bare_per_s": round(median(b for _, b in redeem), 1),
        "earn_per_s": round(median(o for o, _ in earn), 1),
        "earn_bare_per_s": round(median(b for _, b in earn), 1),
        "earn_ratio": round(median(o / b for o, b in earn), 3),
        "ratio": round(median(o / b for o, b in redeem), 3),
    }
    print(f"redeem: {figures['redeem_per_s']}/s ours vs {figures['redeem_bare_per_s']}/s bare")
    print(f"earn:   {figures['earn_per_s']}/s ours vs {figures['earn_bare_per_s']}/s bare")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
