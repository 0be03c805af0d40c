"""The agent API: teams, agents, SLA policies and the case queue (role agent; admins manage)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AfterValidator

from api.deps import Admin, Session, get_settings, require
from config.settings import Settings
from domain.auth.schemas import Principal, Role
from domain.cases import service as cases
from domain.cases.schemas import (
    AgentCreated,
    AgentIn,
    AgentOut,
    AgentUpdate,
    CaseDetail,
    CaseIn,
    CaseOut,
    NextCase,
    NoteIn,
    NoteOut,
    Priority,
    ResolveIn,
    SlaPolicyIn,
    SlaPolicyOut,
    Status,
    TeamIn,
    TeamOut,
)
from domain.db import StoredInt, stored_id

router = APIRouter(tags=["cases"])

AgentKey = Annotated[Principal, Depends(require(Role.agent))]


async def _actor(session: Session, principal: AgentKey) -> cases.Actor:
    return await cases.actor_for(session, principal)


Actor = Annotated[cases.Actor, Depends(_actor)]


@router.post("/api/teams", status_code=201, response_model=TeamOut, summary="Create a team (admin)")
async def create_team(spec: TeamIn, session: Session, _: Admin) -> TeamOut:
    return await cases.create_team(session, spec)


@router.get("/api/teams", response_model=list[TeamOut])
async def list_teams(session: Session, _: Admin) -> list[TeamOut]:
    return await cases.list_teams(session)


@router.post(
    "/api/agents",
    status_code=201,
    response_model=AgentCreated,
    summary="Create an agent in teams, with their own API key (admin)",
)
async def create_agent(spec: AgentIn, session: Session, _: Admin) -> AgentCreated:
    return await cases.create_agent(session, spec)


@router.get("/api/agents", response_model=list[AgentOut])
async def list_agents(session: Session, _: Admin) -> list[AgentOut]:
    return await cases.list_agents(session)


@router.get("/api/agents/me", response_model=AgentOut)
async def get_me(session: Session, actor: Actor) -> AgentOut:
    return await cases.me(session, actor)


@router.patch("/api/agents/me", response_model=AgentOut, summary="Set availability or cap")
async def update_me(spec: AgentUpdate, session: Session, actor: Actor) -> AgentOut:
    return await cases.update_me(session, actor, spec)


@router.get("/api/cases/sla-policies", response_model=list[SlaPolicyOut])
async def list_policies(session: Session, _: AgentKey) -> list[SlaPolicyOut]:
    return await cases.list_policies(session)


@router.put("/api/cases/sla-policies/{priority}", response_model=SlaPolicyOut, summary="Set targets (admin)")
async def set_policy(priority: Priority, spec: SlaPolicyIn, session: Session, _: Admin) -> SlaPolicyOut:
    return await cases.set_policy(session, priority, spec)


@router.post("/api/cases", status_code=201, response_model=CaseOut, summary="Open a case by hand")
async def open_case(spec: CaseIn, session: Session, actor: Actor) -> CaseOut:
    return await cases.open_by_hand(session, actor, spec)


def _assignee(value: str | None) -> str | None:
    """'me', 'none' or an agent id that a 64-bit column can hold."""
    if value in (None, "me", "none") or stored_id(value) is not None:
        return value
    raise ValueError("use 'me', 'none' or an agent id")


@router.get(
    "/api/cases",
    response_model=list[CaseOut],
    summary="The queue, most urgent SLA first; a Link header (rel=next) names the next page",
)
async def list_cases(
    request: Request,
    response: Response,
    session: Session,
    actor: Actor,
    team: str | None = None,
    status: Annotated[list[Status] | None, Query(description="Default: open, assigned, pending")] = None,
    priority: Priority | None = None,
    assignee: Annotated[
        str | None, Query(description="'me', 'none' or an agent id"), AfterValidator(_assignee)
    ] = None,
    breached: bool | None = None,
    customer_id: StoredInt | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: Annotated[
        str | None, Query(max_length=400, description="From the previous page's Link header (rel=next)")
    ] = None,
) -> list[CaseOut]:
    page = await cases.queue(
        session,
        actor,
        cases.QueueFilter(
            team=team,
            statuses=status,
            priority=priority,
            assignee=assignee,
            breached=breached,
            customer_id=customer_id,
            limit=limit,
            cursor=cursor,
        ),
    )
    if page.next_cursor is not None:
        following = request.url.include_query_params(cursor=page.next_cursor)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return page.cases


@router.post(
    "/api/cases/next",
    response_model=NextCase,
    summary="Claim the most urgent unassigned case of your teams (atomic); case is null when none is left",
)
async def claim_next(session: Session, actor: Actor) -> NextCase:
    return await cases.claim_next(session, actor)


@router.get("/api/cases/{case_id}", response_model=CaseDetail, summary="A case with notes and context")
async def get_case(case_id: StoredInt, session: Session, actor: Actor) -> CaseDetail:
    return await cases.detail(session, actor, case_id)


@router.post("/api/cases/{case_id}/claim", response_model=CaseOut)
async def claim(case_id: StoredInt, session: Session, actor: Actor) -> CaseOut:
    return await cases.claim(session, actor, case_id)


@router.post("/api/cases/{case_id}/release", response_model=CaseOut, summary="Give it back to the queue")
async def release(case_id: StoredInt, session: Session, actor: Actor) -> CaseOut:
    return await cases.release(session, actor, case_id)


@router.post("/api/cases/{case_id}/pending", response_model=CaseOut, summary="Waiting on the customer")
async def set_pending(case_id: StoredInt, session: Session, actor: Actor) -> CaseOut:
    return await cases.set_pending(session, actor, case_id)


@router.post("/api/cases/{case_id}/notes", status_code=201, response_model=NoteOut)
async def add_note(case_id: StoredInt, spec: NoteIn, session: Session, actor: Actor) -> NoteOut:
    return await cases.add_note(session, actor, case_id, spec.body)


@router.post(
    "/api/cases/{case_id}/resolve",
    response_model=CaseOut,
    summary="Resolve with an outcome code; the waiting journey continues on it",
)
async def resolve(
    case_id: StoredInt,
    spec: ResolveIn,
    session: Session,
    actor: Actor,
    settings: Annotated[Settings, Depends(get_settings)],
) -> CaseOut:
    return await cases.resolve(session, settings, actor, case_id, spec.outcome, spec.comment)


@router.post("/api/cases/{case_id}/close", response_model=CaseOut)
async def close(case_id: StoredInt, session: Session, actor: Actor) -> CaseOut:
    return await cases.close(session, actor, case_id)
