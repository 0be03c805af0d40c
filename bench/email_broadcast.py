"""Broadcast throughput: our full path against pre-serialised messages over the same SMTP pool.

Both sides send N messages to the built-in SMTP capture server running in its own process (a fresh
one per round; it stores every message in a Maildir, as in dev mode), over the same number of pooled
aiosmtplib connections:

- baseline: the same messages, built beforehand (not timed), then only sent;
- ours: a broadcast as users run it: a BroadcastWorkflow on a Temporal dev server (running during both
  sides) pages through the audience, and a worker in this process runs its batch activities (claim
  ledger rows, check suppression, render the template in the sandbox with layout and footer, tracked
  links and signed unsubscribe link, compose, send, record), against a SQLite database.

Each side first sends a small untimed warm-up round; then rounds alternate which side goes first.
Besides the rates, it prints the CPU time per message of the client (this process) and of the server.

    python bench/email_broadcast.py            # 20 000 recipients
    python bench/email_broadcast.py --quick    # 2 000 recipients, under a minute

The last line printed is one JSON object with both rates and their ratio.
"""

# ruff: noqa: E402 (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and "email" would be this file, not the
# standard library package: put the project root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.broadcasts import BroadcastActivities
from activities.smtp import Mailer
from config.settings import Settings
from domain.broadcasts import service as broadcasts
from domain.broadcasts.schemas import BroadcastIn
from domain.customers.models import Customer
from domain.db import create_engine, session_factory, transaction, utcnow
from domain.email import service as email
from domain.email.compose import Composer
from domain.email.delivery import MessageFactory
from domain.email.models import TemplateVersion
from domain.email.schemas import TemplateIn
from runtime.migrate import upgrade_async
from runtime.temporal import binary
from workflows.broadcast import BroadcastInput, BroadcastProgress, BroadcastWorkflow

SUBJECT = "Spring sale, {{ traits.first_name }}!"
# Like most marketing email, the template brings its own CSS (inlined once per template version).
HTML = """<style>h1 { font-size: 24px; color: #b91c1c } .links a { color: #1d4ed8; margin-right: 8px }</style>
<h1>Spring sale, {{ traits.first_name | default("friend") }}!</h1>
<p>Everything in your {{ traits.plan }} plan is 20% off until Sunday.</p>
<p class="links">{% for item in ["Shoes", "Bags", "Hats"] %}
<a href="https://shop.example/{{ item | lower }}">{{ item }}</a>
{% endfor %}</p>
<p>See you soon,<br>The Acme team</p>"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_CAPTURE = """
import asyncio, sys
from pathlib import Path
from runtime import smtp_capture

async def main():
    await smtp_capture.start("127.0.0.1", int(sys.argv[1]), Path(sys.argv[2]))
    await asyncio.Event().wait()

asyncio.run(main())
"""


def start_capture(directory: Path) -> tuple[subprocess.Popen, int]:
    """The capture server in its own process; returns once it accepts connections."""
    port = _free_port()
    root = str(_HERE.parent)
    proc = subprocess.Popen([sys.executable, "-c", _CAPTURE, str(port), str(directory)], cwd=root)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("capture server did not start")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    rate: float  # messages per second
    client_us: float  # CPU of this process per message
    server_us: float | None  # CPU of the capture server per message


class Stopwatch:
    """Times the part of a side that does the sending (not its set-up and tear-down), with the CPU
    spent meanwhile by this process and by the capture server."""

    def __init__(self, server_pid: int):
        self._pid = server_pid

    def start(self) -> None:
        self._at, self._cpu, self._server = time.perf_counter(), time.process_time(), cpu_seconds(self._pid)

    def stop(self) -> None:
        server = cpu_seconds(self._pid)
        self.elapsed = time.perf_counter() - self._at
        self.cpu = time.process_time() - self._cpu
        self.server = server - self._server if server is not None and self._server is not None else None


async def measure(side, n: int, directory: Path) -> Round:
    """Runs ``side(port, stopwatch)`` against a fresh capture server."""
    proc, port = start_capture(directory)
    watch = Stopwatch(proc.pid)
    try:
        await side(port, watch)
    finally:
        proc.terminate()
        proc.wait()
    return Round(n / watch.elapsed, watch.cpu / n * 1e6, watch.server / n * 1e6 if watch.server else None)


async def baseline(port: int, messages: list[bytes], connections: int, watch: Stopwatch) -> None:
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for i, m in enumerate(messages):
        queue.put_nowait((i, m))

    async def worker():
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        while not queue.empty():
            i, data = queue.get_nowait()
            await client.sendmail("news@acme.example", [f"c{i}@example.com"], data)
        await client.quit()

    watch.start()
    await asyncio.gather(*(worker() for _ in range(connections)))
    watch.stop()


def preserialised(settings: Settings, n: int) -> list[bytes]:
    """The very bytes our path sends (same size, same lines for the server to parse), built untimed."""
    factory = MessageFactory(settings)
    version = TemplateVersion(
        subject=SUBJECT, html=HTML, text=None, layout="base", category="marketing", variants={}
    )
    return [
        factory.make(
            version,
            {"id": i, "email": f"c{i}@example.com", "traits": {"first_name": f"Name{i}", "plan": "pro"}},
            idempotency_key=f"baseline/{i}",
        ).data
        for i in range(n)
    ]


def bench_settings(url: str | None, port: int, connections: int) -> Settings:
    return Settings(
        dev_mode=True,
        database_url=url,
        smtp_port=port,
        smtp_pool_size=connections,
        mail_from="Acme <news@acme.example>",
        postal_address="1 Main St, Springfield",
        public_url="https://mail.acme.example",
    )


async def setup(url: str, n: int) -> list[int]:
    await upgrade_async(url)
    engine = create_engine(url)
    now = utcnow()
    rows = [
        Customer(
            user_id=f"c{i}",
            email=f"c{i}@example.com",
            traits={"first_name": f"Name{i}", "plan": "pro"},
            first_seen_at=now,
            last_seen_at=now,
        )
        for i in range(n)
    ]
    async with transaction(session_factory(engine)) as session:
        session.add_all(rows)
        await email.create_template(session, TemplateIn(id="sale", name="Sale", subject=SUBJECT, html=HTML))
        await session.flush()
    await engine.dispose()
    return [r.id for r in rows]


async def ours(
    client: Client,
    url: str,
    port: int,
    connections: int,
    broadcast_id: str,
    audience: dict,
    n: int,
    watch: Stopwatch,
) -> None:
    """One broadcast, start to finish, through the BroadcastWorkflow and a worker like the real one."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await broadcasts.create(
            session,
            BroadcastIn(id=broadcast_id, name="b", template_id="sale", audience=audience, batch_size=500),
        )
    settings = bench_settings(url, port, connections)
    mailer = Mailer(settings)
    batches = BroadcastActivities(settings, sessions, mailer)
    worker = Worker(
        client,
        task_queue=f"bench-{broadcast_id}",
        workflows=[BroadcastWorkflow],
        activities=[batches.send_broadcast_batch, batches.plan_broadcast_slots, batches.finish_broadcast],
        max_concurrent_activities=200,  # as runtime/worker.py
    )
    try:
        async with worker:
            watch.start()
            result = await client.execute_workflow(
                BroadcastWorkflow.run,
                BroadcastInput(broadcast_id=broadcast_id),
                id=broadcasts.workflow_id(broadcast_id),
                task_queue=f"bench-{broadcast_id}",
                result_type=BroadcastProgress,
            )
            watch.stop()
    finally:
        await mailer.close()
        await engine.dispose()
    if (result.status, result.sent) != ("completed", n):
        raise RuntimeError(f"broadcast {broadcast_id} ended {result.status} with {result.sent} of {n} sent")


def compose_rates(n: int = 2000) -> tuple[float, float]:
    html = "<p>" + "x" * 3000 + "</p>"
    started = time.perf_counter()
    for i in range(n):
        m = EmailMessage()
        m["From"] = "Acme <news@acme.example>"
        m["To"] = f"c{i}@example.com"
        m["Subject"] = "Spring sale"
        m["Message-ID"] = f"<{i}@acme.example>"
        m.set_content("text")
        m.add_alternative(html, subtype="html")
        m.as_bytes()
    stdlib = n / (time.perf_counter() - started)
    composer = Composer("Acme <news@acme.example>")
    started = time.perf_counter()
    for i in range(n):
        composer.build(
            to=f"c{i}@example.com", subject="Spring sale", html=html, text="text", message_id=f"<{i}@a>"
        )
    return stdlib, n / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 000 recipients")
    parser.add_argument("--recipients", type=int, default=None)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; medians are compared")
    parser.add_argument("--warmup", type=int, default=500, help="untimed messages each side sends first")
    args = parser.parse_args()
    n = args.recipients or (2000 if args.quick else 20_000)
    conns = args.connections
    rounds: dict[str, list[Round]] = {"baseline": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        ids = await setup(url, n)
        messages = preserialised(bench_settings(None, 0, conns), n)
        env = await WorkflowEnvironment.start_local(dev_server_existing_path=binary("temporal"))
        try:

            def side(name: str, r: int | str, count: int):
                if name == "baseline":
                    return lambda port, watch: baseline(port, messages[:count], conns, watch)
                audience = (
                    {"kind": "all"} if count == n else {"kind": "customers", "customer_ids": ids[:count]}
                )
                return lambda port, watch: ours(env.client, url, port, conns, f"b{r}", audience, count, watch)

            warm = min(args.warmup, n)
            for name in ("baseline", "ours"):  # the same untimed start for both
                await measure(side(name, "warmup", warm), warm, tmp / f"mail-{name}-warmup")
            for r in range(args.rounds):
                # alternate which goes first, so drift in the machine's load hits both alike
                for name in ("baseline", "ours") if r % 2 == 0 else ("ours", "baseline"):
                    result = await measure(side(name, r, n), n, tmp / f"mail-{name}-{r}")
                    rounds[name].append(result)
                    server = f", server CPU {result.server_us:.0f} us/msg" if result.server_us else ""
                    print(
                        f"round {r}: {name:8s} {result.rate:6.0f} msg/s, "
                        f"client CPU {result.client_us:.0f} us/msg{server}"
                    )
        finally:
            await env.shutdown()
    stdlib, composer = compose_rates()
    print(f"compose only: stdlib EmailMessage {stdlib:.0f}/s, ours {composer:.0f}/s")

    def median(name: str, field: str) -> float | None:
        values = [getattr(x, field) for x in rounds[name]]
        return None if None in values else round(statistics.median(values), 1)

    base, our = median("baseline", "rate"), median("ours", "rate")
    print(
        json.dumps(
            {
                "recipients": n,
                "connections": conns,
                "rounds": args.rounds,
                "baseline_msgs_per_s": base,
                "ours_msgs_per_s": our,
                "ratio": round(our / base, 3),
                "baseline_client_cpu_us_per_msg": median("baseline", "client_us"),
                "ours_client_cpu_us_per_msg": median("ours", "client_us"),
                "baseline_server_cpu_us_per_msg": median("baseline", "server_us"),
                "ours_server_cpu_us_per_msg": median("ours", "server_us"),
                "compose_stdlib_per_s": round(stdlib),
                "compose_ours_per_s": round(composer),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
