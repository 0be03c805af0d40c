"""The forms an address takes on the suppression list.

An entry names its address in plain text until the person it belonged to is erased; then it keeps
only ``sha256:<hex>`` of the address, which names no one but still recognises the address when it
comes back (a new profile, a new suppression), so a bounced or complained address is never mailed
again. Digests are of the address as ingestion stores it (``domain.events.schemas.normalise_email``),
which is also how the suppression list stores it.

The send-time check (every send and broadcast), the preference API and segment conditions on
subscription state read both forms. The conditions run over every customer, so they do not hash each
address: ``customers.email_sha256`` keeps (the first 16 bytes of) the digest of the customer's address,
written whenever the address is (migration 0033), and each evaluation first looks up by it the few
customers at an address with a digest entry.
"""

from __future__ import annotations

from domain.db import sha256_hex

HASHED = "sha256:"
# The digest entries (a partial index of the list holds them, migration 0033); written out, not bound,
# since the planners use a partial index only for its own predicate.
DIGEST_ENTRIES = f"substr(address, 1, {len(HASHED)}) = '{HASHED}'"
# A stronger reason replaces a weaker one when an address is suppressed again.
RANK = {"unsubscribed": 0, "complained": 1, "bounced": 2}


def hashed(address: str) -> str:
    return HASHED + sha256_hex(address)


def stored_digest(entry: str) -> bytes | None:
    """What ``customers.email_sha256`` holds for the address of a digest entry (None: malformed)."""
    try:
        return bytes.fromhex(entry.removeprefix(HASHED))[:16] or None
    except ValueError:
        return None


def forms(address: str) -> list[str]:
    """The stored forms that suppress ``address``."""
    return [address, hashed(address)]


def stronger(reason: str | None, other: str | None) -> str | None:
    """The stronger of two reasons (the first when they are as strong); None is no reason."""
    if reason is None or (other is not None and RANK.get(other, 0) > RANK.get(reason, 0)):
        return other
    return reason
