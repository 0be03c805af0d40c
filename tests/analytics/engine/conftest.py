"""These tests run the journey engine: the workflow tests' time-skipping server and engine settings."""

from tests.workflows.conftest import env, settings  # noqa: F401
