from __future__ import annotations

from fastapi import APIRouter

from api.deps import Marketer, Session
from domain.email import service as email
from domain.email.schemas import TemplateIn, TemplateOut, TemplateUpdate

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
