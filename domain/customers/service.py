"""Customer profiles: resolve who an event is about, merge traits."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers import repository
from domain.customers.models import Customer


async def resolve(
    session: AsyncSession, *, user_id: str | None, anonymous_id: str | None, seen_at: datetime
) -> Customer:
    """The customer an event belongs to, created on first sight.

    A known ``userId`` wins; an anonymous profile seen with a ``userId`` for the first time becomes
    that known customer.
    """
    found = await repository.find_by_ids(session, user_id, anonymous_id)
    by_user = next((c for c in found if user_id is not None and c.user_id == user_id), None)
    by_anon = next((c for c in found if anonymous_id is not None and c.anonymous_id == anonymous_id), None)
    customer = by_user or by_anon
    if customer is None:
        customer = await repository.add(
            session,
            Customer(
                user_id=user_id,
                anonymous_id=anonymous_id,
                traits={},
                first_seen_at=seen_at,
                last_seen_at=seen_at,
            ),
        )
    elif customer.user_id is None and user_id is not None:
        customer.user_id = user_id
    customer.first_seen_at = min(customer.first_seen_at, seen_at)
    customer.last_seen_at = max(customer.last_seen_at, seen_at)
    return customer


def merge_traits(customer: Customer, traits: dict[str, Any], context: dict[str, Any]) -> None:
    """Fold new traits into the profile; keep a normalised email, an IANA timezone and the locale."""
    if traits:
        customer.traits = {**(customer.traits or {}), **traits}
    email = traits.get("email")
    if isinstance(email, str):
        normalised = normalise_email(email)
        if normalised:
            customer.email = normalised
    timezone = traits.get("timezone") or context.get("timezone")
    if isinstance(timezone, str) and is_timezone(timezone):
        customer.timezone = timezone
    locale = traits.get("locale") or context.get("locale")
    if isinstance(locale, str) and 0 < len(locale) <= 35:
        customer.locale = locale


def normalise_email(value: str) -> str | None:
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def is_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


async def get_profile(session: AsyncSession, customer_id: int) -> dict[str, Any] | None:
    """The customer as templates and activities see it: plain data, no ORM row."""
    customer = await repository.get(session, customer_id)
    if customer is None:
        return None
    return {
        "id": customer.id,
        "user_id": customer.user_id,
        "email": customer.email,
        "traits": dict(customer.traits or {}),
        "timezone": customer.timezone,
        "locale": customer.locale,
    }
