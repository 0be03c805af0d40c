"""Case activities: open a case for a journey, escalate a case whose SLA passed."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    CASE_REJECTED,
    CASE_SLA_BREACH,
    OPEN_CASE,
    CaseSlaBreachRequest,
    CaseSlaBreachResult,
    OpenCaseRequest,
)
from activities.enrollment import calling_workflow_id, refuse_if_superseded
from domain.cases import service as cases
from domain.cases.schemas import Priority
from domain.customers import service as customers
from domain.db import transaction
from domain.errors import InvalidInput, NotFound


async def _current(session: AsyncSession, customer_id: int) -> int:
    """The profile a journey's customer id names now (merges followed); an erased customer gets no
    case, and the journey stops here with the reason."""
    current = await customers.current_id(session, customer_id)
    if current is None:
        raise InvalidInput({"field": "customer_id", "problem": f"no customer {customer_id}"})
    return current


class CaseActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    @activity.defn(name=OPEN_CASE)
    async def open_case(self, req: OpenCaseRequest) -> int:
        """The case id; the same one for every retry with this idempotency key."""
        try:
            priority = Priority(req.priority) if req.priority is not None else None
        except ValueError:
            raise ApplicationError(
                f"priority {req.priority!r} is not one of low, normal, high, urgent",
                type=CASE_REJECTED,
                non_retryable=True,
            ) from None
        try:
            async with transaction(self._sessions) as session:
                await refuse_if_superseded(session, calling_workflow_id(), req.customer_id)
                case, _ = await cases.open_case(
                    session,
                    cases.OpenCase(
                        customer_id=await _current(session, req.customer_id),
                        reason=req.reason,
                        team=req.team,
                        priority=priority,
                        idempotency_key=req.idempotency_key,
                        journey_id=req.journey_id,
                        node_id=req.node_id,
                        waiting_workflow_id=req.waiting_workflow_id,
                    ),
                )
                return case.id
        except InvalidInput as err:
            raise ApplicationError(str(err.detail), type=CASE_REJECTED, non_retryable=True) from None

    @activity.defn(name=CASE_SLA_BREACH)
    async def case_sla_breach(self, req: CaseSlaBreachRequest) -> CaseSlaBreachResult:
        try:
            async with transaction(self._sessions) as session:
                done = await cases.record_breach(session, req.case_id, req.target)
        except NotFound:
            # Erased with its customer: retrying would fail forever, and there is no one to escalate.
            return CaseSlaBreachResult(escalated=False, priority="", team="", status="gone", gone=True)
        return CaseSlaBreachResult(
            escalated=done.escalated,
            priority=done.priority,
            team=done.team,
            status=done.status,
            breached=done.breached,
        )
