"""The database engine the end-to-end benchmarks give the engine under test."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import create_engine


def bench_engine(url: str) -> AsyncEngine:
    """On SQLite a single pooled connection, so writers queue in the process instead of polling
    SQLite's lock; on PostgreSQL the product's own pool."""
    if url.startswith("sqlite"):
        return create_engine(url, pool_size=1, max_overflow=0, pool_timeout=120)
    return create_engine(url)
