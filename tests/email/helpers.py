from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

from sqlalchemy import text
from temporalio.testing import ActivityEnvironment

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.email import service as email
from domain.email.schemas import TemplateIn
from domain.subscriptions import service as subscriptions
from domain.subscriptions.schemas import GroupIn

# The mailbox List-Unsubscribe's mailto names in the tests marked ``unsubscribe_mailbox``.
UNSUBSCRIBE_MAILBOX = "unsubscribe@acme.example"


async def add_customers(sessions, n: int, *, prefix: str = "c") -> list[int]:
    """``n`` customers ``{prefix}{i}@example.com`` with first_name ``Name{i}``, in id order."""
    now = utcnow()
    async with transaction(sessions) as session:
        rows = [
            Customer(
                user_id=f"{prefix}{i}",
                email=f"{prefix}{i}@example.com",
                traits={"first_name": f"Name{i}"},
                first_seen_at=now,
                last_seen_at=now,
            )
            for i in range(n)
        ]
        session.add_all(rows)
        await session.flush()
        return [r.id for r in rows]


async def add_customer(
    sessions, *, email: str, traits: dict, locale: str | None = None, timezone: str | None = None
) -> int:
    now = utcnow()
    async with transaction(sessions) as session:
        row = Customer(
            user_id=email,
            email=email,
            traits=traits,
            locale=locale,
            timezone=timezone,
            first_seen_at=now,
            last_seen_at=now,
        )
        session.add(row)
        await session.flush()
        return row.id


async def add_template(sessions, **spec) -> str:
    spec = {
        "id": "welcome",
        "name": "Welcome",
        "subject": "Hi {{ traits.first_name }}",
        "html": "<p>Hello {{ traits.first_name }}</p>",
    } | spec
    async with transaction(sessions) as session:
        if (
            spec.get("subscription_group")
            and await subscriptions.get_group(session, spec["subscription_group"]) is None
        ):
            await subscriptions.create_group(
                session, GroupIn(id=spec["subscription_group"], name=spec["subscription_group"].title())
            )
        return (await email.create_template(session, TemplateIn(**spec))).id


async def done_or_waiting_on_a_lock(task: asyncio.Task, engine) -> bool:
    """Whether ``task`` finished, or a session of the test's PostgreSQL database waits for a lock: the
    moment a test holding a transaction open lets it commit, to see what the waiting one does next."""
    if task.done():
        return True
    async with engine.connect() as conn:
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return waiting > 0


async def run_activity(fn, *args):
    """Activities run with their Temporal context (heartbeats), as the worker runs them."""
    return await ActivityEnvironment().run(fn, *args)


async def opened_preferences(client, url: str) -> str:
    """The hidden fields of the preference page as it shows now, as a form body: what a browser that
    opened the page sends back with the boxes (saving compares the boxes with them)."""
    page = await client.get(url)
    assert page.status_code == 200, page.text
    hidden = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.text)
    return "&".join(f"{name}={quote(value)}" for name, value in hidden)
