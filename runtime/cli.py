"""The ``journeys`` command: dev, api, worker, migrate, keys."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from config.logging import configure_logging
from config.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="journeys", description="Durable customer journeys on Temporal.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dev", help="start Temporal, SMTP capture, worker and API on embedded defaults")
    sub.add_parser("api", help="serve the HTTP API")
    sub.add_parser("worker", help="run the Temporal worker and the event router")
    sub.add_parser("router", help="run only the event router (more routers may run side by side)")
    sub.add_parser("migrate", help="upgrade the database schema to the latest version")
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key and print its secret (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=["admin", "marketer", "agent"], help="for a management key")
    kind = create.add_mutually_exclusive_group()
    kind.add_argument("--write", action="store_true", help="an ingestion write key for one source")
    kind.add_argument(
        "--inbound", action="store_true", help="an inbound-mail provider's key (unsubscribe by email)"
    )
    keys.add_parser("list", help="list keys (never their secrets)")
    args = parser.parse_args(argv)

    try:
        settings = _settings(args.command)
    except ValueError as exc:
        print(f"journeys: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)

    if args.command == "dev":
        from runtime import dev

        asyncio.run(dev.run(settings))
    elif args.command == "api":
        import uvicorn

        from api.app import serving_app

        uvicorn.run(serving_app(settings), host=settings.api_host, port=settings.api_port)
    elif args.command == "worker":
        asyncio.run(_worker(settings))
    elif args.command == "router":
        asyncio.run(_router(settings))
    elif args.command == "migrate":
        from runtime.migrate import upgrade

        upgrade(settings.resolved_database_url)
    elif args.command == "keys":
        return asyncio.run(_keys(settings, args))
    return 0


# Commands that only reach the database: they sign no link and no webhook, so the secrets that the
# API and the worker must have outside dev mode are not asked of them (a dev user runs `journeys keys
# create` beside `journeys dev` with no secret set; a deploy migrates before the secrets matter).
DATABASE_ONLY = frozenset({"migrate", "keys"})


def _settings(command: str) -> Settings:
    # For the database-only commands dev_mode lifts the secret checks and nothing else: they read the
    # database URL and the log level, and create no dev key (only `journeys dev` does).
    return Settings(dev_mode=True) if command == "dev" or command in DATABASE_ONLY else Settings()


async def _worker(settings: Settings) -> None:
    import signal

    from domain.db import create_engine, session_factory
    from runtime import temporal
    from runtime.worker import run_worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    engine = create_engine(settings.resolved_database_url)
    try:
        client = await temporal.connect(settings)
        await run_worker(client, settings, session_factory(engine), stop)
    finally:
        await engine.dispose()


async def _router(settings: Settings) -> None:
    import signal

    from domain.db import create_engine, session_factory
    from runtime import temporal
    from runtime.event_router import routers

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    engine = create_engine(settings.resolved_database_url)
    try:
        lanes = routers(await temporal.connect(settings), session_factory(engine), settings)
        await asyncio.gather(*(router.run(stop) for router in lanes))
    finally:
        await engine.dispose()


async def _keys(settings: Settings, args) -> int:
    from domain.auth import service as auth
    from domain.auth.schemas import KeyCreate, KeyKind
    from domain.db import create_engine, session_factory, transaction
    from domain.errors import DomainError

    engine = create_engine(settings.resolved_database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            if args.keys_command == "list":
                for key in await auth.list_keys(session):
                    print(json.dumps(key.model_dump(mode="json")))
                return 0
            kind = KeyKind.write if args.write else KeyKind.inbound if args.inbound else KeyKind.management
            spec = KeyCreate(name=args.name, kind=kind, role=args.role)
            created = await auth.create_key(session, spec)
            print(json.dumps(created.model_dump(mode="json"), indent=2))
            return 0
    except DomainError as exc:
        print(f"journeys: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
