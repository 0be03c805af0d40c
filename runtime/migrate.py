"""Run Alembic migrations from code (the CLI, `journeys dev` and the test fixtures use this)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def made_on(dialect: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` for a database of this dialect: leaves out of a comparison the
    model's indexes declared for other dialects only (``Index(...).ddl_if(dialect=...)``), which
    ``create_all`` and the migrations make on those alone but autogenerate does not know of."""

    def include(obj, name, type_, reflected, compare_to) -> bool:
        only_on = getattr(obj, "_ddl_if", None) if type_ == "index" and not reflected else None
        return only_on is None or only_on.dialect in (None, dialect)

    return include


def upgrade(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")


async def upgrade_async(database_url: str) -> None:
    # Alembic's env runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(upgrade, database_url)
