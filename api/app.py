"""The HTTP front: ``create_app(settings)``."""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api import errors, ingest_docs, pages
from api.routers import (
    analytics,
    broadcasts,
    cases,
    csat,
    customers,
    dev,
    health,
    inbound_mail,
    ingest,
    journeys,
    keys,
    loyalty,
    messages,
    segments,
    subscriptions,
    templates,
    tracking,
    unsubscribe,
)
from api.text_guard import refuse_unstorable_text
from config.settings import Settings, get_settings
from domain.db import create_engine, session_factory
from domain.events.ingestor import Ingestor

DESCRIPTION = """Durable customer journeys on Temporal.

* `/v1/*` takes events in the Segment HTTP Tracking API format, authenticated by a source's write key
  (HTTP Basic username).
* `/api/*` is the management API for marketers, agents and admins: `Authorization: Bearer <key>`.

Errors are `{"error": code, "detail": ...}`; the detail names the field and the problem. A 422 also
carries `problems`, a list of `{"field", "problem"}` whichever check refused the input, and `message`,
the first of them in words (the `Refusal` schema).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = create_engine(settings.resolved_database_url)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.ingestor = Ingestor(
            app.state.sessions, settings.resolved_database_url, writers=settings.ingest_writers
        )
        try:
            yield
        finally:
            await app.state.ingestor.close()
            await engine.dispose()

    app = FastAPI(title="Journeys", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    # A browser following a mangled link from an email gets that page's "not valid", not JSON.
    errors.install(
        app,
        link_pages={
            "/u": pages.broken_link,
            "/preferences": pages.broken_link,
            "/csat": csat.broken_link,
            "/c": pages.broken_link,  # not /o: the pixel is an image, which no browser shows as a page
        },
    )
    for module in (
        ingest,
        templates,
        journeys,
        messages,
        keys,
        health,
        cases,
        csat,
        customers,
        loyalty,
        segments,
        subscriptions,
        inbound_mail,
        unsubscribe,
        broadcasts,
        tracking,
        analytics,
    ):
        # Ingestion checks text itself (a 400 naming the event, as Segment clients expect); the inbound
        # mail endpoint reads its body itself, up to its limit, and stores none of it.
        guard = [] if module in (ingest, inbound_mail) else [Depends(refuse_unstorable_text)]
        app.include_router(module.router, dependencies=guard)
    if settings.dev_mode:
        app.include_router(dev.router)
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:  # generated once, then served from FastAPI's cache
            app.openapi_schema = errors.document(ingest_docs.document(generate()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def serving_app(settings: Settings | None = None) -> FastAPI:
    """The app as a server process runs it (``journeys api``; ``uvicorn api.app:serving_app --factory``).

    Everything made at start-up (modules, routes, schemas) lives as long as the process, so it is moved
    out of the garbage collector's sight: otherwise every full collection rescans those hundreds of
    thousands of objects, and under load that cost more than validating the events.
    """
    app = create_app(settings)
    gc.collect()
    gc.freeze()
    return app
