"""Building blocks for case tests: customers, teams and agents made through the real services."""

from __future__ import annotations

from typing import Any

from domain.cases import service as cases
from domain.cases.schemas import AgentIn, TeamIn
from domain.customers.models import Customer
from domain.db import transaction


async def make_customer(sessions, user_id: str, **traits: Any) -> int:
    async with transaction(sessions) as session:
        customer = Customer(user_id=user_id, email=f"{user_id}@example.com", traits=traits)
        session.add(customer)
        await session.flush()
        return customer.id


async def make_team(
    sessions, team_id: str, *, supervisor: str | None = None, auto_assign: bool = False
) -> None:
    async with transaction(sessions) as session:
        await cases.create_team(
            session,
            TeamIn(id=team_id, name=team_id.title(), supervisor_team=supervisor, auto_assign=auto_assign),
        )


async def make_agent(sessions, name: str, *teams: str, cap: int = 10, available: bool = True) -> dict:
    """The agent's id and ready-to-use request headers."""
    async with transaction(sessions) as session:
        created = await cases.create_agent(
            session, AgentIn(name=name, teams=list(teams), max_open_cases=cap, available=available)
        )
    return {"id": created.id, "headers": {"Authorization": f"Bearer {created.api_key}"}}


async def open_case(
    sessions, customer_id: int, team: str, reason: str = "order failed twice", *, now=None, **kw
) -> int:
    async with transaction(sessions) as session:
        case, _ = await cases.open_case(
            session, cases.OpenCase(customer_id=customer_id, reason=reason, team=team, **kw), now=now
        )
        return case.id
