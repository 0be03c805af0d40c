"""Reading an unsubscribe request that arrived by email, at the mailbox List-Unsubscribe's mailto names.

The mailto (``domain/email/delivery.py``) carries ``subject=unsubscribe <token>``, the signed token of
the one-click link, so a mail client that follows it sends a message with that subject. The message is
parsed with the standard library (``policy.default`` unfolds and decodes RFC 2047 headers, as a client
may have encoded the subject); the token is looked for in the Subject and then in the plain-text body,
where a client that drops a mailto's subject or a person who pastes it leaves it. Only the start of a
message is parsed (``PARSED_BYTES``), and each header only to a bound, so hostile mail costs little.
Of the message only a digest is kept (``mail_key``): of its Message-ID (or, without one, of the
message) and the token, so a provider's retry of a mail acted on is known again, and nothing that names
the person is stored; the token, once verified, says whom and what to unsubscribe.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.errors import MessageError
from email.message import Message
from email.parser import BytesParser
from email.policy import EmailPolicy, compat32

from domain.errors import DomainError

# "unsubscribe <token>", the token as tokens.sign writes it (base64url body, a dot, base64url MAC);
# anywhere in the subject, so "Re: unsubscribe …" or "[ext] unsubscribe …" still reads, and with the
# space still as the mailto wrote it ("%20") for a client that did not decode it.
_REQUEST = re.compile(
    r"(?<![\w-])unsubscribe(?:\s+|%20)([A-Za-z0-9_-]{1,1000}\.[A-Za-z0-9_-]{1,100})", re.IGNORECASE
)
# How much of a message is parsed: its header block and the start of its body, where a mail client
# puts the text of a request (before any attachment). The stdlib's parser spends up to ~80 µs a MIME
# part, and anyone can mail the mailbox: 64 KB of empty parts costs under a second, 1 MB ten.
PARSED_BYTES = 65536
# The stdlib raises these on malformed parts (an unknown charset, a broken transfer encoding, parts
# nested deeper than its recursion goes).
_UNREADABLE = (
    MessageError,
    LookupError,
    UnicodeError,
    ValueError,
    TypeError,
    IndexError,
    AttributeError,
    RecursionError,
)


# How much of one header is parsed: the stdlib's header parser takes time that grows faster than the
# length (a subject of 70 000 encoded words took minutes), and anyone can mail the mailbox. A request's
# subject is under 200 characters, so its token is always within the bound.
_HEADER_CHARS = 4096


class _BoundedHeaders(EmailPolicy):
    """``policy.default``, each header value cut to ``_HEADER_CHARS`` before it is parsed."""

    def header_fetch_parse(self, name, value):
        return super().header_fetch_parse(name, value[:_HEADER_CHARS])


_POLICY = _BoundedHeaders()


class NotAMessage(DomainError):
    status_code = 400
    code = "not_a_message"


class MessageTooLarge(DomainError):
    status_code = 413
    code = "too_large"


def too_large(limit: int) -> MessageTooLarge:
    return MessageTooLarge(
        {"field": "body", "problem": f"the message is larger than {limit} bytes (inbound_mail_max_bytes)"}
    )


def check_size(size: int, limit: int) -> None:
    if size > limit:
        raise too_large(limit)


def parse(raw: bytes) -> Message:
    """The message, or ``NotAMessage`` for a body that is none: empty, or without a From header (RFC
    5322 requires one; JSON or a form posted here by mistake has no header block at all)."""
    if not raw.strip():
        raise NotAMessage({"field": "body", "problem": "is empty; send the raw message (RFC 822)"})
    raw = raw[:PARSED_BYTES]  # a cut message parses as one, its last part unterminated
    try:
        message = BytesParser(policy=_POLICY).parsebytes(raw)
    except _UNREADABLE:
        # Parts nested thousands deep, or a Content-Type the stdlib trips on ("text/plain; a*0*"):
        # the header block as it is (compat32 parses no header value), whose Subject still reads.
        message = BytesParser(policy=compat32).parsebytes(raw, headersonly=True)
    if "From" not in message:
        raise NotAMessage(
            {"field": "body", "problem": "is not an email message (RFC 822): it has no From header"}
        )
    return message


@dataclass(frozen=True)
class MailText:
    """A message as a provider that parsed it posts it: its decoded subject and plain text, and what
    tells this mail from another (its Message-ID as the provider posts it, else its sender)."""

    subject: str
    text: str
    message_id: str = ""
    sender: str = ""


@dataclass(frozen=True)
class MailRequest:
    """What a message asks: the tokens it offers (the Subject's first), and what names this mail in
    every delivery of it (its Message-ID, else a digest of the message)."""

    tokens: list[str]
    mail_id: str


def read_request(mail: bytes | MailText) -> MailRequest:
    """The request a message makes; ``NotAMessage`` for a body that is none."""
    if isinstance(mail, MailText):
        # the same bounds as a raw message's: a subject within a header's, the start of the text
        tokens = _tokens(mail.subject[:_HEADER_CHARS], mail.text[:PARSED_BYTES])
        if mail.message_id.strip():
            return MailRequest(tokens, "message-id:" + mail.message_id.strip()[:_HEADER_CHARS])
        fields = "\0".join((mail.sender, mail.subject, mail.text)).encode("utf-8", "surrogateescape")
        return MailRequest(tokens, "digest:" + hashlib.sha256(fields).hexdigest())
    message = parse(mail)
    message_id = _header(message, "Message-ID").strip()
    if message_id:
        return MailRequest(candidate_tokens(message), "message-id:" + message_id)
    # Without a Message-ID a retry still carries the same bytes; another mail differs (its Date).
    return MailRequest(candidate_tokens(message), "digest:" + hashlib.sha256(mail).hexdigest())


def mail_key(mail_id: str, token: str) -> str:
    """The digest a mail acted on is recorded by: of the mail and of what it asked, so another
    person's mail that reuses a Message-ID is still acted on. It names no one (the Message-ID may
    hold an address; the digest cannot be looked up from a person), so an erasure has nothing here."""
    return hashlib.sha256(f"{mail_id}\n{token}".encode("utf-8", "surrogateescape")).hexdigest()


def candidate_tokens(message: Message) -> list[str]:
    """The tokens the message offers, the Subject's first, each once."""
    return _tokens(_subject(message), _plain_text(message))


def _tokens(*texts: str) -> list[str]:
    found: list[str] = []
    for text in texts:
        for token in _REQUEST.findall(text):
            if token not in found:
                found.append(token)
    return found


def _subject(message: Message) -> str:
    return _header(message, "Subject")


def _header(message: Message, name: str) -> str:
    try:
        return str(message.get(name, ""))
    except _UNREADABLE:
        return ""


def _plain_text(message: Message) -> str:
    try:
        body = message.get_body(preferencelist=("plain",))  # an EmailMessage's (not compat32's)
        return body.get_content() if body is not None else ""
    except _UNREADABLE:  # an unreadable body offers nothing; the subject may still have
        return ""
