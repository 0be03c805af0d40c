"""A worker killed (SIGKILL) in the middle of a 5 000-recipient broadcast, then restarted: every recipient
gets exactly one email."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from activities.broadcasts import MAX_UNRECORDED
from domain.broadcasts import service as broadcasts
from domain.broadcasts.schemas import BroadcastIn
from domain.db import transaction
from domain.email.models import Message
from tests.email.helpers import add_customers, add_template
from tests.temporal_env import local
from workflows.broadcast import BroadcastInput, BroadcastProgress, BroadcastWorkflow

RECIPIENTS = 5000


def _start_worker(settings, target: str, queue: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "JOURNEYS_DEV_MODE": "true",
        "JOURNEYS_DATA_DIR": str(settings.data_dir),
        "JOURNEYS_DATABASE_URL": settings.resolved_database_url,
        "JOURNEYS_TEMPORAL_ADDRESS": target,
        "JOURNEYS_TEMPORAL_TASK_QUEUE": queue,
        "JOURNEYS_SMTP_PORT": str(settings.smtp_port),
        "JOURNEYS_SMTP_POOL_SIZE": "8",
        "JOURNEYS_LOG_LEVEL": "WARNING",
    }
    journeys = Path(sys.executable).parent / "journeys"
    return subprocess.Popen(
        [str(journeys), "worker"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


async def test_broadcast_survives_a_killed_worker_without_duplicates(settings, sessions, capture, tmp_path):
    await add_customers(sessions, RECIPIENTS)
    await add_template(sessions)
    async with transaction(sessions) as session:
        await broadcasts.create(
            session,
            BroadcastIn(
                id="big", name="Big", template_id="welcome", audience={"kind": "all"}, batch_size=250
            ),
        )
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    async with await local() as env:
        target = env.client.service_client.config.target_host
        first = _start_worker(settings, target, queue, log)
        second = None
        try:
            handle = await env.client.start_workflow(
                BroadcastWorkflow.run,
                BroadcastInput(broadcast_id="big", heartbeat_seconds=2),
                id="broadcast/big",
                task_queue=queue,
                result_type=BroadcastProgress,
            )
            await capture.wait_until(1200, within=120)
            first.send_signal(signal.SIGKILL)  # no chance to record what it was sending
            first.wait()
            at_kill = capture.handler.received
            assert at_kill < RECIPIENTS
            second = _start_worker(settings, target, queue, log)
            result = await asyncio.wait_for(handle.result(), timeout=240)
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
    assert result.status == "completed", log.read_text()[-3000:]
    per_recipient = Counter(await asyncio.to_thread(capture.recipients))
    assert len(per_recipient) == RECIPIENTS
    assert set(per_recipient.values()) == {1}
    # Messages the server had accepted but the killed worker had not yet recorded were sent again with the
    # same Message-ID (and kept once): at most what one flush group and the pool had in flight.
    assert capture.handler.duplicates <= MAX_UNRECORDED
    async with transaction(sessions) as session:
        statuses = dict(
            (await session.execute(select(Message.status, func.count()).group_by(Message.status))).all()
        )
        row = await broadcasts.get(session, "big")
    assert statuses == {"sent": RECIPIENTS}
    assert (row.status, row.sent, row.skipped, row.failed) == ("completed", RECIPIENTS, 0, 0)
    print(f"killed at {at_kill} delivered; re-sent after restart and absorbed: {capture.handler.duplicates}")
