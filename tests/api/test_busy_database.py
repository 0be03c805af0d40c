"""A database too busy to take the request (SQLite's single writer past its timeout, a PostgreSQL
deadlock) is a 503 that says to send it again, not a 500: nothing of the request was saved."""

import sqlite3

import httpx
import pytest
import sqlalchemy
from fastapi import FastAPI

from api import errors


def _locked_error(tmp_path) -> sqlalchemy.exc.OperationalError:
    """The error SQLAlchemy raises when another connection holds SQLite's write lock."""
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    engine = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    except sqlalchemy.exc.OperationalError as exc:
        return exc
    finally:
        holder.close()
        engine.dispose()
    pytest.fail("the second writer was not refused")


async def test_a_busy_database_is_a_503_to_retry_and_other_database_errors_stay_500(tmp_path):
    locked = _locked_error(tmp_path)
    app = FastAPI()
    errors.install(app)

    @app.post("/busy")
    async def busy():
        raise locked

    @app.post("/broken")
    async def broken():
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error"))

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/busy")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"] == "busy"
        assert (await client.post("/broken")).status_code == 500
