"""The `journeys` command: migrate a fresh database, create keys that then authenticate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from domain.auth import service as auth
from domain.db import create_engine, session_factory

JOURNEYS = str(Path(sys.executable).parent / "journeys")
ROOT = str(Path(__file__).resolve().parents[2])


def run(*args: str, env: dict) -> subprocess.CompletedProcess:
    # The code under test, also from a checkout other than the one the virtualenv was installed from.
    env = {**env, "PYTHONPATH": ROOT}
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
    inbound = json.loads(run("keys", "create", "--name", "postmark", "--inbound", env=env).stdout)
    refused = run("keys", "create", "--name", "nobody", env=env)
    assert refused.returncode == 2
    assert "role" in refused.stderr

    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            who = await auth.authenticate(session, marketer["secret"])
            source = await auth.authenticate(session, write["secret"])
            provider = await auth.authenticate(session, inbound["secret"])
            assert await auth.authenticate(session, "dev-admin-key") is None  # no default key outside dev
    finally:
        await engine.dispose()
    assert (who.role.value, who.kind.value) == ("marketer", "management")
    assert (source.role, source.kind.value) == (None, "write")
    assert (provider.role, provider.kind.value) == (None, "inbound")
    listed = [json.loads(line) for line in run("keys", "list", env=env).stdout.splitlines()]
    assert [k["name"] for k in listed] == ["crm", "shop", "postmark"]
    assert all("secret" not in k for k in listed)


async def test_keys_and_migrate_need_no_secret(tmp_path):
    """Beside `journeys dev` (which sets no variable a user could see) the README has the user run
    `journeys keys create`: those commands only reach the database, so the secrets the API and the
    worker need outside dev mode are not asked of them. The API still refuses to start without."""
    env = {"PATH": "/usr/bin:/bin", "JOURNEYS_DATA_DIR": str(tmp_path)}
    assert run("migrate", env=env).returncode == 0
    created = run("keys", "create", "--name", "crm", "--role", "marketer", env=env)
    assert created.returncode == 0, created.stderr
    secret = json.loads(created.stdout)["secret"]
    listed = run("keys", "list", env=env)
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == ["crm"]

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'journeys.db'}")
    try:
        async with session_factory(engine)() as session:
            who = await auth.authenticate(session, secret)
            assert await auth.authenticate(session, "dev-admin-key") is None  # no dev key made
    finally:
        await engine.dispose()
    assert who.role.value == "marketer"

    refused = run("api", env=env)
    assert refused.returncode == 2
    assert "JOURNEYS_SECRET_KEY" in refused.stderr
