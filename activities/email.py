"""send_email: render a template for one customer and deliver it, exactly once per idempotency key."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import RENDER_FAILED, SEND_EMAIL, UNDELIVERABLE, SendEmailRequest, SendEmailResult
from activities.heartbeat import heartbeating
from activities.smtp import Mailer, PermanentFailure
from config.settings import Settings
from domain.customers import service as customers
from domain.db import transaction
from domain.email import compose, rendering
from domain.email import service as email


class EmailActivities:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], mailer: Mailer):
        self._settings = settings
        self._sessions = sessions
        self._mailer = mailer

    @activity.defn(name=SEND_EMAIL)
    async def send_email(self, req: SendEmailRequest) -> SendEmailResult:
        async with heartbeating():
            return await self._send_email(req)

    async def _send_email(self, req: SendEmailRequest) -> SendEmailResult:
        message_id = email.message_id_for(
            req.idempotency_key, compose.sender_domain(self._settings.mail_from)
        )
        # 1. Claim the ledger row and render, in one short transaction (no network I/O inside it).
        async with transaction(self._sessions) as session:
            row = await email.claim_message(
                session,
                idempotency_key=req.idempotency_key,
                message_id=message_id,
                customer_id=req.customer_id,
                template_id=req.template_id,
                template_version=req.template_version,
                journey_id=req.journey_id,
                node_id=req.node_id,
            )
            if row.status in ("sent", "skipped", "failed"):
                return SendEmailResult(status=row.status, message_id=row.message_id, detail=row.error)
            row.attempts += 1
            outcome = await self._prepare(session, req, row, message_id)
        if isinstance(outcome, SendEmailResult):
            if outcome.status == "failed":
                raise ApplicationError(
                    outcome.detail or "send failed", type=RENDER_FAILED, non_retryable=True
                )
            return outcome
        # 2. Deliver. A crash after this line and before step 3 re-sends with the same Message-ID,
        #    which receiving servers and our capture treat as the same message.
        try:
            await self._mailer.send(outcome)
        except PermanentFailure as exc:
            await self._finish(req.idempotency_key, "failed", str(exc))
            raise ApplicationError(str(exc), type=UNDELIVERABLE, non_retryable=True) from exc
        # 3. Record the delivery.
        await self._finish(req.idempotency_key, "sent", None)
        return SendEmailResult(status="sent", message_id=message_id)

    async def _prepare(self, session: AsyncSession, req: SendEmailRequest, row, message_id: str):
        customer = await customers.get_profile(session, req.customer_id)
        if customer is None or not customer.get("email"):
            email.mark(row, "skipped", error="customer has no email address")
            return SendEmailResult(status="skipped", message_id=message_id, detail=row.error)
        version = await email.get_version(session, req.template_id, req.template_version)
        event = None
        if req.event is not None:
            event = {
                "name": req.event.name,
                "properties": req.event.properties,
                "timestamp": req.event.timestamp,
            }
        try:
            rendered = rendering.render(
                version.subject, version.html, version.text, rendering.context_for(customer, event)
            )
            message = compose.build(
                mail_from=self._settings.mail_from,
                to=customer["email"],
                subject=rendered.subject,
                html=rendered.html,
                text=rendered.text,
                message_id=message_id,
            )
        except (rendering.RenderError, compose.InvalidRecipient) as exc:
            email.mark(row, "failed", error=str(exc))
            return SendEmailResult(status="failed", message_id=message_id, detail=str(exc))
        row.to_address = customer["email"]
        row.subject = rendered.subject
        return message

    async def _finish(self, idempotency_key: str, status: str, error: str | None) -> None:
        async with transaction(self._sessions) as session:
            await email.finish_message(session, idempotency_key, status, error)
