"""Turning a rendered email into a MIME message, refusing anything that could inject headers."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, parseaddr

from email_validator import EmailNotValidError, validate_email

_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


class InvalidRecipient(ValueError):
    """An address or header value that must not be sent; never rewritten into something else."""


def check_header_value(field: str, value: str) -> str:
    if any(ch in _CONTROL for ch in value):
        raise InvalidRecipient(f"{field} contains a line break or control character")
    return value


def checked_address(value: str) -> str:
    check_header_value("address", value)
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidRecipient(f"{value!r} is not a valid email address: {exc}") from exc


def sender_domain(mail_from: str) -> str:
    _, address = parseaddr(mail_from)
    return address.rpartition("@")[2] or "localhost"


def build(
    *,
    mail_from: str,
    to: str,
    subject: str,
    html: str,
    text: str | None,
    message_id: str,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    to = checked_address(to)
    check_header_value("subject", subject)
    [(from_name, from_address)] = getaddresses([mail_from])
    message = EmailMessage()
    message["From"] = Address(display_name=from_name, addr_spec=from_address)
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        message[name] = check_header_value(name, value)
    message.set_content(text or "This message is best viewed in an HTML-capable mail client.")
    message.add_alternative(html, subtype="html")
    return message
