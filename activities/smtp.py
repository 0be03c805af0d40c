"""Delivering MIME messages over SMTP with aiosmtplib."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from config.settings import Settings, SmtpSecurity


class PermanentFailure(Exception):
    """The server refused the message for good (5xx): retrying will not help."""


class Mailer:
    def __init__(self, settings: Settings):
        self._settings = settings

    async def send(self, message: EmailMessage) -> None:
        s = self._settings
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                use_tls=s.smtp_security is SmtpSecurity.tls,
                start_tls=s.smtp_security is SmtpSecurity.starttls,
                timeout=s.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentFailure(str(exc)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentFailure(f"{exc.code} {exc.message}") from exc
            raise
