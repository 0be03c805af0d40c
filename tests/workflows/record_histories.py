"""Record workflow histories for the replay test: `python -m tests.workflows.record_histories [name ...]`.

Every workflow type the worker registers gets at least one history (test_replay fails otherwise): each
scenario runs it for real on the time-skipping test server, against a freshly migrated SQLite database,
with the worker's real activities. Give scenario names (e.g. `broadcast case_sla`) to re-record only
those. Run it when a workflow change is deliberate and versioned (workflow.patched); the replay test then
guards the new shape; a new patch also gets a scenario that takes its new path (patch_scenarios.py,
test_replay checks every patch id has a recorded marker). The journey scenarios exercise different
commands: timers, signals, local activities, activities of every node type, interrupts and deferrals.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from activities.contracts import CASE_UPDATE_SIGNAL, CaseUpdate
from domain.db import create_engine, session_factory
from runtime.migrate import upgrade_async
from tests.conftest import wait_for
from tests.temporal_env import time_skipping
from tests.workflows.harness import engine, engine_settings
from tests.workflows.patch_scenarios import PATCH_SCENARIOS
from tests.workflows.test_abandoned_cart import CART
from tests.workflows.test_journey_fuzzed_inputs import DATE_BRANCH
from tests.workflows.test_wait_listeners import _twice
from tests.workflows.workflow_scenarios import NON_JOURNEY_SCENARIOS
from workflows.journey import JourneyWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def _at(handle, node_id: str) -> bool:
    steps = await handle.query(JourneyWorkflow.path)
    return bool(steps) and steps[-1].node_id == node_id and steps[-1].left_at is None


async def _abandoned_cart(e) -> list:
    await e.team("care")
    await e.template("cart-reminder", "Your cart {{ properties.cart_id }}")
    await e.journey("cart", CART)
    ada = await e.customer("ada", value_tier="key")
    await e.track("ada", "Cart Updated", cart_id="c1")
    handle = e.handle("cart", ada, "c1")
    await e.result(handle)
    bob = await e.customer("bob", value_tier="small")
    await e.track("bob", "Cart Updated", cart_id="c2")
    await wait_for(lambda: e.listening(bob, "Order Completed"))
    await e.track("bob", "Order Completed", cart_id="c2")
    other = e.handle("cart", bob, "c2")
    await e.result(other)
    return [("abandoned_cart_escalated", handle), ("abandoned_cart_ordered", other)]


async def _everything_else(e) -> list:
    await e.team("care")
    await e.segment("vips", {"trait": "vip", "op": "equals", "value": True})
    for name in ("welcome", "tips", "vip"):
        await e.template(name, name)
    local = datetime.now(UTC)
    quiet = {
        "start": (local - timedelta(hours=1)).strftime("%H:%M"),
        "end": (local + timedelta(hours=1)).strftime("%H:%M"),
    }
    await e.journey(
        "all",
        {
            "nodes": [
                {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"},
                {"id": "hello", "type": "send_email", "template_id": "welcome", "next": "until"},
                {"id": "until", "type": "wait_until", "at": "09:00", "next": "b"},
                {
                    "id": "b",
                    "type": "branch",
                    "branches": [
                        {"when": [{"segment": "vips"}], "next": "vip"},
                        {"when": [{"trait": "plan", "value": "pro"}], "next": "s"},
                    ],
                    "default_next": "s",
                },
                {"id": "vip", "type": "send_email", "template_id": "vip", "next": "esc"},
                {
                    "id": "esc",
                    "type": "escalate",
                    "subject": "Call",
                    "team": "care",
                    "sla": "1d",
                    "resolved_next": "s",
                    "breached_next": "s",
                },
                {
                    "id": "s",
                    "type": "split",
                    "paths": [{"weight": 1, "next": "award"}, {"weight": 1, "next": "award"}],
                },
                {"id": "award", "type": "award_points", "points": 5, "next": "trait"},
                {"id": "trait", "type": "update_trait", "traits": {"onboarded": True}, "next": "w"},
                {"id": "w", "type": "wait", "duration": "30d", "next": "tips"},
                {"id": "tips", "type": "send_email", "template_id": "tips", "next": "done"},
                {"id": "done", "type": "exit"},
            ],
            "rules": {
                "goal": {"event": "Order Completed"},
                "quiet_hours": quiet,
                "frequency_cap": {"max": 5, "window": "1d"},
            },
        },
    )
    cleo = await e.customer("cleo", vip=True)
    await e.track("cleo", "Signed Up")
    handle = e.handle("all", cleo)
    async with e.env.time_skipping_unlocked():
        await wait_for(lambda: _at(handle, "esc"), within=60)

    async def cleos_cases():  # the step is entered before its activity has opened the case
        return [c for c in await e.cases() if c.customer_id == cleo]

    [case] = await wait_for(cleos_cases)
    await e.client.get_workflow_handle(case.waiting_workflow_id).signal(
        CASE_UPDATE_SIGNAL, CaseUpdate(case_id=case.id, status="resolved", outcome="solved", breached=False)
    )
    await wait_for(lambda: _at(handle, "w"))
    await e.track("cleo", "Order Completed")
    await handle.result()
    return [("all_nodes_converted", handle)]


async def _local_steps(e) -> list:
    """Sends and points as local activities (the steps-as-local-activities patch), across a timer."""
    for name in ("welcome", "tips"):
        await e.template(name, name)
    await e.journey(
        "steps",
        {
            "nodes": [
                {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"},
                {"id": "hello", "type": "send_email", "template_id": "welcome", "next": "award"},
                {"id": "award", "type": "award_points", "points": 10, "next": "w"},
                {"id": "w", "type": "wait", "duration": "1d", "next": "tips"},
                {"id": "tips", "type": "send_email", "template_id": "tips", "next": "done"},
                {"id": "done", "type": "exit"},
            ]
        },
    )
    dana = await e.customer("dana")
    await e.track("dana", "Signed Up")
    handle = e.handle("steps", dana)
    await e.result(handle)
    return [("local_steps_send_award_wait", handle)]


async def _send_checks_status(e) -> list:
    """A send with no rule to plan checks the journey's status itself (send-checks-journey-status)."""
    await e.template("hello-again", "hello-again")
    await e.journey(
        "status-in-send",
        {
            "nodes": [
                {"id": "start", "type": "entry", "event": "Joined", "next": "hello"},
                {"id": "hello", "type": "send_email", "template_id": "hello-again", "next": "award"},
                {"id": "award", "type": "award_points", "points": 5, "next": "done"},
                {"id": "done", "type": "exit"},
            ]
        },
    )
    erin = await e.customer("erin")
    await e.track("erin", "Joined")
    handle = e.handle("status-in-send", erin)
    await e.result(handle)
    return [("send_checks_status", handle)]


async def _wait_ends_its_listener(e) -> list:
    """A wait matched drops its listener with the next step records; a later wait for the same event
    registers it again and times out (wait-ends-its-listener)."""
    for name in ("again", "miss"):
        await e.template(name, name)
    await e.journey("twice", _twice())
    fay = await e.customer("fay")
    await e.track("fay", "Signed Up")
    handle = e.handle("twice", fay)
    await wait_for(lambda: _at(handle, "first"))
    await wait_for(lambda: e.listening(fay, "Order Completed"))
    await e.track("fay", "Order Completed")
    await e.result(handle)
    return [("wait_ends_its_listener", handle)]


async def _branch_dates(e) -> list:
    """A branch ``gt 2024-09-01`` on a timestamp of 1 September: by the day it is on it does not hold
    (branch-compares-dates-by-day). branch_dates_by_character.json was recorded by the code before the
    patch, which compared by character and took the branch; this scenario records the patched shape."""
    await e.template("hello", "Hello {{ traits.name }}")
    await e.journey(
        "route",
        {
            "nodes": [
                {"id": "start", "type": "entry", "event": "Signed Up", "next": "b"},
                DATE_BRANCH,
                {"id": "hello", "type": "send_email", "template_id": "hello", "next": "done"},
                {"id": "done", "type": "exit"},
            ]
        },
    )
    bo = await e.customer("bo", renewal="2024-09-01T23:30:00-05:00")
    await e.track("bo", "Signed Up")
    handle = e.handle("route", bo)
    await e.result(handle)
    return [("branch_dates_by_day", handle)]


SCENARIOS = (
    _abandoned_cart,
    _everything_else,
    _local_steps,
    _send_checks_status,
    _wait_ends_its_listener,
    _branch_dates,
    *NON_JOURNEY_SCENARIOS,
    *PATCH_SCENARIOS,
)


def _name(scenario) -> str:
    return scenario.__name__.lstrip("_")


async def main(only: list[str]) -> None:
    """Record every scenario, or only those named in ``only``."""
    HISTORIES.mkdir(exist_ok=True)
    known = [_name(s) for s in SCENARIOS]
    if unknown := sorted(set(only) - set(known)):
        raise SystemExit(f"no scenario {unknown}; known: {known}")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/record.db"
        await upgrade_async(url)
        db = create_engine(url)
        sessions = session_factory(db)
        for scenario in SCENARIOS:
            if only and _name(scenario) not in only:
                continue
            env = await time_skipping()
            try:
                settings = engine_settings(url, Path(tmp) / scenario.__name__)
                async with engine(env, sessions, settings) as e:
                    for name, handle in await scenario(e):
                        history = await handle.fetch_history()
                        (HISTORIES / f"{name}.json").write_text(history.to_json())
                        print("recorded", name, len(history.events), "events")
            finally:
                await env.shutdown()
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
