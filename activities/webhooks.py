"""call_webhook: POST a journey step's payload to a customer-chosen URL, signed like Stripe's webhooks.

Header ``Journeys-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``; receivers
recompute it with the shared secret and reject old timestamps. ``Idempotency-Key`` is the same on every
retry of one step, so a receiver can drop duplicates. Retries with backoff come from the activity's
retry policy; a 4xx other than 408/429 and a refused address are not retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import time
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import CALL_WEBHOOK, WEBHOOK_REJECTED, WebhookRequest, WebhookResult
from config.settings import Settings

SIGNATURE_HEADER = "Journeys-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """What a receiver does: recompute the signature and refuse stale timestamps."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


async def refused_address(url: str, *, allow_private: bool) -> str | None:
    """Why this URL may not be called (not http(s), or it resolves to a private address), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "url must be http(s) with a host"
    if allow_private:
        return None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443)
    except OSError as exc:
        return f"cannot resolve {parts.hostname}: {exc}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            return f"{parts.hostname} resolves to a non-public address {address}"
    return None


class WebhookActivities:
    def __init__(self, settings: Settings):
        self._settings = settings

    @activity.defn(name=CALL_WEBHOOK)
    async def call_webhook(self, req: WebhookRequest) -> WebhookResult:
        s = self._settings
        problem = await refused_address(req.url, allow_private=s.webhook_allow_private_addresses)
        if problem:
            raise ApplicationError(problem, type=WEBHOOK_REJECTED, non_retryable=True)
        body = json.dumps(req.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Journeys-Webhook/1",
            "Idempotency-Key": req.idempotency_key,
            SIGNATURE_HEADER: sign(s.webhook_signing_secret.get_secret_value(), int(time.time()), body),
        }
        async with httpx.AsyncClient(timeout=s.webhook_timeout_seconds, follow_redirects=False) as client:
            response = await client.post(req.url, content=body, headers=headers)
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise ApplicationError(f"webhook answered {response.status_code}; will retry")
        if response.status_code >= 400:
            raise ApplicationError(
                f"webhook refused the call with {response.status_code}",
                type=WEBHOOK_REJECTED,
                non_retryable=True,
            )
        return WebhookResult(status_code=response.status_code)
