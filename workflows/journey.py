"""JourneyWorkflow: one run per enrollment, interpreting the published journey graph it was started with."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        FINISH_ENROLLMENT,
        RENDER_FAILED,
        SEND_EMAIL,
        UNDELIVERABLE,
        EventRef,
        FinishEnrollmentRequest,
        SendEmailRequest,
        SendEmailResult,
    )

SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=[RENDER_FAILED, UNDELIVERABLE],
)


@dataclass
class JourneyInput:
    journey_id: str
    version: int
    customer_id: int
    # The published version's definition, frozen at enrollment: later versions never change this run.
    definition: dict[str, Any]
    entry_event: EventRef


@dataclass
class JourneyResult:
    status: str
    path: list[str] = field(default_factory=list)


@workflow.defn(name="JourneyWorkflow")
class JourneyWorkflow:
    def __init__(self) -> None:
        self._path: list[str] = []
        self._events: list[EventRef] = []
        self._seen_event_ids: set[int] = set()

    @workflow.signal(name="event")
    def on_event(self, event: EventRef) -> None:
        # The router may deliver the same event twice (a retried routing pass); keep the first.
        if event.id not in self._seen_event_ids:
            self._seen_event_ids.add(event.id)
            self._events.append(event)

    @workflow.query(name="path")
    def path(self) -> list[str]:
        return list(self._path)

    @workflow.run
    async def run(self, inp: JourneyInput) -> JourneyResult:
        self._seen_event_ids.add(inp.entry_event.id)
        nodes = {n["id"]: n for n in inp.definition["nodes"]}
        entry = next(n for n in nodes.values() if n["type"] == "entry")
        try:
            await self._walk(inp, nodes, entry.get("next"))
        except ActivityError:
            # A step failed for good (e.g. a template that cannot render): record it, then surface it.
            await self._finish("failed")
            raise
        await self._finish("completed")
        return JourneyResult(status="completed", path=self._path)

    async def _finish(self, status: str) -> None:
        await workflow.execute_local_activity(
            FINISH_ENROLLMENT,
            FinishEnrollmentRequest(workflow_id=workflow.info().workflow_id, status=status),
            start_to_close_timeout=timedelta(seconds=30),
        )

    async def _walk(self, inp: JourneyInput, nodes: dict[str, dict[str, Any]], current: str | None) -> None:
        visits: Counter[str] = Counter()
        while current is not None:
            node = nodes[current]
            visits[current] += 1
            self._path.append(current)
            kind = node["type"]
            if kind == "send_email":
                await self._send_email(inp, node, visits[current])
            elif kind == "wait":
                await workflow.sleep(timedelta(seconds=node["seconds"]))
            elif kind == "exit":
                break
            current = node.get("next")

    async def _send_email(self, inp: JourneyInput, node: dict[str, Any], visit: int) -> SendEmailResult:
        # The key names this enrollment (workflow id + entry event) and this step (node + visit), so a
        # retried activity, a replay or a crashed worker all find the same ledger row.
        key = f"{workflow.info().workflow_id}/{inp.entry_event.id}/{node['id']}/{visit}"
        return await workflow.execute_activity(
            SEND_EMAIL,
            SendEmailRequest(
                idempotency_key=key,
                customer_id=inp.customer_id,
                template_id=node["template_id"],
                template_version=node["template_version"],
                journey_id=inp.journey_id,
                node_id=node["id"],
                event=inp.entry_event,
            ),
            activity_id=f"{node['id']}/{visit}",
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=SEND_RETRY,
            result_type=SendEmailResult,
        )
