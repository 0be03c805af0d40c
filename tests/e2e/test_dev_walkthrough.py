"""`journeys dev` end to end: the README walkthrough, word for word, against the real processes.

Starts the real Temporal dev server binary, the SMTP capture, the worker and the API through the same
command a new user runs, pastes the README's curl commands, and checks the email arrived once,
personalised. Then Ctrl-C (SIGINT to the process group, as a terminal sends it) must leave nothing
running, and a second start must keep customers, journeys and Temporal state.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

ADMIN = {"Authorization": "Bearer dev-admin-key"}


def walkthrough_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- walkthrough:start -->")[1].split("<!-- walkthrough:end -->")[0]
    script = section.split("```bash")[1].split("```")[0]
    # One command per paragraph; continuation lines stay with their command.
    commands = [c.strip() for c in re.split(r"\n\s*\n", script) if c.strip()]
    return [c for c in commands if "curl" in c]


class DevProcess:
    def __init__(self, data_dir: Path):
        self.api_port = free_port()
        self.env = {
            **os.environ,
            "JOURNEYS_DATA_DIR": str(data_dir),
            "JOURNEYS_API_PORT": str(self.api_port),
            "JOURNEYS_SMTP_PORT": str(free_port()),
            "JOURNEYS_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "JOURNEYS_TEMPORAL_UI_PORT": str(free_port()),
        }
        self.env.pop("JOURNEYS_DATABASE_URL", None)  # the embedded default: SQLite in the data dir
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.log = data_dir.parent / "dev.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        journeys = Path(sys.executable).parent / "journeys"
        self.process = subprocess.Popen(
            [str(journeys), "dev"],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"journeys dev exited early:\n{self.log.read_text()}"
            try:
                if httpx.get(f"{self.base}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"journeys dev did not come up:\n{self.log.read_text()}")

    def ctrl_c(self) -> None:
        pgid = self.process.pid
        os.killpg(pgid, signal.SIGINT)
        assert self.process.wait(timeout=60) == 0, self.log.read_text()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        leftover = subprocess.run(["ps", "-o", "pid,cmd", "-g", str(pgid)], capture_output=True, text=True)
        raise AssertionError(f"processes left running after Ctrl-C:\n{leftover.stdout}")

    def kill_if_running(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", headers=ADMIN, timeout=10)


@pytest.fixture
def dev(tmp_path):
    process = DevProcess(tmp_path / "data")
    yield process
    process.kill_if_running()


def wait_until(check, within: float = 30.0):
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_readme_walkthrough_delivers_one_personalised_email_and_survives_a_restart(dev):
    dev.start()
    commands = walkthrough_commands()
    assert len(commands) == 5
    for command in commands:
        command = command.replace("http://127.0.0.1:8000", dev.base)
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        assert "error" not in body, (command, body)

    mails = wait_until(lambda: dev.get("/dev/mailbox").json())
    assert len(mails) == 1
    [mail] = mails
    assert mail["subject"] == "Welcome aboard, Ada!"
    assert mail["envelope_to"] == ["ada@example.com"]
    assert "Hi Ada, thanks for choosing the Pro plan." in mail["html"]
    enrollment = wait_until(
        lambda: [
            e for e in dev.get("/api/journeys/onboarding/enrollments").json() if e["status"] == "completed"
        ]
    )
    assert enrollment[0]["workflow_id"] == "journey/onboarding/customer/1"
    [ledger] = dev.get("/api/messages").json()
    assert (ledger["status"], ledger["message_id"]) == ("sent", mail["message_id"])
    assert len(dev.get("/dev/mailbox").json()) == 1  # still exactly once after the journey completed

    dev.ctrl_c()

    dev.start()
    assert dev.get("/api/journeys/onboarding").json()["published_version"] == 1
    assert dev.get("/api/journeys/onboarding/enrollments").json()[0]["status"] == "completed"
    assert len(dev.get("/dev/mailbox").json()) == 1
    history = subprocess.run(
        [
            str(Path(sys.executable).parent / "temporal"),
            "workflow",
            "describe",
            "--address",
            dev.env["JOURNEYS_TEMPORAL_ADDRESS"],
            "--workflow-id",
            "journey/onboarding/customer/1",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert history.returncode == 0, history.stderr
    assert "COMPLETED" in history.stdout
    # The same event sent again is acknowledged, and Ada is not enrolled (or emailed) a second time.
    again = httpx.post(
        f"{dev.base}/v1/track",
        auth=("dev-write-key", ""),
        json={"userId": "ada", "event": "Signed Up", "properties": {"plan": "Pro"}},
        timeout=10,
    )
    assert again.status_code == 200
    assert wait_until(lambda: dev.get("/api/health").json()["routing_backlog"] == 0)
    assert len(dev.get("/dev/mailbox").json()) == 1
    dev.ctrl_c()
