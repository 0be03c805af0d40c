"""The one place that reads the environment. Every variable is prefixed ``JOURNEYS_``."""

from __future__ import annotations

import ipaddress
import ssl
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

import idna
from babel import Locale, UnknownLocaleError
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-insecure-secret-do-not-use-in-production"  # noqa: S105 - refused outside dev mode
# The normalised KPIs the CRM effectiveness index weighs (domain/analytics/kpis.py normalises them).
CRM_INDEX_KPIS = ("satisfaction", "retention", "growth", "conversion", "complaints", "roi")


class SmtpSecurity(StrEnum):
    none = "none"
    starttls = "starttls"
    tls = "tls"


def _http_url(value: str | None, what: str) -> SplitResult | None:
    """The parts of an http(s) URL with a host and a valid port; None when blank (not set)."""
    if value is None or not value.strip():
        return None
    parts = urlsplit(value.strip())
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// {what} with a host")
    return parts


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEYS_", env_file=None, extra="ignore")

    dev_mode: bool = Field(False, description="Embedded defaults, dev keys and the /dev endpoints.")
    data_dir: Path = Field(Path(".data"), description="Where the dev database, Temporal state and mail live.")
    log_level: str = "INFO"
    secret_key: SecretStr = Field(
        SecretStr(DEV_SECRET), description="Signs unsubscribe and tracking links; 32+ characters."
    )

    database_url: str | None = Field(None, description="SQLAlchemy async URL; default SQLite under data_dir.")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "journeys"
    temporal_tls: bool = False
    temporal_ui_port: int = Field(8233, description="Web UI of the dev server started by `journeys dev`.")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_security: SmtpSecurity = SmtpSecurity.none
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = 30.0
    mail_from: str = Field("Journeys <noreply@journeys.localhost>", description="Default sender.")
    mail_reply_to: str | None = Field(None, description="Reply-To of every email, e.g. a support mailbox.")
    mail_unsubscribe_mailto: str | None = Field(
        None, description="Mailbox for unsubscribe requests by email, a mailto in List-Unsubscribe."
    )
    # A request a mail client writes from the mailto is a few KB; this leaves room for a signature's
    # images while keeping what one request may make the API parse small.
    inbound_mail_max_bytes: int = Field(
        1_048_576, ge=1024, le=50 * 1024 * 1024, description="Largest message the unsubscribe mailbox takes."
    )
    smtp_pool_size: int = Field(16, ge=1, le=256, description="SMTP connections kept open per worker.")
    email_tracking: bool = Field(True, description="Open pixel and click redirects in sent email.")
    postal_address: str | None = Field(
        None, description="The sender's postal address, shown in every email footer (CAN-SPAM)."
    )
    default_locale: str = Field(
        "en",
        description="Language the templates' main content is written in (e.g. de-DE): dates, money and "
        "numbers in it are formatted in this locale, or the customer's when it is the same language.",
    )

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str | None = Field(None, description="Base URL customers reach (links in emails).")

    router_poll_seconds: float = Field(0.2, gt=0, description="How often the event router polls the outbox.")
    router_batch_size: int = Field(500, gt=0, le=10_000)
    router_concurrency: int = Field(32, gt=0, le=1_000, description="Temporal calls in flight per router.")
    router_segment_batch_size: int = Field(
        1_000, gt=0, le=10_000, description="Segment entries/exits the segment lane routes per pass."
    )
    router_segment_concurrency: int = Field(
        32, gt=0, le=1_000, description="Temporal calls in flight for segment entries, beside the events'."
    )
    router_lease_seconds: float = Field(
        60.0, gt=0, description="How long a router owns the outbox rows it claimed before another may."
    )

    ingest_writers: int = Field(
        4, ge=1, le=32, description="PostgreSQL connections storing ingested events at once, per API process."
    )
    purchase_event: str = Field(
        "Order Completed", min_length=1, description="Track event that counts as an order (profile facts)."
    )
    revenue_property: str = Field(
        "revenue", min_length=1, description="Property of the purchase event that adds to lifetime value."
    )

    loyalty_earn_poll_seconds: float = Field(1.0, gt=0, description="How often events are read for points.")
    loyalty_earn_batch_size: int = Field(500, gt=0, le=10_000)
    loyalty_event_gap_seconds: float = Field(
        60.0, gt=0, description="How long a missing event id holds the earner back before it is skipped."
    )
    loyalty_maintenance_every_seconds: int = Field(
        86_400, ge=60, description="Interval of the loyalty expiry and tier Temporal Schedules."
    )

    segment_refresh_poll_seconds: float = Field(
        0.5, gt=0, description="How often new events are read to refresh segment membership."
    )
    segment_refresh_batch_size: int = Field(5_000, gt=0, le=100_000)
    segment_window_edge_seconds: int = Field(
        300, ge=10, description="Schedule of the pass that moves customers across segment time windows."
    )
    customer_scores_seconds: int = Field(
        3_600, ge=60, description="Schedule of value tier and RFM recompute."
    )
    # The sweep enrolls two days ahead, so any interval up to a day still reaches every anniversary.
    anniversary_sweep_seconds: int = Field(
        3_600, ge=60, le=86_400, description="Schedule of the birthday and anniversary enrollment sweep."
    )

    broadcast_start_sweep_seconds: float = Field(
        30.0, gt=0, le=3_600, description="How often a worker starts broadcasts a stopped API left starting."
    )

    analytics_conversion_window_days: float = Field(
        7.0, gt=0, le=366, description="A journey visit converts when the goal follows within this many days."
    )
    analytics_attribution_window_days: float = Field(
        7.0,
        gt=0,
        le=366,
        description="A purchase this many days after a marketing email is attributed to it.",
    )
    analytics_cost_per_message: float = Field(0.001, ge=0, description="Cost of one marketing email (ROI).")
    analytics_active_days: int = Field(
        90, ge=1, le=3660, description="A customer is active when they purchased within this many days."
    )
    analytics_complaint_terms: list[str] = Field(
        ["complain"], min_length=1, description="A case is a complaint when its reason contains one of these."
    )
    analytics_index_weights: dict[str, float] = Field(
        dict(zip(CRM_INDEX_KPIS, (0.25, 0.25, 0.1, 0.2, 0.1, 0.1), strict=True)),
        description="Weights of the normalised KPIs in the CRM effectiveness index.",
    )
    analytics_required_traits: list[str] = Field(
        ["email", "first_name", "last_name"], min_length=1, description="Traits data completeness expects."
    )
    analytics_timeliness_days: int = Field(
        180, ge=1, le=3660, description="A profile is timely when it changed within this many days."
    )

    webhook_signing_secret: SecretStr = Field(
        SecretStr(DEV_SECRET), description="Signs outbound journey webhooks (HMAC-SHA256)."
    )
    webhook_allow_private_addresses: bool = Field(
        False, description="Let journey webhooks call loopback and private addresses (dev, tests)."
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_proxy: str | None = Field(
        None,
        description="Send journey webhooks through this HTTP proxy (http://host:port); the environment's "
        "HTTP(S)_PROXY and NO_PROXY are never used for them.",
    )
    webhook_ca_bundle: Path | None = Field(
        None,
        description="A PEM file of CA certificates journey webhooks trust besides the public ones "
        "(certifi's), for https receivers behind a private CA; SSL_CERT_FILE and SSL_CERT_DIR are "
        "never used for them.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'journeys.db').resolve()}"

    @property
    def mailbox_dir(self) -> Path:
        return self.data_dir / "mailbox"

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _public_base_url(cls, value: str | None) -> str | None:
        """The base of every link in emails: an http(s) URL with a host and nothing after its path,
        written in ASCII (an internationalised domain in IDNA), since a header such as
        List-Unsubscribe cannot carry anything else without encoding, and so breaking, its URIs."""
        if (parts := _http_url(value, "URL")) is None:
            return None
        text, port = value.strip(), parts.port
        if parts.query or parts.fragment or "?" in text or "#" in text or "@" in parts.netloc:
            raise ValueError(f"{value!r}: a base URL has no user, query or fragment; links add their own")
        host = parts.hostname
        try:
            host = host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"{value!r} has a host name that is not a valid domain ({exc})") from None
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        netloc = host if port is None else f"{host}:{port}"
        path = quote(parts.path, safe="/%:@!$&'()*+,;=-._~")
        return urlunsplit((parts.scheme, netloc, path, "", "")).rstrip("/")

    @field_validator("default_locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        # a default no formatting filter could use would silently print English: refuse it at start
        try:
            Locale.parse(value.strip().replace("_", "-"), sep="-")
        except (UnknownLocaleError, ValueError) as exc:
            raise ValueError(
                f"{value!r} is not a locale Babel knows (such as en, de-DE, pt-BR): {exc}"
            ) from None
        return value.strip()

    @field_validator("webhook_proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        return None if _http_url(value, "proxy URL") is None else value.strip()

    @field_validator("webhook_ca_bundle", mode="before")
    @classmethod
    def _no_bundle_when_blank(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("webhook_ca_bundle")
    @classmethod
    def _ca_bundle_loads(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_file():
            raise ValueError(f"{str(value)!r} is not a file (a PEM file of CA certificates)")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=value)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"{str(value)!r} holds no CA certificate that loads (PEM): {exc}") from None
        return value

    @field_validator("analytics_index_weights")
    @classmethod
    def _known_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(CRM_INDEX_KPIS))
        if unknown:
            raise ValueError(f"unknown KPIs {unknown}; the index weighs {', '.join(CRM_INDEX_KPIS)}")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("weights must be 0 or more, and at least one above 0")
        return weights

    @field_validator("analytics_required_traits")
    @classmethod
    def _trait_names(cls, traits: list[str]) -> list[str]:
        bad = [t for t in traits if not t.strip() or '"' in t]
        if bad:
            raise ValueError(f"trait names must be non-blank and free of double quotes: {bad}")
        return traits

    @model_validator(mode="after")
    def _refuse_unsafe_values_outside_dev(self) -> Settings:
        if self.dev_mode:
            return self
        problems = []
        secret = self.secret_key.get_secret_value()
        if secret == DEV_SECRET or len(secret) < 32:
            problems.append("JOURNEYS_SECRET_KEY must be set to a random value of at least 32 characters")
        webhook_secret = self.webhook_signing_secret.get_secret_value()
        if webhook_secret == DEV_SECRET or len(webhook_secret) < 32:
            problems.append(
                "JOURNEYS_WEBHOOK_SIGNING_SECRET must be a random value of at least 32 characters"
            )
        if (
            self.smtp_password
            and self.smtp_security is SmtpSecurity.none
            and not _is_loopback(self.smtp_host)
        ):
            problems.append(
                "JOURNEYS_SMTP_PASSWORD would cross the network in clear: set JOURNEYS_SMTP_SECURITY"
            )
        if problems:
            raise ValueError("unsafe configuration outside dev mode: " + "; ".join(problems))
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    return Settings()
