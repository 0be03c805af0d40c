"""docker-compose.yml and the README stay in step with Settings (no Docker engine runs here)."""

from __future__ import annotations

import re

import yaml

from config.settings import Settings
from tests.conftest import ROOT

SETTINGS_VARS = {f"JOURNEYS_{name.upper()}" for name in Settings.model_fields}
JOURNEYS_COMMANDS = {"api", "worker", "migrate", "dev"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_journeys_variable_in_compose_is_a_setting():
    for name, service in compose()["services"].items():
        for var in service.get("environment") or {}:
            if var.startswith("JOURNEYS_"):
                assert var in SETTINGS_VARS, f"service {name} sets {var}, which Settings does not know"


def test_every_service_named_exists_and_ours_run_real_commands():
    services = compose()["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on") or []:
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        assert "image" in service or "build" in service, name
    for name in ("api", "worker", "migrate"):
        command = services[name]["command"]
        assert command[0] == "journeys" and command[1] in JOURNEYS_COMMANDS
    assert {"postgres", "temporal", "temporal-ui", "mailpit", "api", "worker"} <= set(services)


def test_compose_points_our_services_at_its_own_components():
    services = compose()["services"]
    env = services["worker"]["environment"]
    assert env["JOURNEYS_TEMPORAL_ADDRESS"].split(":")[0] in services
    assert env["JOURNEYS_SMTP_HOST"] in services
    host = re.search(r"@([^:/]+)", env["JOURNEYS_DATABASE_URL"]).group(1)
    assert host in services


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = sorted(v for v in SETTINGS_VARS if f"`{v}`" not in readme)
    assert not missing, f"README configuration table lacks {missing}"
