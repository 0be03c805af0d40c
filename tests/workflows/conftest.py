from __future__ import annotations

import pytest

from tests.temporal_env import local, time_skipping
from tests.workflows.harness import engine_settings


@pytest.fixture
async def env():
    environment = await time_skipping()
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
async def dev_server():
    """The real dev server, for what the time-skipping test server cannot do (delete workflows)."""
    environment = await local()
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
def settings(database_url, tmp_path):
    return engine_settings(database_url, tmp_path)
