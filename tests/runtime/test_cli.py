"""The `journeys` command: migrate a fresh database, create keys that then authenticate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from domain.auth import service as auth
from domain.db import create_engine, session_factory

JOURNEYS = str(Path(sys.executable).parent / "journeys")


def run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([JOURNEYS, *args], env=env, capture_output=True, text=True, timeout=120)


async def test_migrate_then_create_keys_outside_dev_mode(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}"
    env = {
        "PATH": "/usr/bin:/bin",
        "JOURNEYS_DATABASE_URL": url,
        "JOURNEYS_SECRET_KEY": "s" * 40,
        "JOURNEYS_WEBHOOK_SIGNING_SECRET": "w" * 40,
    }
    assert run("migrate", env=env).returncode == 0

    created = run("keys", "create", "--name", "crm", "--role", "marketer", env=env)
    assert created.returncode == 0, created.stderr
    marketer = json.loads(created.stdout)
    write = json.loads(run("keys", "create", "--name", "shop", "--write", env=env).stdout)
    refused = run("keys", "create", "--name", "nobody", env=env)
    assert refused.returncode == 2
    assert "role" in refused.stderr

    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            who = await auth.authenticate(session, marketer["secret"])
            source = await auth.authenticate(session, write["secret"])
            assert await auth.authenticate(session, "dev-admin-key") is None  # no default key outside dev
    finally:
        await engine.dispose()
    assert (who.role.value, who.kind.value) == ("marketer", "management")
    assert (source.role, source.kind.value) == (None, "write")
    listed = [json.loads(line) for line in run("keys", "list", env=env).stdout.splitlines()]
    assert [k["name"] for k in listed] == ["crm", "shop"]
    assert all("secret" not in k for k in listed)
