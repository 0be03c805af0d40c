"""call_webhook: POST a journey step's payload to a customer-chosen URL, signed like Stripe's webhooks.

Header ``Journeys-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``; receivers
recompute it with the shared secret and reject old timestamps. ``Idempotency-Key`` is the same on every
retry of one step, so a receiver can drop duplicates. Retries with backoff come from the activity's
retry policy; a 4xx other than 408/429 and a refused address are not retried.

The receiver's name is resolved once, every address it gives must be public, and the call connects to
that checked address (a second lookup could answer with an internal one: DNS rebinding). Redirects are
not followed, the answer's body is never read, and the whole call has one deadline.

The environment's proxy variables (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) and
``.netrc`` are never read: customer data goes through a proxy only when ``JOURNEYS_WEBHOOK_PROXY``
names one. Through a proxy the call names the receiver's host (the proxy resolves it and, for https,
the certificate is checked against it), after the same check that its addresses are public.

Nor are ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``: an https receiver's certificate must chain to a public CA
(certifi's) or to one of ``JOURNEYS_WEBHOOK_CA_BUNDLE``, for receivers behind a private CA.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import CALL_WEBHOOK, WEBHOOK_REJECTED, WebhookRequest, WebhookResult
from activities.enrollment import calling_workflow_id, refuse_if_superseded
from config.settings import Settings
from domain.db import transaction

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
    # As bytes: compare_digest refuses a str with non-ASCII characters, which a header may carry.
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), header.encode())


@dataclass(frozen=True)
class Target:
    """Where one call goes: ``url`` names the checked address itself (never the host name again, which
    the name's DNS could by now answer with an internal address), ``host`` the Host header and TLS
    server name the receiver expects."""

    url: str
    host: str | None = None
    tls_name: str | None = None


class Refused(ValueError):
    """This URL may not be called."""


# IPv6 addresses that carry an IPv4 one, which a NAT64 gateway or 6to4 relay on the way delivers to:
# ``is_global`` judges only the IPv6 address (64:ff9b::7f00:1 is "global", yet reaches 127.0.0.1).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local use only, never public
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # the deprecated ::a.b.c.d


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether the address, and any IPv4 address it carries (mapped, compatible, NAT64, 6to4), is public."""
    if not address.is_global:
        return False
    if address.version == 4:
        return True
    if address in _LOCAL_NAT64:
        return False
    carried = address.ipv4_mapped or address.sixtofour
    if carried is None and (address in _NAT64 or address in _IPV4_COMPATIBLE):
        carried = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return carried is None or carried.is_global


async def checked_target(url: str, *, allow_private: bool) -> Target:
    """The address to call for ``url``, resolved once and checked to be public; ``Refused`` if it is not
    http(s) or the name resolves to any non-public address (loopback, private, link-local such as the
    cloud metadata service 169.254.169.254, or an IPv6 address carrying one of those)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("url must be http(s) with a host")
    try:
        port = parts.port
    except ValueError:
        raise Refused("url has an invalid port") from None
    if allow_private:
        return Target(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise Refused(f"cannot resolve {parts.hostname}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].partition("%")[0]) for info in infos]
    for address in addresses:
        if not _public(address):
            raise Refused(f"{parts.hostname} resolves to a non-public address {address}")
    if not addresses:
        raise Refused(f"cannot resolve {parts.hostname}")
    address = addresses[0]
    userinfo, _, host = parts.netloc.rpartition("@")
    pinned = f"[{address}]" if address.version == 6 else str(address)
    netloc = (userinfo + "@" if userinfo else "") + pinned + (f":{port}" if port is not None else "")
    return Target(
        urlunsplit(parts._replace(netloc=netloc)),
        host=host,
        tls_name=parts.hostname if parts.scheme == "https" else None,
    )


def tls_verification(settings: Settings) -> ssl.SSLContext | bool:
    """What webhook calls check certificates against: certifi's public CAs (``True``, httpx's default
    with the environment left out), plus those of ``JOURNEYS_WEBHOOK_CA_BUNDLE`` when it is set."""
    if settings.webhook_ca_bundle is None:
        return True
    context = httpx.create_ssl_context(trust_env=False)
    context.load_verify_locations(cafile=settings.webhook_ca_bundle)
    return context


def _untrusted_certificate(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class WebhookActivities:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession] | None = None):
        self._settings = settings
        self._verify = tls_verification(settings)  # loaded once, not for every call
        self._sessions = sessions  # None: no database to ask whether the enrollment still runs

    @activity.defn(name=CALL_WEBHOOK)
    async def call_webhook(self, req: WebhookRequest) -> WebhookResult:
        if self._sessions is not None and req.customer_id is not None:
            # Before the call (which no transaction can hold open): a merge that ends the enrollment
            # once the receiver has been called is too late for this step, as for any step under way.
            async with transaction(self._sessions) as session:
                await refuse_if_superseded(session, calling_workflow_id(), req.customer_id)
        s = self._settings
        seconds = s.webhook_timeout_seconds
        try:
            # One deadline for the whole call: httpx's timeouts are per read, and a receiver sending a
            # byte a second would otherwise hold the worker for as long as it likes.
            async with asyncio.timeout(seconds):
                status = await self._call(req)
        except Refused as exc:
            raise ApplicationError(str(exc), type=WEBHOOK_REJECTED, non_retryable=True) from None
        except TimeoutError:
            raise ApplicationError(f"webhook did not answer within {seconds:g}s; will retry") from None
        except httpx.HTTPError as exc:
            if (untrusted := _untrusted_certificate(exc)) is not None:
                raise ApplicationError(
                    f"webhook receiver's TLS certificate is not trusted ({untrusted.verify_message}); "
                    "if a private CA signed it, name that CA in JOURNEYS_WEBHOOK_CA_BUNDLE; will retry"
                ) from None
            raise ApplicationError(f"webhook could not be called ({exc!r}); will retry") from None
        if status >= 500 or status in (408, 429):
            raise ApplicationError(f"webhook answered {status}; will retry")
        if status >= 400:
            raise ApplicationError(
                f"webhook refused the call with {status}", type=WEBHOOK_REJECTED, non_retryable=True
            )
        return WebhookResult(status_code=status)

    async def _call(self, req: WebhookRequest) -> int:
        s = self._settings
        target = await checked_target(req.url, allow_private=s.webhook_allow_private_addresses)
        if s.webhook_proxy is not None:
            # The proxy connects, so it resolves the name; the TLS tunnel it opens is checked against
            # the host name, which a pinned address would not match.
            target = Target(req.url)
        body = json.dumps(req.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Journeys-Webhook/1",
            "Idempotency-Key": req.idempotency_key,
            SIGNATURE_HEADER: sign(s.webhook_signing_secret.get_secret_value(), int(time.time()), body),
        }
        if target.host is not None:
            headers["Host"] = target.host
        extensions = {"sni_hostname": target.tls_name} if target.tls_name else None
        async with (
            httpx.AsyncClient(
                timeout=s.webhook_timeout_seconds,
                follow_redirects=False,
                # never the environment's proxies (set for something else, they would silently route
                # customer data through it) nor its .netrc credentials: only the configured proxy
                trust_env=False,
                proxy=s.webhook_proxy,
                verify=self._verify,
            ) as client,
            client.stream("POST", target.url, content=body, headers=headers, extensions=extensions) as answer,
        ):
            # Only the status matters: the body is never read, so a receiver cannot make us hold one.
            return answer.status_code
