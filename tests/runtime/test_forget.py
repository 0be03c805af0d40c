"""Deleting workflow histories from Temporal (runtime/forget.py), on the real dev server: a finished
workflow's history goes too, and an id Temporal never knew counts as nothing."""

from __future__ import annotations

import uuid

from temporalio import workflow
from temporalio.worker import Worker

from runtime import forget
from tests.conftest import wait_for
from tests.temporal_env import gone, local


@workflow.defn(sandboxed=False)
class Done:
    @workflow.run
    async def run(self) -> str:
        return "done"


async def test_a_finished_history_is_deleted_and_an_unknown_id_counts_as_nothing():
    async with await local() as env:
        queue = f"forget-{uuid.uuid4().hex[:8]}"
        async with Worker(env.client, task_queue=queue, workflows=[Done]):
            handle = await env.client.start_workflow(Done.run, id="journey/x/customer/1", task_queue=queue)
            assert await handle.result() == "done"

            deletions = await forget.delete_histories(env.client, [handle.id, "journey/x/customer/2"])
            assert deletions == forget.Deletions(deleted=1, already_gone=1)

            # The server deletes a closed history in the background (about 30 s on the dev server).
            await wait_for(lambda: gone(handle), within=120, every=0.5)
