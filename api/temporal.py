"""The API's Temporal client, connected on first use (broadcasts start and steer workflows)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from domain.errors import DomainError
from runtime import temporal


class TemporalUnavailable(DomainError):
    status_code = 503
    code = "temporal_unavailable"


async def temporal_client(request: Request) -> Client:
    state = request.app.state
    if getattr(state, "temporal", None) is None:
        try:
            state.temporal = await temporal.connect(state.settings)
        except Exception as exc:
            raise TemporalUnavailable(f"cannot reach Temporal at {state.settings.temporal_address}") from exc
    return state.temporal


TemporalClient = Annotated[Client, Depends(temporal_client)]
