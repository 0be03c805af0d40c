"""What a journey step's activity checks about the enrollment that calls it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.contracts import ENROLLMENT_SUPERSEDED
from domain.journeys import service as journeys


def calling_workflow_id() -> str | None:
    """The calling enrollment's workflow id (None outside an activity, e.g. called directly). Read it
    in the activity's own task: a group-committed write runs in the task of whichever write started
    its batch, where ``activity.info()`` names that other activity."""
    try:
        return activity.info().workflow_id
    except RuntimeError:
        return None


async def refuse_if_superseded(session: AsyncSession, workflow_id: str | None, customer_id: int) -> None:
    """Raise ENROLLMENT_SUPERSEDED, before the step's effect and in its transaction, when a profile
    merge ended enrollment ``workflow_id``: the person is in the journey through the enrollment kept,
    so points, a case, a webhook call or listeners from this one would reach them twice."""
    if workflow_id is not None and await journeys.ended_by_merge(session, workflow_id, customer_id):
        raise ApplicationError(
            "enrollment superseded by a merge",
            type=ENROLLMENT_SUPERSEDED,
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,  # an expected outcome: not logged as a failure
        )
