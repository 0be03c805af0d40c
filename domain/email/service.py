"""Templates (versioned) and the delivery ledger."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers import service as customers
from domain.db import utcnow
from domain.email import rendering, repository
from domain.email.models import Message, Template, TemplateVersion
from domain.email.schemas import (
    MessageOut,
    PreviewIn,
    TemplateContent,
    TemplateIn,
    TemplateOut,
    TemplateUpdate,
)
from domain.errors import Conflict, InvalidInput, NotFound
from domain.subscriptions import service as subscriptions

# The address a preview renders for when it has none of its own (sample data, or a customer without
# one): a preview is never sent.
PREVIEW_ADDRESS = "preview@example.com"


def _out(template: Template, version: TemplateVersion) -> TemplateOut:
    return TemplateOut(
        id=template.id,
        name=template.name,
        version=version.version,
        subject=version.subject,
        html=version.html,
        text=version.text,
        layout=version.layout,
        category=version.category,
        subscription_group=version.subscription_group,
        reply_to=version.reply_to,
        variants=version.variants or {},
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


async def _check(session: AsyncSession, spec: TemplateContent) -> None:
    rendering.check_template({"subject": spec.subject, "html": spec.html, "text": spec.text})
    for locale, variant in spec.variants.items():
        parts = {"subject": variant.subject, "html": variant.html, "text": variant.text}
        rendering.check_template(parts, prefix=f"variants.{locale}.")
    if spec.subscription_group is not None:
        await subscriptions.require_group(session, spec.subscription_group, "subscription_group")
    if spec.category == subscriptions.TRANSACTIONAL and spec.subscription_group is not None:
        raise InvalidInput(
            {"field": "subscription_group", "problem": "transactional email belongs to no subscription group"}
        )


def _version(template_id: str, number: int, spec: TemplateContent) -> TemplateVersion:
    return TemplateVersion(
        template_id=template_id,
        version=number,
        subject=spec.subject,
        html=spec.html,
        text=spec.text,
        layout=spec.layout,
        category=spec.category,
        subscription_group=spec.subscription_group,
        reply_to=spec.reply_to,
        variants={k: v.model_dump(exclude_none=True) for k, v in spec.variants.items()},
    )


async def create_template(session: AsyncSession, spec: TemplateIn) -> TemplateOut:
    await _check(session, spec)
    template_id = spec.id or uuid.uuid4().hex[:12]
    if await repository.get_template(session, template_id) is not None:
        raise Conflict({"field": "id", "problem": f"a template with id {template_id!r} exists"})
    template = Template(id=template_id, name=spec.name, current_version=1)
    version = _version(template_id, 1, spec)
    await repository.add(session, template)
    await repository.add(session, version)
    return _out(template, version)


async def update_template(session: AsyncSession, template_id: str, spec: TemplateUpdate) -> TemplateOut:
    """Saves a new version; journeys already published keep the version they pinned."""
    await _check(session, spec)
    template = await _template(session, template_id, lock=True)
    template.current_version += 1
    if spec.name:
        template.name = spec.name
    version = _version(template_id, template.current_version, spec)
    await repository.add(session, version)
    return _out(template, version)


async def get_template(session: AsyncSession, template_id: str) -> TemplateOut:
    template = await _template(session, template_id)
    return _out(template, await repository.get_version(session, template_id, template.current_version))


async def list_templates(session: AsyncSession) -> list[TemplateOut]:
    out = []
    for template in await repository.list_templates(session):
        version = await repository.get_version(session, template.id, template.current_version)
        out.append(_out(template, version))
    return out


async def current_versions(session: AsyncSession, template_ids: set[str]) -> dict[str, int]:
    """The current version of each named template; missing ids are absent from the result."""
    out = {}
    for template_id in template_ids:
        template = await repository.get_template(session, template_id)
        if template is not None:
            out[template_id] = template.current_version
    return out


async def is_transactional(session: AsyncSession, template_id: str | None) -> bool:
    """Whether the template (its current version) is transactional; False for none or a deleted one."""
    template = await repository.get_template(session, template_id) if template_id else None
    if template is None:
        return False
    version = await repository.get_version(session, template_id, template.current_version)
    return version.category == subscriptions.TRANSACTIONAL


async def get_version(session: AsyncSession, template_id: str, version: int) -> TemplateVersion:
    found = await repository.get_version(session, template_id, version)
    if found is None:
        raise NotFound(f"template {template_id!r} has no version {version}")
    return found


async def _template(session: AsyncSession, template_id: str, *, lock: bool = False) -> Template:
    template = await repository.get_template(session, template_id, lock=lock)
    if template is None:
        raise NotFound(f"no template {template_id!r}")
    return template


class PreviewFor(NamedTuple):
    version: TemplateVersion
    customer: dict[str, Any]
    group_name: str | None  # shown in the footer, as the real send shows it
    group_id: str | None  # the node's override, or the template's: what the unsubscribe links name


async def preview_subject(session: AsyncSession, template_id: str, spec: PreviewIn) -> PreviewFor:
    """The version, the customer (stored, or sample data) and the group a preview or test send renders
    with: the template's, or the one a journey node sends it with (``spec.subscription_group``)."""
    template = await _template(session, template_id)
    version = await get_version(session, template_id, spec.version or template.current_version)
    if spec.customer_id is not None:
        customer = await customers.get_profile(session, spec.customer_id)
        if customer is None:
            raise InvalidInput({"field": "customer_id", "problem": f"no customer {spec.customer_id}"})
    else:
        customer = {
            "id": 0,
            "user_id": None,
            "email": spec.email or PREVIEW_ADDRESS,
            "traits": spec.traits,
            "timezone": spec.timezone,
            "locale": spec.locale,
        }
    group_id = spec.subscription_group or version.subscription_group
    if spec.subscription_group is not None:  # as a journey node overriding the template's group
        await subscriptions.require_group(session, spec.subscription_group, "subscription_group")
    return PreviewFor(version, customer, await subscriptions.group_name(session, group_id), group_id)


async def claim_message(session: AsyncSession, *, idempotency_key: str, message_id: str, **fields) -> Message:
    return await repository.claim_message(
        session,
        {
            "idempotency_key": idempotency_key,
            "message_id": message_id,
            "status": "pending",
            "attempts": 0,
            "meta": {},
            "created_at": utcnow(),
            **fields,
        },
    )


def mark(message: Message, status: str, *, error: str | None = None, at: datetime | None = None) -> None:
    message.status = status
    message.error = error
    if status == "sent":
        message.sent_at = at or utcnow()


async def list_messages(
    session: AsyncSession,
    *,
    customer_id: int | None = None,
    journey_id: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[MessageOut]:
    rows = await repository.list_messages(
        session, customer_id=customer_id, journey_id=journey_id, limit=limit, before_id=before_id
    )
    return [MessageOut.model_validate(r, from_attributes=True) for r in rows]


async def finish_message(session: AsyncSession, idempotency_key: str, status: str, error: str | None) -> None:
    """Record a send's outcome in one statement (no read first: a send finishes its own claimed row)."""
    await repository.set_message_status(
        session, idempotency_key, status=status, error=error, sent_at=utcnow() if status == "sent" else None
    )
    if status == "sent":
        # Imported here, as subscriptions.service does: the segments area builds on this one (its
        # rules read our messages), so this is a dependency back up.
        from domain.segments import service as segments

        await segments.note_sends(session, [idempotency_key])


# -- recording a send after its claim -----------------------------------------------------------------
# A send's claim commits before the message goes out, so an erasure can commit while it is on its way
# (it cannot be recalled). What is recorded afterwards must not bring back what the erasure removed:
# the rules below, for journey sends and broadcasts alike.


async def erased_since_claim(session: AsyncSession, keys: list[str]) -> set[str]:
    """Of these claimed ledger keys, those whose row an erasure has anonymised since: record on them
    no subject, no error text (it may quote the address) and no plain address."""
    return await repository.anonymised(session, keys)


def erased_error(error: str | None) -> str | None:
    """What an erased person's ledger row keeps of an error: that there was one, as the erasure leaves it."""
    return None if error is None else customers.ERASED_ERROR


async def record_bounces(session: AsyncSession, bounced: list[tuple[str, str, str]]) -> set[str]:
    """(ledger key, address, why) of messages the server refused for good: the addresses are
    suppressed. One whose row an erasure anonymised meanwhile stays suppressed only as a digest, as
    the erasure leaves every address of the person. Take the addresses' locks first
    (``subscriptions.hold_addresses``) when the transaction also writes the ledger rows. Returns the
    keys erased since their claim (``erased_since_claim``)."""
    gone = await erased_since_claim(session, [key for key, _, _ in bounced])
    for _, address, why in bounced:
        await subscriptions.suppress_address(session, address, "bounced", why)
    if forget := sorted({address for key, address, _ in bounced if key in gone}):
        await subscriptions.forget_addresses(session, forget)
    return gone


async def record_refusal(
    session: AsyncSession, key: str, address: str, error: str, *, bounced: bool
) -> str | None:
    """A journey send the server refused for good (``bounced``: for this mailbox, which is then
    suppressed). Returns the error as recorded: the erased-error marker when an erasure anonymised the
    row since its claim, so the caller passes nothing of the person on either."""
    # The address before the ledger row, in the order an erasure locks them: an erasure in flight
    # either committed before this reads the row, or waits and then anonymises what this wrote.
    await subscriptions.hold_addresses(session, [address])
    if bounced:
        gone = await record_bounces(session, [(key, address, error[:500])])
    else:
        gone = await erased_since_claim(session, [key])
    if key in gone:
        error = erased_error(error)
    await finish_message(session, key, "failed", error)
    return error
