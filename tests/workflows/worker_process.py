"""A worker in its own process, so the exactly-once test can kill it outright (SIGKILL) and restart it.

python -m tests.workflows.worker_process <temporal address> <task queue> <database url> <smtp port>
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from config.settings import Settings
from domain.db import create_engine, session_factory
from runtime.worker import WORKFLOWS, activities


async def main(address: str, task_queue: str, database_url: str, smtp_port: int) -> None:
    settings = Settings(
        dev_mode=True, data_dir=Path(tempfile.mkdtemp()), database_url=database_url, smtp_port=smtp_port
    )
    engine = create_engine(database_url)
    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities(settings, session_factory(engine)),
    )
    print("ready", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
