"""send_email: render a template for one customer and deliver it, exactly once per idempotency key."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import RENDER_FAILED, SEND_EMAIL, UNDELIVERABLE, SendEmailRequest, SendEmailResult
from activities.group_commit import GroupCommit
from activities.heartbeat import heartbeating
from activities.journey_status import JourneyStatusCache
from activities.smtp import Mailer, NotABounce, PermanentFailure
from config.settings import Settings
from domain.customers import service as customers
from domain.db import transaction
from domain.email import compose, rendering
from domain.email import service as email
from domain.email.delivery import MessageFactory, Prepared
from domain.journeys import service as journeys
from domain.subscriptions import service as subscriptions


def _enrollment_of(idempotency_key: str) -> str | None:
    """A journey send's key is ``{workflow id}/{entry event id}/{node id}/{visit}``: the workflow id."""
    parts = idempotency_key.rsplit("/", 3)
    return parts[0] if len(parts) == 4 else None


class EmailActivities:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        mailer: Mailer,
        writes: GroupCommit | None = None,
        journey_status: JourneyStatusCache | None = None,
    ):
        self._settings = settings
        self._sessions = sessions
        self._writes = writes or GroupCommit(sessions)
        self._journey_status = journey_status or JourneyStatusCache(sessions)
        self._mailer = mailer
        self._factory = MessageFactory(settings)

    @activity.defn(name=SEND_EMAIL)
    async def send_email(self, req: SendEmailRequest) -> SendEmailResult:
        async with heartbeating():
            return await self._send_email(req)

    async def _send_email(self, req: SendEmailRequest) -> SendEmailResult:
        message_id = self._factory.message_id(req.idempotency_key)
        if req.hold_unless_published and req.journey_id is not None:
            status = await self._journey_status.status(req.journey_id, req.fresh_status)
            if status in ("paused", "archived"):
                return SendEmailResult(status="held", message_id=message_id, detail=status)
        # 1. Claim the ledger row, check suppression and render (no network I/O inside the
        #    transaction), committed together with concurrent sends' writes. Suppression is read here,
        #    at send time, so an unsubscribe made while the journey waited stops this step.
        outcome = await self._writes.run(lambda session: self._claim(session, req, message_id))
        if isinstance(outcome, SendEmailResult):
            if outcome.status == "failed":
                raise ApplicationError(
                    outcome.detail or "send failed", type=RENDER_FAILED, non_retryable=True
                )
            return outcome
        # 2. Deliver. A crash after this line and before step 3 re-sends with the same Message-ID,
        #    which receiving servers treat as the same message.
        try:
            await self._mailer.send(self._factory.envelope_from, outcome.to, outcome.data)
        except PermanentFailure as exc:
            async with transaction(self._sessions) as session:
                # Not a bounce: our relay's limit or setup, the mailbox stays sendable. An erasure
                # since the claim leaves the error unrecorded, here and in the workflow's history.
                bounced = not isinstance(exc, NotABounce)
                error = await email.record_refusal(
                    session, req.idempotency_key, outcome.to, str(exc), bounced=bounced
                )
            cause = exc if error == str(exc) else None  # the history keeps a cause's text too
            raise ApplicationError(error, type=UNDELIVERABLE, non_retryable=True) from cause
        # Temporary failures propagate: Temporal retries with the workflow's backoff policy.
        # 3. Record the delivery (one UPDATE, group-committed). It writes no subject, error or
        #    address (the claim wrote them), so a row an erasure anonymised meanwhile stays so.
        await self._writes.run(
            lambda session: email.finish_message(session, req.idempotency_key, "sent", None)
        )
        return SendEmailResult(status="sent", message_id=message_id)

    async def _claim(
        self, session: AsyncSession, req: SendEmailRequest, message_id: str
    ) -> Prepared | SendEmailResult:
        # A journey started for a visitor who has since logged in sends to the known customer; an
        # erased customer's message is recorded against nobody, and skipped.
        # Checked in the transaction that claims the send, with the profile key-share locked
        # (waiting for a merge in flight, and holding off one that starts), so no send goes once a
        # merge that ended this enrollment has committed: it leaves as from an archived journey (a
        # send that cannot hold, one already planned, is skipped unrecorded).
        workflow_id = _enrollment_of(req.idempotency_key) if req.journey_id is not None else None
        if workflow_id and await journeys.ended_by_merge(session, workflow_id, req.customer_id):
            if req.hold_unless_published:
                return SendEmailResult(status="held", message_id=message_id, detail="archived")
            return SendEmailResult(
                status="skipped", message_id=message_id, detail="enrollment superseded by a merge"
            )
        customer = await customers.get_profile(session, req.customer_id)
        row = await email.claim_message(
            session,
            idempotency_key=req.idempotency_key,
            message_id=message_id,
            customer_id=customer["id"] if customer else None,
            template_id=req.template_id,
            template_version=req.template_version,
            journey_id=req.journey_id,
            node_id=req.node_id,
        )
        if row.status in ("sent", "skipped", "failed"):
            return SendEmailResult(status=row.status, message_id=row.message_id, detail=row.error)
        outcome = await self._prepare(session, req, row, customer)
        row.attempts += 1  # after the reads, so the row is written once, at commit
        return outcome

    async def _prepare(
        self, session: AsyncSession, req: SendEmailRequest, row, customer: dict[str, Any] | None
    ) -> Prepared | SendEmailResult:
        if customer is None or not customer.get("email"):
            email.mark(row, "skipped", error="customer has no email address")
            return SendEmailResult(status="skipped", message_id=row.message_id, detail=row.error)
        version = await email.get_version(session, req.template_id, req.template_version)
        category = req.category or version.category
        group_id = req.subscription_group or version.subscription_group
        reasons = await subscriptions.blocked(
            session, {customer["id"]: customer["email"]}, category, group_id
        )
        if reasons:
            email.mark(row, "skipped", error=reasons[customer["id"]])
            return SendEmailResult(status="skipped", message_id=row.message_id, detail=row.error)
        event = None
        if req.event is not None:
            event = {
                "name": req.event.name,
                "properties": req.event.properties,
                "timestamp": req.event.timestamp,
            }
        try:
            prepared = self._factory.make(
                version,
                customer,
                idempotency_key=req.idempotency_key,
                event=event,
                journey={"id": req.journey_id, "node_id": req.node_id},
                category=category,
                group_id=group_id,
                group_name=await subscriptions.group_name(session, group_id),
                default_timezone=req.default_timezone,
            )
        except (rendering.RenderError, compose.InvalidRecipient) as exc:
            email.mark(row, "failed", error=str(exc))
            return SendEmailResult(status="failed", message_id=row.message_id, detail=str(exc))
        row.to_address = prepared.to
        row.subject = prepared.subject
        return prepared
