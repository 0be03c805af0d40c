"""Mail sent to the unsubscribe mailbox, as an inbound-mail provider delivers it: the raw message, or
the JSON (Postmark) or form (SendGrid, Mailgun) a provider wraps it in.

Authenticated by an inbound key (``kind: inbound``), which opens nothing else. The body is read by
``api/inbound_posts.py``, never by FastAPI or the text guard, so a post larger than
``inbound_mail_max_bytes`` is refused without being buffered whole.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import InboundMail, Session
from api.inbound_posts import JSON, MULTIPART, RAW_MESSAGE, URLENCODED, read_inbound_mail, refused_for_good
from domain.subscriptions import service as subscriptions
from domain.subscriptions.schemas import MailUnsubscribeResult

router = APIRouter(tags=["subscriptions"])

_FORM = {"type": "object", "additionalProperties": {"type": "string"}}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            RAW_MESSAGE: {"schema": {"type": "string", "format": "binary"}},
            JSON: {"schema": {"type": "object", "description": "Postmark's inbound webhook"}},
            MULTIPART: {"schema": _FORM | {"description": "SendGrid Inbound Parse, Mailgun forward()"}},
            URLENCODED: {"schema": _FORM | {"description": "Mailgun forward()"}},
        },
    }
}


@router.post(
    "/api/webhooks/unsubscribe-email",
    response_model=MailUnsubscribeResult,
    summary="A message sent to the unsubscribe mailbox (inbound key; the raw message or a provider's post)",
    openapi_extra=_BODY,
)
# The same, at a URL ending in "mime": Mailgun posts a route's raw message only to such a URL.
@router.post(
    "/api/webhooks/unsubscribe-email/mime",
    response_model=MailUnsubscribeResult,
    summary="The same, at the URL a Mailgun route's forward() needs for the raw message",
    openapi_extra=_BODY,
)
async def unsubscribe_email(request: Request, session: Session, _: InboundMail) -> MailUnsubscribeResult:
    """Unsubscribes as the one-click link does. 200 with ``status: ignored`` and a ``reason`` for mail
    that asks nothing we can act on (no token, a forged one): delivering it again would change nothing.
    A post that can never be read is refused with the status its provider stops retrying at.
    """
    settings = request.app.state.settings
    secret = settings.secret_key.get_secret_value()
    with refused_for_good(request):
        mail = await read_inbound_mail(request, settings.inbound_mail_max_bytes)
        return await subscriptions.unsubscribe_by_email(
            session, secret, mail, max_bytes=settings.inbound_mail_max_bytes
        )
