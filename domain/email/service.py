"""Templates (versioned) and the delivery ledger."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.db import utcnow
from domain.email import rendering, repository
from domain.email.models import Message, Template, TemplateVersion
from domain.email.schemas import MessageOut, TemplateIn, TemplateOut, TemplateUpdate
from domain.errors import Conflict, NotFound


def _out(template: Template, version: TemplateVersion) -> TemplateOut:
    return TemplateOut(
        id=template.id,
        name=template.name,
        version=version.version,
        subject=version.subject,
        html=version.html,
        text=version.text,
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


async def create_template(session: AsyncSession, spec: TemplateIn) -> TemplateOut:
    rendering.check_syntax({"subject": spec.subject, "html": spec.html, "text": spec.text})
    template_id = spec.id or uuid.uuid4().hex[:12]
    if await repository.get_template(session, template_id) is not None:
        raise Conflict({"field": "id", "problem": f"a template with id {template_id!r} exists"})
    template = Template(id=template_id, name=spec.name, current_version=1)
    version = TemplateVersion(
        template_id=template_id, version=1, subject=spec.subject, html=spec.html, text=spec.text
    )
    await repository.add(session, template)
    await repository.add(session, version)
    return _out(template, version)


async def update_template(session: AsyncSession, template_id: str, spec: TemplateUpdate) -> TemplateOut:
    """Saves a new version; journeys already published keep the version they pinned."""
    rendering.check_syntax({"subject": spec.subject, "html": spec.html, "text": spec.text})
    template = await _template(session, template_id)
    template.current_version += 1
    if spec.name:
        template.name = spec.name
    version = TemplateVersion(
        template_id=template_id,
        version=template.current_version,
        subject=spec.subject,
        html=spec.html,
        text=spec.text,
    )
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


async def get_version(session: AsyncSession, template_id: str, version: int) -> TemplateVersion:
    found = await repository.get_version(session, template_id, version)
    if found is None:
        raise NotFound(f"template {template_id!r} has no version {version}")
    return found


async def _template(session: AsyncSession, template_id: str) -> Template:
    template = await repository.get_template(session, template_id)
    if template is None:
        raise NotFound(f"no template {template_id!r}")
    return template


def message_id_for(idempotency_key: str, sender_domain: str) -> str:
    """A Message-ID that is the same for every attempt of one logical send."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<{digest}@{sender_domain}>"


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
    row = await repository.message_by_key(session, idempotency_key)
    if row is not None:
        mark(row, status, error=error)
