from __future__ import annotations

import pytest

from tests.temporal_env import time_skipping
from tests.workflows.harness import engine_settings


@pytest.fixture
async def env():
    environment = await time_skipping()
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
def settings(database_url, tmp_path):
    return engine_settings(database_url, tmp_path)
