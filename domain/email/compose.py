"""Turning a rendered email into RFC 5322 bytes, refusing anything that could inject headers.

The standard library's ``EmailMessage`` takes ~1 ms a message (its header policy machinery), a third
of what an SMTP connection can carry; a broadcast would be bound by it. Our messages always have the
same shape (multipart/alternative, a text and an HTML part, UTF-8, base64), so we write that shape
directly: header values are checked (never rewritten), non-ASCII ones (and a Subject holding ``=?``)
are RFC 2047 encoded, bodies are base64 in 76-character lines. ``tests/email/test_compose.py`` parses
the result back with the stdlib.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import time
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from functools import lru_cache
from urllib.parse import quote

from email_validator import EmailNotValidError, validate_email

# C0 controls (CR, LF, NUL, TAB, ...), DEL, and the Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f\u0085\u2028\u2029]")


class InvalidRecipient(ValueError):
    """An address or header value that must not be sent; never rewritten into something else."""


def check_header_value(field: str, value: str) -> str:
    if _CONTROL.search(value):
        raise InvalidRecipient(f"{field} contains a line break or control character")
    return value


# Plain ASCII addresses (nearly all of them) are accepted by this strict pattern without the full
# validator; anything else (quoted local parts, IDN domains, odd forms) goes through email_validator.
_SIMPLE_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def checked_address(value: str) -> str:
    check_header_value("address", value)
    if len(value) <= 254 and _SIMPLE_ADDRESS.fullmatch(value):
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidRecipient(f"{value!r} is not a valid email address: {exc}") from exc


def smtp_address(address: str) -> str:
    """The address as an SMTP envelope (and the To header) carries it: an internationalised domain in
    its ASCII form (IDNA, ``a@bücher.de`` -> ``a@xn--bcher-kva.de``). A non-ASCII local part stays as
    it is: only a server that offers SMTPUTF8 can take it (``needs_smtputf8``)."""
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        try:
            domain = validate_email(address, check_deliverability=False).ascii_domain
        except EmailNotValidError as exc:
            raise InvalidRecipient(f"{address!r} is not a valid email address: {exc}") from exc
    return f"{local}@{domain}"


def needs_smtputf8(address: str) -> bool:
    """Whether ``smtp_address(address)`` can only be sent with the SMTPUTF8 extension (RFC 6531)."""
    return not address.rpartition("@")[0].isascii()


def sender_domain(mail_from: str) -> str:
    _, address = parseaddr(mail_from)
    return address.rpartition("@")[2] or "localhost"


def _header(name: str, value: str, *, text: bool = False) -> bytes:
    """One header line. ``text``: an unstructured value (Subject), shown to the reader as it is: ASCII
    holding ``=?`` is RFC 2047 encoded too, or a client would decode a literal ``=?utf-8?q?...?=`` in
    it as an encoded word and show something other than what the marketer wrote."""
    check_header_value(name, value)
    if value.isascii() and len(value) + len(name) < 900 and not (text and "=?" in value):
        return f"{name}: {value}\r\n".encode("ascii")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


# RFC 2369 headers: a comma-separated list of <URI>s. An RFC 2047 encoded word is no URI (a client
# would read "=?utf-8?q?...?=" where the link was), so these are never encoded; a long value is
# folded at the whitespace RFC 2369 allows between entries instead.
_URI_LISTS = frozenset(
    {"List-Unsubscribe", "List-Help", "List-Subscribe", "List-Post", "List-Owner", "List-Archive"}
)
_BETWEEN_URIS = re.compile(r"(?<=>)\s*,\s*(?=<)")
_MAX_LINE, _FOLD_AT = 998, 78  # RFC 5322 2.1.1, without the CRLF: the MUST, and the SHOULD


def _uri_list_header(name: str, value: str) -> bytes:
    """A ``List-*`` header on one line or, when longer than 78 characters, one ``<URI>`` entry per line.
    An entry that alone is longer than a line may be (an absurdly long public URL) fails this message."""
    check_header_value(name, value)
    if not value.isascii():  # none of ours (settings write the public URL in ASCII): as any other header
        return _header(name, value)
    entries = _BETWEEN_URIS.split(value.strip())
    lines = [f"{name}: {value}"]
    if len(entries) > 1 and len(lines[0]) > _FOLD_AT:
        lines = [f"{name}: {entries[0]},", *(f" {entry}," for entry in entries[1:-1]), f" {entries[-1]}"]
    if any(len(text) > _MAX_LINE for text in lines):
        raise InvalidRecipient(f"a {name} URI is longer than a header line can hold ({_MAX_LINE})")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _to_header(address: str) -> bytes:
    """An address is never RFC 2047 encoded (an encoded word is not an address): an IDN domain is
    written in its ASCII form, a non-ASCII local part as UTF-8 (RFC 6532, sent only with SMTPUTF8)."""
    check_header_value("To", address)
    return b"To: " + smtp_address(address).encode("utf-8") + b"\r\n"


@lru_cache(maxsize=2)
def _date_line(second: int) -> bytes:
    # "+0000", not "GMT": RFC 5322 (4.3) keeps the zone names as obsolete syntax a sender must not write
    return _header("Date", format_datetime(datetime.fromtimestamp(second, UTC)))


def _date_header() -> bytes:
    """The Date header, formatted once a second (a broadcast writes hundreds a second)."""
    return _date_line(int(time.time()))


def _b64(text: str) -> bytes:
    """Base64 in 76-character lines (RFC 2045), encoded in one call and then cut."""
    raw = binascii.b2a_base64(text.encode("utf-8"), newline=False)
    if not raw:
        return b""
    return b"\r\n".join([raw[i : i + 76] for i in range(0, len(raw), 76)]) + b"\r\n"


# Header lines that are the same in every message of a kind, written once.
_ONE_CLICK = ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
_CONSTANT_HEADERS = {_ONE_CLICK: b"%s: %s\r\n" % tuple(v.encode() for v in _ONE_CLICK)}


def _own_address(setting: str, value: str) -> tuple[str, str]:
    """A sender address from our settings, as (display name, ASCII address): an internationalised
    domain in its ASCII form, as in From, the envelope and every Message-ID."""
    check_header_value(setting, value)
    parsed = getaddresses([value])
    if len(parsed) != 1:
        raise InvalidRecipient(f"{setting} must be one address, e.g. 'Acme <news@acme.example>'")
    [(name, address)] = parsed
    if "@" not in address:  # our own setting: any domain (even .localhost in dev) is the operator's call
        raise InvalidRecipient(f"{setting} {value!r} has no address")
    address = smtp_address(address)
    if needs_smtputf8(address):  # every message would need a relay with SMTPUTF8
        raise InvalidRecipient(f"{setting} {value!r} must have an ASCII local part")
    return name, address


_MAILTO_SAFE = "!$'()*+,;-._~"  # kept as they are in a mailto local part (RFC 6068 qchar)


def reply_to_address(setting: str, value: str) -> str:
    """A Reply-To as the header writes it: one address, checked as the sender is, an internationalised
    domain in its ASCII form, a name RFC 2047 encoded when it needs to be."""
    return formataddr(_own_address(setting, value), charset="utf-8")


def unsubscribe_mailto(setting: str, value: str) -> str:
    """The ``mailto:`` URI (RFC 6068) of the mailbox that takes unsubscribe requests by email, from our
    settings: one address alone (a mailto carries no display name), checked as the sender is, an
    internationalised domain in its ASCII form."""
    name, address = _own_address(setting, value)
    if name or "<" in value or ":" in value:
        raise InvalidRecipient(f"{setting} must be an address alone, e.g. unsubscribe@acme.example")
    try:
        address = checked_address(address)
    except InvalidRecipient as exc:
        raise InvalidRecipient(f"{setting}: {exc}") from exc
    local, _, domain = address.rpartition("@")
    # a local part's "%", "?", "&", "=", "#" or a quoted one's space would end or change the URI
    return f"mailto:{quote(local, safe=_MAILTO_SAFE)}@{domain}"


@lru_cache(maxsize=256)  # a broadcast writes one template's header for every message
def _reply_to_line(value: str) -> bytes:
    return _header("Reply-To", reply_to_address("reply_to", value))


class Composer:
    """Builds messages from one sender; the parts that never change are prepared once."""

    def __init__(self, mail_from: str, reply_to: str | None = None):
        name, address = _own_address("mail_from", mail_from)
        self.envelope_from = address
        self.domain = address.rpartition("@")[2]
        self._from = _header("From", formataddr((name, address), charset="utf-8"))
        # Replies go to a mailbox someone reads while the sender stays a no-reply address.
        self._reply_to = _header("Reply-To", reply_to_address("mail_reply_to", reply_to)) if reply_to else b""

    def build(
        self,
        *,
        to: str,
        subject: str,
        html: str,
        text: str,
        message_id: str,
        headers: dict[str, str] | None = None,
        reply_to: str | None = None,
    ) -> bytes:
        """The message as bytes. ``to`` must already be checked (``checked_address``); ``reply_to``, a
        template's own, replaces the one set for every message."""
        boundary = "=_" + message_id.strip("<>").partition("@")[0][:32]
        out = [
            self._from,
            _reply_to_line(reply_to) if reply_to else self._reply_to,
            _to_header(to),
            _header("Subject", subject, text=True),
            _date_header(),
            _header("Message-ID", message_id),
            b"MIME-Version: 1.0\r\n",
        ]
        for name, value in (headers or {}).items():
            out.append(
                _CONSTANT_HEADERS.get((name, value))
                or (_uri_list_header(name, value) if name in _URI_LISTS else _header(name, value))
            )
        out.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode())
        sep = f"--{boundary}\r\n".encode()
        part = b"Content-Transfer-Encoding: base64\r\n\r\n"
        out += [
            sep,
            b'Content-Type: text/plain; charset="utf-8"\r\n',
            part,
            _b64(text),
            sep,
            b'Content-Type: text/html; charset="utf-8"\r\n',
            part,
            _b64(html),
            f"--{boundary}--\r\n".encode(),
        ]
        return b"".join(out)


def message_id_for(idempotency_key: str, domain: str) -> str:
    """A Message-ID that is the same for every attempt of one logical send."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"
