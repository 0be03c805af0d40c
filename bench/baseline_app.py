"""The baseline for bench/ingest.py: a bare ASGI app (no framework, no ORM) that takes a /v1/batch body
and stores it with one multi-row INSERT through the same driver our engine uses (asyncpg or aiosqlite).
It validates nothing, resolves no customer and deduplicates nothing: the floor of the work."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime

URL = os.environ["BENCH_DATABASE_URL"]
COLUMNS = "message_id, type, name, user_id, anonymous_id, properties, context, timestamp, received_at"
_db = None
_write = asyncio.Lock()  # one SQLite connection: one transaction at a time (SQLite has one writer anyway)


async def _connect():
    global _db
    if URL.startswith("postgresql"):
        import asyncpg

        _db = await asyncpg.create_pool(
            URL.replace("postgresql+asyncpg", "postgresql"), min_size=4, max_size=10
        )
    else:
        import aiosqlite

        _db = await aiosqlite.connect(URL.split("///", 1)[1], isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"):
            await _db.execute(f"PRAGMA {pragma}")


def _row(call: dict, now: datetime) -> tuple:
    ts = call.get("timestamp")
    return (
        call.get("messageId"),
        call.get("type"),
        call.get("event"),
        call.get("userId"),
        call.get("anonymousId"),
        json.dumps(call.get("properties") or {}),
        json.dumps(call.get("context") or {}),
        datetime.fromisoformat(ts) if ts else now,
        now,
    )


async def _insert(rows: list[tuple]) -> None:
    width = len(rows[0])
    if URL.startswith("postgresql"):
        values = ",".join(
            "(" + ",".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(len(rows))
        )
        args = [v for row in rows for v in row]
        async with _db.acquire() as conn:
            await conn.execute(f"INSERT INTO baseline_events ({COLUMNS}) VALUES {values}", *args)
    else:
        values = ",".join("(" + ",".join("?" * width) + ")" for _ in rows)
        args = [v.isoformat() if isinstance(v, datetime) else v for row in rows for v in row]
        async with _write:
            await _db.execute("BEGIN IMMEDIATE")
            await _db.execute(f"INSERT INTO baseline_events ({COLUMNS}) VALUES {values}", args)
            await _db.execute("COMMIT")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await _connect()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _db.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    now = datetime.now(UTC)
    await _insert([_row(call, now) for call in json.loads(body)["batch"]])
    answer = b'{"success":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})
