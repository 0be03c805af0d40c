"""Recorded histories of running workflows must replay on the current code: a change that would break
executions already in flight (non-determinism) fails here, not in production. Every workflow type the
worker registers has at least one recorded history, so a new type cannot slip through unguarded."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from runtime.worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
RECORD = "run python -m tests.workflows.record_histories (and add a scenario for a new workflow type)"


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def _workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


def test_every_registered_workflow_type_has_a_recorded_history():
    # The definition's name, not the class name: that is what a history records.
    registered = {workflow._Definition.must_from_class(cls).name for cls in WORKFLOWS}
    recorded = {_workflow_type(_history(path)) for path in HISTORIES}
    assert registered - recorded == set(), RECORD


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path):
    await Replayer(workflows=WORKFLOWS).replay_workflow(_history(path))
