"""End to end through the real worker process wiring: HTTP agent actions drive the case's SLA clock."""

from __future__ import annotations

import asyncio
import contextlib

from temporalio.client import WorkflowExecutionStatus

from runtime.worker import run_worker
from tests.cases.helpers import make_agent, make_customer, make_team
from tests.conftest import wait_for
from tests.temporal_env import time_skipping
from workflows.case_sla import CaseSlaWorkflow, sla_workflow_id


async def test_the_worker_runs_the_clock_of_a_case_worked_over_http(client, sessions, settings):
    await make_team(sessions, "care")
    agent = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, "u1")
    env = await time_skipping()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(env.client, settings, sessions, stop, schedules=False))
    try:
        opened = await client.post(
            "/api/cases",
            json={"customer_id": customer, "reason": "call back", "team": "care"},
            headers=agent["headers"],
        )
        case_id = opened.json()["id"]
        clock = env.client.get_workflow_handle_for(CaseSlaWorkflow.run, sla_workflow_id(case_id))

        async def status():
            with contextlib.suppress(Exception):
                return (await clock.describe()).status
            return None

        await wait_for(lambda: _is(status, WorkflowExecutionStatus.RUNNING))
        assert (await client.post("/api/cases/next", headers=agent["headers"])).json()["case"][
            "id"
        ] == case_id
        await wait_for(lambda: _claimed_state(clock))
        resolved = await client.post(
            f"/api/cases/{case_id}/resolve", json={"outcome": "solved"}, headers=agent["headers"]
        )
        assert resolved.status_code == 200
        await wait_for(lambda: _is(status, WorkflowExecutionStatus.COMPLETED))
        with env.auto_time_skipping_disabled():
            result = await clock.result()
        assert (result.status, result.outcome, result.breached, result.escalations) == (
            "resolved",
            "solved",
            False,
            0,
        )
    finally:
        stop.set()
        await worker
        await env.shutdown()


async def _is(status, wanted) -> bool:
    return await status() == wanted


async def _claimed_state(clock) -> bool:
    state = await clock.query(CaseSlaWorkflow.state)
    return state is not None and state.first_responded
