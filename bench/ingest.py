"""Ingestion throughput: accepted events/s through POST /v1/batch (100-event batches, validated and
persisted with profile facts and dedup), against a bare ASGI route doing one multi-row INSERT of the
same batch with the same driver (bench/baseline_app.py). Both are served by uvicorn in a subprocess
and driven by the same lightweight HTTP/1.1 load generator, in alternating turns, on SQLite and on
PostgreSQL; afterwards every event ours accepted must be found stored.

    .venv/bin/python bench/ingest.py [--quick] [--backend sqlite|postgresql|both]

The last line printed is a JSON object with every figure; ``ratio`` is PostgreSQL's (ours/baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch_database import scratch_database  # noqa: E402

BATCH = 100
TEMPLATES = 64
# Each request gets unique messageIds by replacing this in a pre-serialised template (cheap for the
# load generator, so the CPU goes to the servers being measured).
PLACEHOLDER = "@" * 12
BASELINE_TABLE = """
CREATE TABLE baseline_events (
    id {id} PRIMARY KEY,
    message_id VARCHAR(255) NOT NULL, type VARCHAR(16) NOT NULL, name VARCHAR(255),
    user_id VARCHAR(255), anonymous_id VARCHAR(255), properties {json} NOT NULL, context {json} NOT NULL,
    timestamp {ts} NOT NULL, received_at {ts} NOT NULL
)"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _batches(count: int, rng: random.Random, customers: int = 50_000) -> list[list[dict]]:
    """Realistic server-side traffic: mostly track calls from known customers, some identifies and
    purchases, a library context on each; unique messageIds."""
    context = {"library": {"name": "analytics-python", "version": "2.3.4"}, "ip": "203.0.113.9"}
    batches = []
    for _ in range(count):
        batch = []
        for _ in range(BATCH):
            user = f"user-{rng.randrange(customers)}"
            roll = rng.random()
            call = {
                "userId": user,
                "messageId": f"{PLACEHOLDER}-{len(batch)}",
                "timestamp": "2026-11-20T10:00:00+00:00",
            }
            if roll < 0.1:
                call |= {"type": "identify", "traits": {"plan": rng.choice(["free", "pro"]), "seats": 3}}
            elif roll < 0.2:
                call |= {
                    "type": "track",
                    "event": "Order Completed",
                    "properties": {"order_id": uuid.uuid4().hex[:10], "revenue": 42.5, "currency": "EUR"},
                }
            else:
                call |= {
                    "type": "track",
                    "event": rng.choice(["Product Viewed", "Product Added", "Checkout Started"]),
                    "properties": {"sku": f"SKU-{rng.randrange(500)}", "price": 19.99, "category": "shoes"},
                }
            batch.append(call | {"context": context})
        batches.append(batch)
    return batches


class Connection:
    """Keep-alive HTTP/1.1 over asyncio streams: far cheaper than a full client, so the load generator
    leaves the CPU to the servers being measured."""

    def __init__(self, port: int):
        self.port = port

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def post(self, path: str, body: bytes, auth: str) -> int:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Basic {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise RuntimeError("the server closed the connection")
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await self.reader.readexactly(length)
        try:
            return int(status_line.split()[1])
        except IndexError:
            raise RuntimeError(f"unexpected answer {status_line!r}") from None

    def close(self):
        self.writer.close()


def _bodies(templates: list[bytes], run: str, message_ids: str):
    """Request bodies with new messageIds: ``random`` (each call its own random id, as Segment's
    libraries send a uuid4: the dedup index takes them all over the tree) or ``sequential`` (ids
    ascending, so the dedup index only grows at its right edge)."""
    placeholder = PLACEHOLDER.encode()
    if message_ids == "sequential":
        for n in itertools.count():
            yield templates[n % len(templates)].replace(placeholder, f"{run}{n:010d}".encode())
    else:
        pieces = [t.split(placeholder) for t in templates]
        width = len(PLACEHOLDER)
        for n in itertools.count():
            parts = pieces[n % len(pieces)]
            noise = os.urandom(width * len(parts) // 2 + 1).hex()
            tokens = [noise[i * width : (i + 1) * width].encode() for i in range(len(parts) - 1)]
            yield b"".join(part + token for part, token in zip(parts[:-1], tokens, strict=True)) + parts[-1]


async def _drive(port: int, bodies, auth: str, seconds: float, concurrency: int) -> tuple[int, float]:
    """(events accepted, seconds taken) with ``concurrency`` connections posting batches back to back."""
    accepted = 0
    deadline = time.perf_counter() + seconds

    async def sender():
        nonlocal accepted
        conn = await Connection(port).open()
        try:
            while time.perf_counter() < deadline:
                status = await conn.post("/v1/batch", next(bodies), auth)
                if status != 200:
                    raise RuntimeError(f"server answered {status}")
                accepted += BATCH
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return accepted, time.perf_counter() - start


def _serve(target: list[str], port: int, env: dict[str, str]) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        *target,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env})


async def _wait_listening(port: int, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("server did not start")


SEED_CUSTOMERS = """
INSERT INTO customers (user_id, traits, first_seen_at, last_seen_at, created_at, updated_at,
                       event_count, order_count, lifetime_value)
SELECT 'user-' || n, '{{}}', {now}, {now}, {now}, {now}, 0, 0, 0 FROM {series}
"""


async def _prepare(url: str, customers: int) -> str:
    """Migrate, add the baseline table, seed the known customers, create a write key; returns the key.

    The customers exist up front because steady-state traffic is about known customers; creating a
    profile is the rare path (first sight of a person)."""
    from sqlalchemy import text

    from domain.auth import service as auth
    from domain.auth.schemas import KeyCreate, KeyKind
    from domain.db import create_engine, session_factory, transaction
    from runtime.migrate import upgrade_async

    await upgrade_async(url)
    engine = create_engine(url)
    try:
        pg = url.startswith("postgresql")
        ddl = BASELINE_TABLE.format(
            id="BIGSERIAL" if pg else "INTEGER",
            json="JSONB" if pg else "JSON",
            ts="TIMESTAMPTZ" if pg else "DATETIME",
        )
        series = (
            f"generate_series(0, {customers - 1}) AS n"
            if pg
            else "(WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s "
            f"WHERE n < {customers - 1}) "
            "SELECT n FROM s)"
        )
        now = "now()" if pg else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
        async with engine.begin() as conn:
            await conn.execute(text(ddl))
            await conn.execute(text(SEED_CUSTOMERS.format(now=now, series=series)))
            if pg:
                await conn.execute(text("ANALYZE customers"))
        async with transaction(session_factory(engine)) as session:
            created = await auth.create_key(session, KeyCreate(name="bench", kind=KeyKind.write))
        return created.secret
    finally:
        await engine.dispose()


async def _stored_events(url: str) -> int:
    from sqlalchemy import text

    from domain.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
    finally:
        await engine.dispose()


async def _measure(
    backend: str, seconds: float, concurrency: int, customers: int, rng: random.Random, message_ids: str
) -> dict:
    """Both servers run side by side and are driven in turns of about a second, so a change in what
    else the machine is doing meanwhile weighs on both alike."""
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database(backend, "journeys_bench") as url:
            return await _measure_on(url, tmp, seconds, concurrency, customers, rng, message_ids)


async def _measure_on(
    url: str, tmp: str, seconds: float, concurrency: int, customers: int, rng: random.Random, message_ids: str
) -> dict:
    procs = []
    try:
        key = await _prepare(url, customers)
        auth = base64.b64encode(f"{key}:".encode()).decode()
        templates = [json.dumps({"batch": b}).encode() for b in _batches(TEMPLATES, rng, customers)]
        servers = {}
        for name, target, env in (
            ("baseline", ["bench.baseline_app:app"], {"BENCH_DATABASE_URL": url}),
            (
                "ours",
                ["api.app:serving_app", "--factory"],
                {"JOURNEYS_DEV_MODE": "true", "JOURNEYS_DATABASE_URL": url, "JOURNEYS_DATA_DIR": tmp},
            ),
        ):
            port = _free_port()
            procs.append(_serve(target, port, env))
            await _wait_listening(port, procs[-1])
            servers[name] = (port, _bodies(templates, name[:2], message_ids))
        totals = {name: [0, 0.0] for name in servers}
        sent_by_ours = 0
        rounds = max(2, round(seconds))
        for turn in range(rounds + 1):  # the first turn warms both up and is not counted
            for name, (port, bodies) in servers.items():
                accepted, took = await _drive(port, bodies, auth, seconds / rounds, concurrency)
                sent_by_ours += accepted if name == "ours" else 0
                if turn:
                    totals[name][0] += accepted
                    totals[name][1] += took
        rates = {name: accepted / took for name, (accepted, took) in totals.items()}
        stored = await _stored_events(url)
        if stored != sent_by_ours:  # every messageId is new: each accepted event must be stored
            raise RuntimeError(f"{sent_by_ours} events accepted but {stored} stored")
        return {
            "ours_events_per_s": round(rates["ours"]),
            "baseline_events_per_s": round(rates["baseline"]),
            "ratio": round(rates["ours"] / rates["baseline"], 3),
            "ours_events_stored": stored,
        }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (the whole bench under a minute)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--seconds", type=float, help="measured seconds per server (default 5 quick, 20 full)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="connections posting at once")
    parser.add_argument("--customers", type=int, default=50_000, help="known customers the events are about")
    parser.add_argument(
        "--message-ids",
        choices=["random", "sequential"],
        default="random",
        help="new messageIds random per call (what Segment's libraries send) or ascending",
    )
    args = parser.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    rng = random.Random(1)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = {}
    for backend in backends:
        results[backend] = await _measure(
            backend, seconds, args.concurrency, args.customers, rng, args.message_ids
        )
        r = results[backend]
        print(
            f"{backend:>10}: ours {r['ours_events_per_s']:>7} events/s   "
            f"bare INSERT {r['baseline_events_per_s']:>7} events/s   ratio {r['ratio']:.2f}",
            flush=True,
        )
    figures = {
        "batch_size": BATCH,
        "concurrency": args.concurrency,
        "message_ids": args.message_ids,
        "customers": args.customers,
        "seconds": seconds,
    }
    for backend, r in results.items():
        figures |= {f"{backend}_{k}": v for k, v in r.items()}
    figures["ratio"] = results.get("postgresql", results.get("sqlite"))["ratio"]
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
