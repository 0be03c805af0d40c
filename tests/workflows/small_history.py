"""JourneyWorkflow told that its history is large after a few dozen events (continue-as-new test)."""

from __future__ import annotations

from temporalio import workflow

from workflows.journey import JourneyInput, JourneyResult, JourneyWorkflow


@workflow.defn(name="JourneyWorkflow")
class SmallHistoryJourney(JourneyWorkflow):
    @workflow.run
    async def run(self, inp: JourneyInput) -> JourneyResult:
        return await super().run(inp)

    def _history_is_large(self) -> bool:
        return workflow.info().get_current_history_length() > 40
