"""How fast agents can pull cases with `next`, racing each other.

Ours: `domain.cases.service.claim_next` (cap check, atomic claim, agent bookkeeping, a note and an
outbox row for the SLA clock), one transaction per claim. Baseline: the bare claim statement alone
(SQLAlchemy Core, conditional UPDATE ... RETURNING, FOR UPDATE SKIP LOCKED on PostgreSQL), one
transaction per claim. Both run with the same number of concurrent agents on the same database.

    .venv/bin/python bench/case_claims.py --quick [--backend sqlite|postgresql]

The last line printed is one JSON object; `ratio` = our claims per second / the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from sqlalchemy import select, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch_database import scratch_database
from domain.cases import service as cases
from domain.cases.models import Case
from domain.cases.schemas import AgentIn, TeamIn
from domain.customers.models import Customer
from domain.db import create_engine, session_factory, transaction, utcnow
from runtime.migrate import upgrade_async


async def _setup(sessions, n_cases: int, n_agents: int) -> list[cases.Actor]:
    async with transaction(sessions) as session:
        await cases.create_team(session, TeamIn(id="care", name="Care"))
        customer = Customer(user_id="bench", traits={})
        session.add(customer)
        await session.flush()
        actors = []
        for i in range(n_agents):
            agent = await cases.create_agent(
                session, AgentIn(name=f"agent {i}", teams=["care"], max_open_cases=1000)
            )
            actors.append(cases.Actor(agent.id, ["care"]))
        for i in range(n_cases):
            await cases.open_case(
                session, cases.OpenCase(customer_id=customer.id, reason=f"case {i}", team="care")
            )
    return actors


async def _reset(sessions) -> None:
    async with transaction(sessions) as session:
        await session.execute(update(Case).values(status="open", assignee_id=None))


async def _race(worker, actors) -> tuple[float, int]:
    start = time.perf_counter()
    counts = await asyncio.gather(*(worker(a) for a in actors))
    return time.perf_counter() - start, sum(counts)


async def _ours(sessions, actors) -> tuple[float, int]:
    async def agent(actor):
        n = 0
        while True:
            async with transaction(sessions) as session:
                got = await cases.claim_next(session, actor)
            if got.case is None:
                return n
            n += 1

    return await _race(agent, actors)


async def _baseline(sessions, actors) -> tuple[float, int]:
    async def agent(actor):
        n = 0
        while True:
            async with transaction(sessions) as session:
                candidate = (
                    select(Case.id)
                    .where(Case.team_id == "care", Case.status == "open", Case.assignee_id.is_(None))
                    .order_by(Case.due_at, Case.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                    .scalar_subquery()
                )
                got = await session.scalar(
                    update(Case)
                    .where(Case.id == candidate, Case.status == "open", Case.assignee_id.is_(None))
                    .values(status="assigned", assignee_id=actor.agent_id, updated_at=utcnow())
                    .returning(Case.id)
                    .execution_options(synchronize_session=False)
                )
            if got is None:
                return n
            n += 1

    return await _race(agent, actors)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run, well under a minute")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    n_cases, n_agents = (300, 20) if args.quick else (3000, 20)

    async with scratch_database(args.backend, "bench_case_claims") as url:
        await upgrade_async(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        actors = await _setup(sessions, n_cases, n_agents)
        base_s, base_n = await _baseline(sessions, actors)
        await _reset(sessions)
        ours_s, ours_n = await _ours(sessions, actors)
        await engine.dispose()
        assert base_n == ours_n == n_cases, (base_n, ours_n)
    ours_rate, base_rate = ours_n / ours_s, base_n / base_s
    print(f"{args.backend}: {n_cases} cases, {n_agents} concurrent agents")
    print(f"  ours      {ours_rate:8.0f} claims/s")
    print(f"  baseline  {base_rate:8.0f} claims/s (bare conditional UPDATE)")
    print(
        json.dumps(
            {
                "bench": "case_claims",
                "backend": args.backend,
                "cases": n_cases,
                "agents": n_agents,
                "ours_claims_per_s": round(ours_rate, 1),
                "baseline_claims_per_s": round(base_rate, 1),
                "ratio": round(ours_rate / base_rate, 3),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
