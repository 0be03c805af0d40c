"""The reference that names one message in its tracked links (and so in its opens and clicks)."""

from __future__ import annotations

import hashlib


def message_ref(idempotency_key: str, template_id: str | None) -> str:
    """Names one sent message in signed links: a digest of its key, and its template for segments."""
    return f"{hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]}~{template_id or ''}"
