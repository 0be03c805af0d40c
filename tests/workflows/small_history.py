"""JourneyWorkflow told that its history is large after a few dozen events, or at one chosen moment
(continue-as-new tests). A module of its own: the workflow sandbox imports it."""

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


@workflow.defn(name="JourneyWorkflow")
class ContinuesOnceClicked(JourneyWorkflow):
    """Continues as new at the first step after a Clicked event reached its first run."""

    @workflow.run
    async def run(self, inp: JourneyInput) -> JourneyResult:
        return await super().run(inp)

    def _history_is_large(self) -> bool:
        return self._inp.state is None and any(e.name == "Clicked" for e in self._inbox)
