"""From (template version, customer) to the bytes one recipient receives, with links and headers.

Shared by the single send (journeys, test sends) and broadcasts, so both render, check and sign the
same way. Pure CPU: no database, no network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from functools import partial
from typing import Any

from config.settings import Settings
from domain.email import compose, formatting, rendering, tracking
from domain.email.models import TemplateVersion
from domain.errors import InvalidInput
from domain.subscriptions import service as subscriptions


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """A template version's content as plain values, for a broadcast that reads them for every message
    (an ORM row's attributes cost a descriptor call each)."""

    template_id: str
    subject: str
    html: str
    text: str | None
    layout: str | None
    category: str
    subscription_group: str | None
    reply_to: str | None
    variants: dict[str, Any]

    @classmethod
    def of(cls, version: TemplateVersion) -> TemplateSpec:
        return cls(**{f: getattr(version, f) for f in cls.__slots__})


@dataclass(frozen=True)
class Prepared:
    to: str
    subject: str
    data: bytes
    rendered: rendering.RenderedEmail


class MessageFactory:
    def __init__(self, settings: Settings):
        self._secret = settings.secret_key.get_secret_value()
        self._base = settings.resolved_public_url
        self.composer = compose.Composer(settings.mail_from, settings.mail_reply_to)
        self.envelope_from = self.composer.envelope_from
        self._sender_name = parseaddr(settings.mail_from)[0] or self.composer.domain
        self._postal_address = settings.postal_address
        self._default_locale = settings.default_locale
        self._tracking = settings.email_tracking
        # Unsubscribing by email, beside the one-click URL, for clients that only send one (RFC 2369).
        self._unsubscribe_mailto = (
            compose.unsubscribe_mailto("mail_unsubscribe_mailto", settings.mail_unsubscribe_mailto)
            if settings.mail_unsubscribe_mailto
            else None
        )

    def message_id(self, idempotency_key: str) -> str:
        return compose.message_id_for(idempotency_key, self.composer.domain)

    def unsubscribe_url(self, customer_id: int, group_id: str | None) -> str:
        return self._unsubscribe_url(subscriptions.unsubscribe_token(self._secret, customer_id, group_id))

    def _unsubscribe_url(self, token: str) -> str:
        return f"{self._base}/u/{token}"

    def list_unsubscribe(self, token: str) -> str:
        """The List-Unsubscribe value: the one-click URL, then (when a mailbox is configured) a mailto
        whose subject carries the same signed token, ``unsubscribe <token>`` (base64url and a dot: no
        escaping needed); whoever reads that mailbox acts on it by POSTing to ``/u/<token>``."""
        url = f"<{self._unsubscribe_url(token)}>"
        if self._unsubscribe_mailto is None:
            return url
        return f"{url}, <{self._unsubscribe_mailto}?subject=unsubscribe%20{token}>"

    def preferences_url(self, customer_id: int) -> str:
        return f"{self._base}/preferences/{subscriptions.preferences_token(self._secret, customer_id)}"

    def _link_tracker(self, customer_id: int, ref: str) -> Callable[[str], str]:
        return partial(
            tracking.track_links, base=self._base, secret=self._secret, customer_id=customer_id, ref=ref
        )

    def make(
        self,
        version: TemplateVersion | TemplateSpec,
        customer: dict[str, Any],
        *,
        idempotency_key: str,
        event: dict[str, Any] | None = None,
        journey: dict[str, Any] | None = None,
        category: str | None = None,
        group_id: str | None = None,
        group_name: str | None = None,
        to: str | None = None,
        track: bool = True,
        default_timezone: str | None = None,
    ) -> Prepared:
        """Render and compose; raises ``RenderError`` or ``InvalidRecipient`` for this message only.

        ``default_timezone``: the zone dates are shown in for a customer without a known one (UTC if
        None)."""
        address = compose.checked_address(to or customer["email"])
        category = category or version.category
        group_id = group_id or version.subscription_group
        marketing = category == subscriptions.MARKETING
        # An untracked render (a preview, a test send, a simulation) is not a send to the customer:
        # its links act for no one, so a tester's click, or their mailbox's one-click unsubscribe,
        # leaves the real customer's subscriptions as they are.
        owner = customer["id"] if track else subscriptions.NO_CUSTOMER
        signed = subscriptions.unsubscribe_token(self._secret, owner, group_id) if marketing else ""
        unsubscribe = self._unsubscribe_url(signed) if marketing else None
        preferences = self.preferences_url(owner) if marketing else None
        locale = customer.get("locale")
        variant_locale = rendering.variant_locale(version.variants, locale)
        variant = version.variants[variant_locale] if variant_locale is not None else {}
        # dates and amounts in the language of the text the customer reads (a variant's, else the main one's)
        written = formatting.written_in(locale, variant_locale, self._default_locale)
        # names this message in signed links; None: links stay untracked (previews, test sends, and
        # transactional mail, whose links may be credentials: a password reset, a magic login)
        tracked = track and self._tracking and marketing
        ref = tracking.message_ref(idempotency_key, version.template_id) if tracked else None
        # a variant's own HTML without a text part gets one derived from it, not the main language's
        text = variant.get("text", None if "html" in variant else version.text)
        rendered = rendering.render(
            variant.get("subject", version.subject),
            variant.get("html", version.html),
            text,
            rendering.context_for(
                customer, event, journey=journey, unsubscribe_url=unsubscribe, preferences_url=preferences
            ),
            layout=version.layout,
            lang=written[-1].split("-")[0].split("_")[0][:8] or "en",
            footer=rendering.Footer(
                sender_name=self._sender_name,
                postal_address=self._postal_address,
                unsubscribe_url=unsubscribe,
                preferences_url=preferences,
                group_name=group_name or group_id or "our emails",
            ),
            links=self._link_tracker(customer["id"], ref) if ref else None,
            # dates and amounts as the customer reads them; cached per combination, cheap per message
            locality=formatting.locality(
                *written, timezone=customer.get("timezone"), default_timezone=default_timezone
            ),
        )
        html = rendered.html
        if ref:
            token = tracking.open_token(self._secret, customer["id"], ref)
            html = tracking.add_open_pixel(html, f"{self._base}/o/{token}")
        headers = {}
        if marketing:
            # RFC 8058 one-click: mailbox providers POST "List-Unsubscribe=One-Click" to the https URL.
            headers["List-Unsubscribe"] = self.list_unsubscribe(signed)
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        data = self.composer.build(
            to=address,
            subject=rendered.subject,
            html=html,
            text=rendered.text,
            message_id=self.message_id(idempotency_key),
            headers=headers,
            reply_to=version.reply_to,
        )
        return Prepared(to=address, subject=rendered.subject, data=data, rendered=rendered)


def prepare_or_422(
    factory: MessageFactory, version: TemplateVersion, customer: dict[str, Any], **kwargs
) -> Prepared:
    """For previews and test sends: a template or address problem is the caller's 422."""
    try:
        return factory.make(version, customer, **kwargs)
    except rendering.RenderError as exc:
        where = {"part": exc.part, "line": exc.line}
        detail = {"field": "template", "problem": str(exc)} | {
            k: v for k, v in where.items() if v is not None
        }
        raise InvalidInput(detail, code="render_failed") from exc
    except compose.InvalidRecipient as exc:
        raise InvalidInput({"field": "to", "problem": str(exc)}, code="invalid_recipient") from exc
