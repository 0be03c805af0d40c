"""``journeys dev``: the whole product on embedded defaults in one process tree.

Temporal's dev server runs as a child process (state in data_dir/temporal.db); the SMTP capture
server, the worker with its event router, and the API run in this process. One Ctrl-C (or SIGTERM)
stops all of them; the server child also dies with us if we are killed outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn

from api.app import create_app
from config.settings import Settings
from domain.auth import service as auth
from domain.db import create_engine, session_factory, transaction
from runtime import smtp_capture, temporal
from runtime.migrate import upgrade_async
from runtime.unsubscribe_mailbox import UnsubscribeMailbox
from runtime.worker import run_worker

log = logging.getLogger("journeys.dev")


async def run(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    await upgrade_async(settings.resolved_database_url)
    engine = create_engine(settings.resolved_database_url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await auth.ensure_dev_keys(session)

    server = await temporal.start_dev_server(settings, log_path=settings.data_dir / "temporal.log")
    smtp = None
    try:
        client = await temporal.wait_until_ready(settings, server)
        smtp, _ = await smtp_capture.start(
            settings.smtp_host,
            settings.smtp_port,
            settings.mailbox_dir,
            unsubscribe_mailbox=UnsubscribeMailbox.of(settings, sessions),
        )
        api = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host=settings.api_host,
                port=settings.api_port,
                log_level="warning",
                lifespan="on",
            )
        )
        api.install_signal_handlers = lambda: None  # we own SIGINT/SIGTERM
        worker = asyncio.create_task(run_worker(client, settings, sessions, stop), name="worker")
        web = asyncio.create_task(api.serve(), name="api")
        _banner(settings)
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({worker, web, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        api.should_exit = True
        for task in (web, worker):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in done:
            if task is not stopper and task.exception():
                raise task.exception()
    finally:
        if smtp is not None:
            smtp.close()
        await _stop_process(server)
        await engine.dispose()
        log.info("stopped; data kept in %s", settings.data_dir.resolve())


async def _stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        process.kill()
        await process.wait()


def _mailbox(settings: Settings) -> str:
    if not settings.mail_unsubscribe_mailto:
        return ""
    return f"\n  Unsubscribe   mail to {settings.mail_unsubscribe_mailto} through the capture is processed"


def _banner(settings: Settings) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    ui_host = settings.temporal_address.rpartition(":")[0] or "127.0.0.1"
    mailbox = _mailbox(settings)
    print(
        f"""
Journeys is running (dev mode). Ctrl-C stops everything; data stays in {settings.data_dir}/.

  API           {base}            (docs: {base}/docs)
  Mailbox       {base}/dev/mailbox
  Temporal UI   http://{ui_host}:{settings.temporal_ui_port}
  SMTP capture  {settings.smtp_host}:{settings.smtp_port}

  Admin key     {auth.DEV_ADMIN_KEY}     (Authorization: Bearer {auth.DEV_ADMIN_KEY})
  Write key     {auth.DEV_WRITE_KEY}     (HTTP Basic username, as Segment libraries send it)
  Inbound key   {auth.DEV_INBOUND_KEY}   (unsubscribe mail: POST /api/webhooks/unsubscribe-email){mailbox}
""",
        flush=True,
    )
