"""Broadcast throughput: our full path against pre-serialised messages over the same SMTP pool.

Both sides send N messages to the built-in SMTP capture server running in its own process (it stores
every message in a Maildir, as in dev mode), over the same number of pooled aiosmtplib connections:

- baseline: the same messages, built beforehand (not timed), then only sent;
- ours: the broadcast batch activity as the BroadcastWorkflow runs it (page the audience, claim ledger
  rows, check suppression, render the template in the sandbox with layout and footer, compose, send,
  record), against a SQLite database.

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
import socket
import statistics
import subprocess
import tempfile
import time
from email.message import EmailMessage

import aiosmtplib

from activities.broadcasts import BroadcastSender
from activities.contracts import BroadcastBatchRequest
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

SUBJECT = "Spring sale, {{ traits.first_name }}!"
HTML = """<h1>Spring sale, {{ traits.first_name | default("friend") }}!</h1>
<p>Everything in your {{ traits.plan }} plan is 20% off until Sunday.</p>
<p>{% for item in ["Shoes", "Bags", "Hats"] %}
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


async def baseline(port: int, messages: list[bytes], connections: int) -> float:
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

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    print(f"  baseline: client CPU {(time.process_time() - cpu) / len(messages) * 1e6:.0f} us/msg")
    return len(messages) / elapsed


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


async def setup(url: str, n: int) -> None:
    await upgrade_async(url)
    engine = create_engine(url)
    now = utcnow()
    async with transaction(session_factory(engine)) as session:
        session.add_all(
            Customer(
                user_id=f"c{i}",
                email=f"c{i}@example.com",
                traits={"first_name": f"Name{i}", "plan": "pro"},
                first_seen_at=now,
                last_seen_at=now,
            )
            for i in range(n)
        )
        await email.create_template(session, TemplateIn(id="sale", name="Sale", subject=SUBJECT, html=HTML))
    await engine.dispose()


async def ours(port: int, n: int, connections: int, url: str, broadcast_id: str) -> float:
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await broadcasts.create(
            session,
            BroadcastIn(
                id=broadcast_id, name="b", template_id="sale", audience={"kind": "all"}, batch_size=500
            ),
        )
    settings = bench_settings(url, port, connections)
    mailer = Mailer(settings)
    sender = BroadcastSender(settings, sessions, mailer)
    started, cpu = time.perf_counter(), time.process_time()
    after, sent = 0, 0
    while True:  # what BroadcastWorkflow does, minus Temporal's per-batch round trip
        result = await sender.run_batch(BroadcastBatchRequest(broadcast_id=broadcast_id, after_id=after))
        if result.status != "running":
            break
        after, sent = result.last_id, sent + result.sent
    elapsed = time.perf_counter() - started
    print(f"  ours: client CPU {(time.process_time() - cpu) / n * 1e6:.0f} us/msg")
    await mailer.close()
    await engine.dispose()
    if sent != n:
        raise RuntimeError(f"sent {sent} of {n}")
    return n / elapsed


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
    args = parser.parse_args()
    n = args.recipients or (2000 if args.quick else 20_000)
    base_rates, our_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        await setup(url, n)
        messages = preserialised(bench_settings(None, 0, args.connections), n)
        for r in range(args.rounds):
            # alternate which goes first, so drift in the machine's load hits both alike
            for side in ("baseline", "ours") if r % 2 == 0 else ("ours", "baseline"):
                proc, port = start_capture(tmp / f"mail-{side}-{r}")
                try:
                    if side == "baseline":
                        base_rates.append(await baseline(port, messages, args.connections))
                        print(f"round {r}: baseline {base_rates[-1]:.0f} msg/s (pre-serialised)")
                    else:
                        our_rates.append(await ours(port, n, args.connections, url, f"b{r}"))
                        print(f"round {r}: ours     {our_rates[-1]:.0f} msg/s (full broadcast batch path)")
                finally:
                    proc.terminate()
                    proc.wait()
    stdlib, composer = compose_rates()
    print(f"compose only: stdlib EmailMessage {stdlib:.0f}/s, ours {composer:.0f}/s")
    base, our = statistics.median(base_rates), statistics.median(our_rates)
    print(
        json.dumps(
            {
                "recipients": n,
                "connections": args.connections,
                "rounds": args.rounds,
                "baseline_msgs_per_s": round(base, 1),
                "ours_msgs_per_s": round(our, 1),
                "ratio": round(our / base, 3),
                "compose_stdlib_per_s": round(stdlib),
                "compose_ours_per_s": round(composer),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
