"""Journey steps' idempotency keys, and the claims a profile merge records on their steps.

A journey step's key is ``journey:{customer}:{workflow id}/{entry event}/{node}/{visit}`` (node ids are
slugs: no "/"). Two enrollments are told apart by the workflow id; one step by node and visit.
"""

from __future__ import annotations

JOURNEY = "journey:"
CLAIM = "step:"

Step = tuple[str, str]  # (workflow id, "node/visit")


def step_of(key: str) -> Step | None:
    """The enrollment and step a journey step's ledger key names; None for any other key."""
    if not key.startswith(JOURNEY):
        return None
    parts = key.split(":", 2)[-1].rsplit("/", 3)
    if len(parts) != 4 or not parts[0].startswith("journey/"):
        return None
    return parts[0], f"{parts[2]}/{parts[3]}"


def claim(workflow_id: str, step: str) -> str:
    """The key a merge records for a step of ``workflow_id`` the person's other enrollment gave."""
    return f"{CLAIM}{workflow_id}/{step}"


def done_as(key: str) -> list[str]:
    """The keys under which a merge may have recorded this step as done: its own, and its claim."""
    step = step_of(key)
    return [key, claim(*step)] if step else [key]
