"""The baseline of bench/journeys.py: a bare workflow calling three no-op activities."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="noop")
async def noop(step: str) -> str:
    return step


@workflow.defn(name="BareThreeSteps")
class BareThreeSteps:
    @workflow.run
    async def run(self, _: str) -> None:
        for step in ("one", "two", "three"):
            await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=30))


@workflow.defn(name="BareSleeper")
class BareSleeper:
    """The baseline of bench/segment_entry.py: a workflow that only waits, like an enrollment's first
    day in a journey that starts with a wait."""

    @workflow.run
    async def run(self, _: str) -> None:
        await workflow.sleep(timedelta(days=1))
