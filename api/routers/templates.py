from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from activities.smtp import PermanentFailure, TemporaryFailure, UnsupportedRecipient
from api.deps import Marketer, Session
from api.mail import factory, mailer
from domain.email import service as email
from domain.email.delivery import prepare_or_422
from domain.email.schemas import (
    PreviewIn,
    PreviewOut,
    TemplateIn,
    TemplateOut,
    TemplateUpdate,
    TestSendIn,
    TestSendOut,
)
from domain.errors import DomainError, InvalidInput

router = APIRouter(prefix="/api/templates", tags=["templates"])


@router.post("", status_code=201, response_model=TemplateOut, summary="Create a template (version 1)")
async def create_template(spec: TemplateIn, session: Session, _: Marketer) -> TemplateOut:
    return await email.create_template(session, spec)


@router.get("", response_model=list[TemplateOut])
async def list_templates(session: Session, _: Marketer) -> list[TemplateOut]:
    return await email.list_templates(session)


@router.get("/{template_id}", response_model=TemplateOut)
async def get_template(template_id: str, session: Session, _: Marketer) -> TemplateOut:
    return await email.get_template(session, template_id)


@router.put("/{template_id}", response_model=TemplateOut, summary="Save a new version")
async def update_template(
    template_id: str, spec: TemplateUpdate, session: Session, _: Marketer
) -> TemplateOut:
    return await email.update_template(session, template_id, spec)


@router.post("/{template_id}/preview", response_model=PreviewOut, summary="Render for a customer or sample")
async def preview(template_id: str, spec: PreviewIn, session: Session, _: Marketer, request: Request):
    version, customer, group_name, group_id = await email.preview_subject(session, template_id, spec)
    prepared = prepare_or_422(
        factory(request),
        version,
        customer,
        idempotency_key=f"preview/{uuid.uuid4()}",
        event=spec.event,
        group_id=group_id,
        group_name=group_name,
        # a stored customer without an address still has content to look at: nothing is sent
        to=None if customer.get("email") else email.PREVIEW_ADDRESS,
        track=False,
    )
    r = prepared.rendered
    return PreviewOut(subject=r.subject, html=r.html, text=r.text)


class SmtpUnavailable(DomainError):
    status_code = 503
    code = "smtp_unavailable"


@router.post("/{template_id}/test", response_model=TestSendOut, summary="Send a test email to an address")
async def test_send(template_id: str, spec: TestSendIn, session: Session, _: Marketer, request: Request):
    version, customer, group_name, group_id = await email.preview_subject(session, template_id, spec)
    key = f"test/{uuid.uuid4()}"
    made = factory(request)
    prepared = prepare_or_422(
        made,
        version,
        customer,
        idempotency_key=key,
        event=spec.event,
        group_id=group_id,
        group_name=group_name,
        to=spec.to,
        track=False,
    )
    try:
        await mailer(request).send(made.envelope_from, prepared.to, prepared.data)
    except UnsupportedRecipient as exc:
        raise InvalidInput({"field": "to", "problem": str(exc)}, code="invalid_recipient") from exc
    except (PermanentFailure, TemporaryFailure) as exc:
        raise SmtpUnavailable(f"the SMTP server did not take the test email: {exc}") from exc
    return TestSendOut(message_id=made.message_id(key), to=prepared.to)
