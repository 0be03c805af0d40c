"""Dev-mode helpers; mounted only when JOURNEYS_DEV_MODE is on."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request

from runtime.smtp_capture import read_mailbox

router = APIRouter(prefix="/dev", tags=["dev"])


@router.get("/mailbox", summary="What the built-in SMTP capture server received, newest first")
async def mailbox(request: Request, limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    return await asyncio.to_thread(read_mailbox, request.app.state.settings.mailbox_dir, limit)
