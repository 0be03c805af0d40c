from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.worker import Worker

from activities.email import EmailActivities
from activities.smtp import Mailer
from domain.auth import service as auth
from domain.auth.schemas import KeyCreate, KeyKind
from domain.db import transaction
from runtime import smtp_capture
from runtime.worker import WORKFLOWS
from runtime.worker import activities as worker_activities
from tests.email.helpers import UNSUBSCRIBE_MAILBOX
from tests.temporal_env import time_skipping


@dataclass
class Capture:
    handler: smtp_capture.MaildirHandler
    directory: Path

    def messages(self, limit: int = 100_000) -> list[dict]:
        return smtp_capture.read_mailbox(self.directory, limit)

    def recipients(self) -> list[str]:
        """The envelope recipients of every stored message (cheap: reads only the first header line)."""
        out = []
        for sub in ("new", "cur"):
            for path in (self.directory / sub).iterdir():
                with path.open("rb") as f:
                    f.readline()  # X-Envelope-From
                    out.extend(a.strip() for a in f.readline().decode().split(":", 1)[1].split(","))
        return out

    async def wait_until(self, n: int, within: float = 30.0) -> None:
        """Poll (with a deadline) until ``n`` distinct messages were received."""
        deadline = asyncio.get_running_loop().time() + within
        while self.handler.received < n:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {n} messages, capture has {self.handler.received}")
            await asyncio.sleep(0.02)

    async def wait_for_count(self, n: int, within: float = 30.0) -> list[dict]:
        """Wait for ``n`` messages and return them all, parsed (for small tests)."""
        await self.wait_until(n, within)
        return await asyncio.to_thread(self.messages)


@pytest.fixture
def settings(settings, request):
    """The settings; with the unsubscribe mailbox set for tests marked ``unsubscribe_mailbox`` (those
    of unsubscribing by email), every other email test sending without one, as configured."""
    if request.node.get_closest_marker("unsubscribe_mailbox") is None:
        return settings
    return settings.model_copy(update={"mail_unsubscribe_mailto": UNSUBSCRIBE_MAILBOX})


@pytest.fixture
async def inbound_key(sessions) -> dict[str, str]:
    """The Authorization header of a new inbound key, as an inbound-mail provider's post carries it."""
    async with transaction(sessions) as session:
        created = await auth.create_key(session, KeyCreate(name="provider", kind=KeyKind.inbound))
    return {"Authorization": f"Bearer {created.secret}"}


@pytest.fixture
async def capture(settings) -> Capture:
    """The SMTP capture server on the port the settings point at."""
    server, handler = await smtp_capture.start(settings.smtp_host, settings.smtp_port, settings.mailbox_dir)
    try:
        yield Capture(handler, settings.mailbox_dir)
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def capture_without_smtputf8(settings) -> Capture:
    """A capture server that lacks SMTPUTF8, as some relays do (the dev capture offers it)."""
    server, handler = await smtp_capture.start(
        settings.smtp_host, settings.smtp_port, settings.mailbox_dir, smtputf8=False
    )
    try:
        yield Capture(handler, settings.mailbox_dir)
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def mailer(settings) -> Mailer:
    """The worker's pooled SMTP sender, for tests that run the send activity themselves."""
    mailer = Mailer(settings, size=4)
    yield mailer
    await mailer.close()


@pytest.fixture
async def activities(settings, sessions, mailer) -> EmailActivities:
    """The worker's send_email activity over the pooled sender (run it with ``helpers.run_activity``)."""
    return EmailActivities(settings, sessions, mailer)


@pytest.fixture
async def temporal(app, settings, sessions):
    """A time-skipping Temporal test server with the worker's workflows and activities, which the API
    app starts its workflows on (broadcasts)."""
    async with await time_skipping() as env:
        app.state.temporal = env.client
        async with Worker(
            env.client,
            task_queue=settings.temporal_task_queue,
            workflows=WORKFLOWS,
            activities=worker_activities(settings, sessions),
        ):
            yield env
