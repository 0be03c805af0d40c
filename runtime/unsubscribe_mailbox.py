"""The unsubscribe mailbox of ``journeys dev``: mail the SMTP capture takes for the address
``JOURNEYS_MAIL_UNSUBSCRIBE_MAILTO`` names goes to the processor behind the inbound endpoint, as an
inbound-mail provider would deliver it, so unsubscribing by email works end to end locally.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from domain.db import transaction
from domain.email.compose import InvalidRecipient, unsubscribe_mailto
from domain.errors import DomainError
from domain.subscriptions import service as subscriptions

log = logging.getLogger("journeys.dev.unsubscribe_mailbox")


class UnsubscribeMailbox:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], address: str):
        self._settings = settings
        self._sessions = sessions
        self._address = address

    @classmethod
    def of(cls, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> UnsubscribeMailbox | None:
        """The mailbox the settings name, or None when there is none (or it is no address)."""
        if not settings.mail_unsubscribe_mailto:
            return None
        try:  # the address as the mailto in every List-Unsubscribe names it
            uri = unsubscribe_mailto("mail_unsubscribe_mailto", settings.mail_unsubscribe_mailto)
        except InvalidRecipient:
            return None
        return cls(settings, sessions, unquote(uri.removeprefix("mailto:")).lower())

    def takes(self, recipients: list[str]) -> bool:
        """Whether an envelope's recipients include the mailbox (addresses compared in any case)."""
        return any(recipient.strip().lower() == self._address for recipient in recipients)

    async def deliver(self, raw: bytes) -> None:
        """Process one message; an outcome is logged, never raised: the capture accepted the mail, as a
        real mailbox would, whatever the processor makes of it."""
        try:
            async with transaction(self._sessions) as session:
                result = await subscriptions.unsubscribe_by_email(
                    session,
                    self._settings.secret_key.get_secret_value(),
                    raw,
                    max_bytes=self._settings.inbound_mail_max_bytes,
                )
        except DomainError as exc:
            log.warning("unsubscribe mail refused: %s", exc.detail)
            return
        except Exception:  # a busy database: the message stays in the capture's Maildir
            log.exception("unsubscribe mail not processed")
            return
        log.info("unsubscribe mail: %s", result.model_dump(exclude_none=True))
