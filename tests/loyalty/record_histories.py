"""Record LoyaltyMaintenanceWorkflow histories for the replay test.

    python -m tests.loyalty.record_histories

Runs real passes (warnings, expiry, a tier change) in the time-skipping environment against a scratch
SQLite database and writes each workflow's history to tests/loyalty/histories/.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

from temporalio.worker import Worker

from activities.loyalty import LoyaltyActivities
from domain.customers.models import Customer
from domain.db import create_engine, session_factory, transaction
from domain.loyalty import service as loyalty
from domain.loyalty.schemas import ProgramConfig
from runtime.migrate import upgrade_async
from tests.temporal_env import time_skipping
from workflows.loyalty_maintenance import EXPIRY, TIERS, LoyaltyMaintenanceInput, LoyaltyMaintenanceWorkflow

OUT = Path(__file__).parent / "histories"
QUEUE = "record-loyalty"


async def main() -> None:
    url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/record.db"
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    env = await time_skipping()
    try:
        start = await env.get_current_time()
        async with transaction(sessions) as session:
            await loyalty.put_program(
                session,
                ProgramConfig.model_validate(
                    {
                        "tiers": [{"name": "member", "threshold": 0}, {"name": "silver", "threshold": 100}],
                        "expiry_months": 12,
                    }
                ),
                start,
            )
            customer = Customer(user_id="record", traits={})
            session.add(customer)
            await session.flush()
            await loyalty.award(session, customer.id, "a", 150, "record", start)
        acts = LoyaltyActivities(sessions)
        async with Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[LoyaltyMaintenanceWorkflow],
            activities=[acts.warn_expiring, acts.expire_points, acts.reevaluate_tiers],
        ):
            for name, days, tasks in [
                ("expiry_warning", 350, [EXPIRY]),
                ("expiry_and_tier_drop", 30, [EXPIRY, TIERS]),
            ]:
                await env.sleep(timedelta(days=days))
                with env.auto_time_skipping_disabled():
                    handle = await env.client.start_workflow(
                        LoyaltyMaintenanceWorkflow.run,
                        LoyaltyMaintenanceInput(tasks=tasks),
                        id=f"loyalty/{name}",
                        task_queue=QUEUE,
                    )
                    print(name, await handle.result())
                history = await handle.fetch_history()
                (OUT / f"{name}.json").write_text(history.to_json())
    finally:
        await env.shutdown()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
