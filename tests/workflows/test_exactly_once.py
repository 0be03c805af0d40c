"""Exactly once under crashes: 100 enrollments of a three-email journey while the worker process is
killed (SIGKILL) at random moments while it sends, and restarted. Every journey completes and every email
step is delivered under exactly one Message-ID, the one derived from its workflow id and node, and
delivered again only when a kill cut it off between the SMTP handoff and its ledger record.

The kills are placed by progress (after a random share of the sends), not by the clock: on a loaded
machine a restarted worker takes seconds to start, and a kill timed from its start landed before it sent
anything, cutting nothing off. The run fails when it stops moving (no send and no enrollment finished)
for longer than a bound that grows with the worker start times measured in the run, not at a fixed time.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.email import compose
from domain.email import service as email
from domain.email.models import Message
from domain.email.schemas import TemplateIn
from domain.events import service as events
from domain.events.schemas import TrackCall
from domain.journeys import service as journeys
from domain.journeys.models import Enrollment
from domain.journeys.schemas import JourneyIn
from runtime import smtp_capture
from runtime.event_router import EventRouter
from tests.conftest import ROOT, _pg_reachable
from tests.temporal_env import local, shutdown

ENROLLMENTS = 100
KILLS = 4
STEPS = ("first", "second", "third")
KILL_WAIT_SECONDS = 30
JOURNEY = {
    "nodes": [
        {"id": "start", "type": "entry", "event": "Joined", "next": "first"},
        {"id": "first", "type": "send_email", "template_id": "note", "next": "second"},
        {"id": "second", "type": "send_email", "template_id": "note", "next": "pause"},
        {"id": "pause", "type": "wait", "duration": "1s", "next": "third"},
        {"id": "third", "type": "send_email", "template_id": "note", "next": "done"},
        {"id": "done", "type": "exit"},
    ]
}


async def _start_worker(address: str, task_queue: str, database_url: str, smtp_port: int):
    """The worker process, once it says it is ready, and how long its start took.

    After "ready" its stdout is drained for as long as it lives: the SDK core logs its warnings there
    (workflow tasks over 5 s: 100 KiB in one worker's life seen on a loaded machine). Past 128 KiB
    unread asyncio pauses reading, and ``wait()`` after the kill, which waits for EOF too, never returns.
    """
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.workflows.worker_process",
        address,
        task_queue,
        database_url,
        str(smtp_port),
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert (await asyncio.wait_for(process.stdout.readline(), 120)).strip() == b"ready"
    except BaseException:
        await _kill(process)
        raise
    process.drain = asyncio.create_task(_drain(process.stdout))
    return process, time.monotonic() - started


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(1 << 16):
        pass


async def _kill(process) -> None:
    """SIGKILL and reap, bounded: a wait that cannot finish fails the test instead of hanging it."""
    if process.returncode is None:
        process.kill()
    await asyncio.wait_for(process.wait(), KILL_WAIT_SECONDS)


class Watchdog:
    """Fails the run when nothing moved for ``stall`` seconds: the longest legitimate pause is a
    restart (a worker start, then the killed worker's workflow tasks timing out, 10 s), so the bound
    is a minute plus four times the slowest worker start seen."""

    def __init__(self):
        self.slowest_start = 0.0
        self._last: object = None
        self._moved = time.monotonic()

    @property
    def stall(self) -> float:
        return 60.0 + 4 * self.slowest_start

    def check(self, progress: object) -> None:
        now = time.monotonic()
        if progress != self._last:
            self._last, self._moved = progress, now
        elif now - self._moved > self.stall:
            raise AssertionError(f"no progress for {self.stall:.0f} s (completed, delivered): {progress}")


async def test_worker_killed_at_random_points_every_email_once(sessions, settings, database_url):
    # One backend suffices for a crash test; PostgreSQL when it runs, since SQLite shared by two
    # processes spends the test in lock waits. The ledger's unique key is exercised on both elsewhere.
    if database_url.startswith("sqlite") and _pg_reachable():
        pytest.skip("runs on PostgreSQL")
    rng = random.Random(20261122)
    smtp, capture = await smtp_capture.start(settings.smtp_host, settings.smtp_port, settings.mailbox_dir)
    # The Maildir keeps one copy per Message-ID, so count every DATA the server takes, copies included.
    copies: Counter[str] = Counter()
    store = capture.handle_DATA

    async def counting(server, session, envelope):
        copies[smtp_capture._message_id(envelope.original_content or envelope.content).decode()] += 1
        return await store(server, session, envelope)

    capture.handle_DATA = counting  # before the first connection: each takes the hook when it opens
    env = await local()
    task_queue = f"chaos-{uuid.uuid4().hex[:6]}"
    address = env.client.service_client.config.target_host
    worker = None
    try:
        async with transaction(sessions) as session:
            await email.create_template(
                session, TemplateIn(id="note", name="note", subject="Note", html="<p>hi</p>")
            )
            await journeys.create(session, JourneyIn(id="chaos", name="chaos", definition=JOURNEY))
            await journeys.publish(session, "chaos")
            session.add_all(
                Customer(
                    user_id=f"u{i}",
                    email=f"u{i}@example.com",
                    traits={},
                    first_seen_at=utcnow(),
                    last_seen_at=utcnow(),
                )
                for i in range(ENROLLMENTS)
            )
        async with transaction(sessions) as session:
            for i in range(ENROLLMENTS):
                await events.ingest(session, [TrackCall(userId=f"u{i}", event="Joined")], source_key_id=None)
        router = EventRouter(env.client, sessions, task_queue=task_queue)
        while await router.route_once():
            pass

        async def completed() -> int:
            async with transaction(sessions) as session:
                return await session.scalar(select(func.count()).where(Enrollment.status == "completed"))

        async def unrecorded() -> list[str]:
            async with transaction(sessions) as session:
                claimed = select(Message.message_id).where(Message.status == "pending")
                return list(await session.scalars(claimed))

        kills = 0
        # Per Message-ID, the kills that found its send claimed but not recorded as sent: the only
        # sends the ledger lets a restarted worker deliver again.
        cut_off: Counter[str] = Counter()
        # Each worker is killed once it has delivered a random share of the sends itself (together at
        # most two thirds of them): the kill finds it sending.
        total = ENROLLMENTS * len(STEPS)
        kill_after = [rng.randint(total // 20, total // 6) for _ in range(KILLS)]
        watchdog = Watchdog()
        worker, took = await _start_worker(
            address, task_queue, settings.resolved_database_url, settings.smtp_port
        )
        watchdog.slowest_start = took
        before = 0  # sends delivered before the running worker started
        while (done := await completed()) < ENROLLMENTS:
            delivered = copies.total()
            watchdog.check((done, delivered))
            if kills < KILLS and delivered - before >= kill_after[kills]:
                await _kill(worker)  # SIGKILL: no cleanup, activities die mid-flight
                kills += 1
                cut_off.update(await unrecorded())  # the dead worker writes nothing more
                worker, took = await _start_worker(
                    address, task_queue, settings.resolved_database_url, settings.smtp_port
                )
                watchdog.slowest_start = max(watchdog.slowest_start, took)
                before = copies.total()
            await asyncio.sleep(0.02)

        async with transaction(sessions) as session:
            enrollments = list(await session.scalars(select(Enrollment)))
        domain = compose.sender_domain(settings.mail_from)
        expected = {
            compose.message_id_for(f"{e.workflow_id}/{e.entry_event_id}/{step}/1", domain)
            for e in enrollments
            for step in STEPS
        }
        stored = [m["message_id"] for m in smtp_capture.read_mailbox(settings.mailbox_dir, limit=100_000)]
        assert kills == KILLS and cut_off.total() >= 1  # the kills did cut sends off
        assert len(expected) == ENROLLMENTS * len(STEPS)
        assert sorted(stored) == sorted(copies) == sorted(expected)  # nothing missing, no second id
        # A kill between the SMTP handoff and the ledger update re-sends the same Message-ID (the
        # receiving side collapses it); a send recorded before the kill never goes out again.
        resent = {m: n - 1 for m, n in copies.items() if n > 1}
        assert {m: (n, cut_off[m]) for m, n in resent.items() if n > cut_off[m]} == {}
        assert sum(resent.values()) == capture.duplicates
        print(
            f"{kills} kills cut off {cut_off.total()} sends; {sum(resent.values())} copies re-sent; "
            f"slowest worker start {watchdog.slowest_start:.1f} s"
        )
    finally:
        # Each step is bounded and runs even when an earlier one failed: pytest-timeout's alarm fires
        # once, so a hang after it (or after a failure it raised) would hold the suite for good.
        try:
            if worker is not None:
                await _kill(worker)
        finally:
            try:
                await shutdown(env)
            finally:
                smtp.close()
