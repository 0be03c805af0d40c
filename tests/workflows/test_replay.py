"""Recorded histories of running workflows must replay on the current code: a change that would break
executions already in flight (non-determinism) fails here, not in production. Every workflow type the
worker registers has at least one recorded history, so a new type cannot slip through unguarded."""

from __future__ import annotations

import json
import re
from base64 import b64decode
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


# Patches whose new path no history takes yet, and why; the test below keeps this list exact.
UNRECORDED_PATCHES = {
    # Its new path changes only the continue-as-new input, which replay does not compare; recording
    # it needs a worker whose JourneyWorkflow continues as new on cue (tests/workflows/small_history).
    "continue-as-new-carries-events-since-awake",
}


def _patch_ids_in_code() -> set[str]:
    """Every id passed to workflow.patched in workflows/, through the constant that names it."""
    ids = set()
    for source in (Path(__file__).parents[2] / "workflows").glob("*.py"):
        text = source.read_text()
        constants = dict(re.findall(r'^(\w+) = "([^"]+)"', text, re.M))
        ids.update(constants[name] for name in re.findall(r"workflow\.patched\((\w+)\)", text))
    return ids


def _patch_markers(path: Path) -> set[str]:
    ids = set()
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes") or {}
        if marker.get("markerName") == "core_patch":
            [payload] = marker["details"]["patch-data"]["payloads"]
            ids.add(json.loads(b64decode(payload["data"]))["id"])
    return ids


def test_every_patch_has_a_recorded_history_that_took_its_new_path():
    # A patch marker is recorded only when the run took the patched branch; removing or reshaping the
    # branch then fails the replay below.
    recorded = set().union(*(_patch_markers(path) for path in HISTORIES))
    assert _patch_ids_in_code() - recorded == UNRECORDED_PATCHES, RECORD


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path):
    await Replayer(workflows=WORKFLOWS).replay_workflow(_history(path))
