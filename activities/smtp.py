"""Delivering messages over a pool of SMTP connections (aiosmtplib).

Opening a connection (TCP, EHLO, STARTTLS, AUTH) costs more than sending a message, so connections are
kept and reused: at most ``smtp_pool_size`` at once, opened on demand. A connection that fails is thrown
away and the message is tried once more on a fresh one before the error is raised.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiosmtplib

from config.settings import Settings, SmtpSecurity
from domain.email.compose import InvalidRecipient, needs_smtputf8, smtp_address


class PermanentFailure(Exception):
    """The server refused the message for good (5xx): retrying will not help."""


class TemporaryFailure(Exception):
    """The server asked us to try later (4xx) or could not be reached."""


class NotABounce(PermanentFailure):
    """A permanent failure that says nothing about the recipient's mailbox: the address must not be
    suppressed as bounced because of it."""


class RelayRefused(NotABounce):
    """The server refused our session rather than the mailbox (our sender, our credentials, its
    greeting or EHLO): a configuration problem on our side, which every recipient would hit."""


# 5xx replies to these commands are about us, not the recipient (RCPT TO refusals are raised apart).
_ABOUT_US = (
    aiosmtplib.SMTPSenderRefused,
    aiosmtplib.SMTPAuthenticationError,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPConnectResponseError,
)


class UnsupportedRecipient(NotABounce):
    """The address cannot be carried by this server (a non-ASCII local part, and no SMTPUTF8):
    no retry will help, and it says nothing about the mailbox itself."""


class Mailer:
    def __init__(self, settings: Settings, size: int | None = None):
        self._settings = settings
        self.size = size or settings.smtp_pool_size
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(self.size)

    def _client(self) -> aiosmtplib.SMTP:
        s = self._settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_security is SmtpSecurity.tls,
            start_tls=s.smtp_security is SmtpSecurity.starttls,
            timeout=s.smtp_timeout_seconds,
        )

    async def send(self, sender: str, recipient: str, data: bytes) -> None:
        """Deliver one message to one recipient; raises PermanentFailure or TemporaryFailure.

        Internationalised domains go out in their ASCII form; an address with a non-ASCII local part
        is sent with SMTPUTF8, or refused with ``UnsupportedRecipient`` when the server lacks it."""
        try:
            sender, recipient = smtp_address(sender), smtp_address(recipient)
        except InvalidRecipient as exc:
            raise UnsupportedRecipient(str(exc)) from exc
        utf8 = needs_smtputf8(sender) or needs_smtputf8(recipient)
        async with self._slots:
            for attempt in (1, 2):
                client = self._idle.pop() if self._idle else None
                try:
                    if client is None or not client.is_connected:
                        client = self._client()
                        await client.connect()
                    if not utf8:
                        await client.sendmail(sender, [recipient], data)
                    else:
                        await self._sendmail_utf8(client, sender, recipient, data)
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    self._idle.append(client)
                    code = min(r.code for r in exc.recipients)
                    raise (PermanentFailure if code >= 500 else TemporaryFailure)(str(exc)) from exc
                except aiosmtplib.SMTPResponseException as exc:
                    await _discard(client)
                    if 500 <= exc.code < 600:
                        if isinstance(exc, _ABOUT_US):
                            raise RelayRefused(f"{exc.code} {exc.message}") from exc
                        raise PermanentFailure(f"{exc.code} {exc.message}") from exc
                    raise TemporaryFailure(f"{exc.code} {exc.message}") from exc
                except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                    await _discard(client)
                    if attempt == 2:
                        raise TemporaryFailure(f"SMTP server unreachable: {exc}") from exc
                    continue
                self._idle.append(client)
                return

    async def _sendmail_utf8(self, client: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
        try:
            await client.sendmail(sender, [recipient], data, mail_options=["SMTPUTF8"])
        except aiosmtplib.SMTPNotSupported as exc:  # found after EHLO, before MAIL: the connection is fine
            self._idle.append(client)
            raise UnsupportedRecipient(
                f"{recipient!r} has a non-ASCII local part and the SMTP server does not support "
                "SMTPUTF8, which such an address needs"
            ) from exc

    async def close(self) -> None:
        while self._idle:
            await _discard(self._idle.pop())


async def _discard(client: aiosmtplib.SMTP | None) -> None:
    if client is None:
        return
    with contextlib.suppress(Exception):
        if client.is_connected:
            await client.quit()
    with contextlib.suppress(Exception):
        client.close()
