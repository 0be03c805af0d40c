"""Mail sent to the unsubscribe mailbox, as an inbound-mail provider delivers it: the raw message.

Authenticated by an inbound key (``kind: inbound``), which opens nothing else. The body is read here,
never by FastAPI or the text guard, so a message larger than ``inbound_mail_max_bytes`` is refused
without being buffered whole.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from api.deps import InboundMail, Session
from domain.subscriptions import service as subscriptions
from domain.subscriptions.schemas import MailUnsubscribeResult
from domain.subscriptions.unsubscribe_mail import check_size

router = APIRouter(tags=["subscriptions"])

RAW_MESSAGE = "message/rfc822"
_BODY = {
    "requestBody": {
        "required": True,
        "content": {RAW_MESSAGE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


async def _raw_message(request: Request) -> bytes:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != RAW_MESSAGE:
        problem = f"must be {RAW_MESSAGE} (the raw message), not {media_type!r}"
        raise HTTPException(415, {"field": "Content-Type", "problem": problem})
    limit = request.app.state.settings.inbound_mail_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        check_size(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        check_size(size, limit)  # stops reading at the limit, whatever Content-Length said
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/api/webhooks/unsubscribe-email",
    response_model=MailUnsubscribeResult,
    summary="A message sent to the unsubscribe mailbox (inbound key; body: the raw message)",
    openapi_extra=_BODY,
)
async def unsubscribe_email(request: Request, session: Session, _: InboundMail) -> MailUnsubscribeResult:
    """Unsubscribes as the one-click link does. 200 with ``status: ignored`` and a ``reason`` for mail
    that asks nothing we can act on (no token, a forged one): delivering it again would change nothing.
    """
    raw = await _raw_message(request)
    secret = request.app.state.settings.secret_key.get_secret_value()
    max_bytes = request.app.state.settings.inbound_mail_max_bytes
    return await subscriptions.unsubscribe_by_email(session, secret, raw, max_bytes=max_bytes)
