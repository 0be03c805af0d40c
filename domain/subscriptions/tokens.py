"""Signed links in emails: one-click unsubscribe, the preference page, open pixel and click redirect.

A token names what it is for and whom, and carries an HMAC-SHA256 (truncated to 128 bits) under a key
derived from ``JOURNEYS_SECRET_KEY`` and the purpose, so a token for one purpose never works for another
and any change to it is refused. Unsubscribe links do not expire: mailbox providers and people use them
months later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from domain.db import stored_id


class BadToken(ValueError):
    """The token was not made by us, or was changed."""


@lru_cache(maxsize=64)  # a broadcast signs several links per message with the same few keys
def _keyed(secret: str, purpose: str) -> hmac.HMAC:
    key = hmac.new(secret.encode(), f"journeys/{purpose}".encode(), hashlib.sha256).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _mac(secret: str, purpose: str, body: str) -> bytes:
    mac = _keyed(secret, purpose).copy()  # cheaper than keying a new HMAC for every token
    mac.update(body.encode())
    return mac.digest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, purpose: str, payload: str) -> str:
    body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=")
    mac = _keyed(secret, purpose).copy()  # cheaper than keying a new HMAC for every token
    mac.update(body)
    return f"{body.decode()}.{_b64(mac.digest()[:16])}"


def verify(secret: str, purpose: str, token: str) -> str:
    body, _, mac = token.partition(".")
    if not body or not mac or len(token) > 2000:
        raise BadToken("malformed token")
    # The signature is compared as text, in the one spelling ``sign`` writes: decoding first would let
    # other spellings of the same bytes through (unused low bits of the last character, ``+``/``/``,
    # stray ``=``). The body's spelling is fixed by the MAC, which covers its text.
    if not (token.isascii() and hmac.compare_digest(mac, _b64(_mac(secret, purpose, body)))):
        raise BadToken("the link's signature does not match")
    try:
        return _unb64(body).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadToken("malformed token") from exc


# A payload that verifies but that the product never signs (another shape, a customer id no customer can
# have: not a number, beyond 64 bits) came from a leaked or a test secret: a bad link, not an error.
def fields(payload: str, sep: str, count: int) -> list[str]:
    """The ``count`` fields of a verified payload (the last may hold ``sep``)."""
    parts = payload.split(sep, count - 1)
    if len(parts) != count:
        raise BadToken("malformed token")
    return parts


def customer_id(text: str) -> int:
    """A payload's customer id, signed as ``str(id)``."""
    found = stored_id(text)
    if found is None:
        raise BadToken("malformed token")
    return found
