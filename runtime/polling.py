"""The loop every background worker task runs: the event router, the case dispatcher, the loyalty
earner and the segment refresher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def poll_until_stopped(
    step: Callable[[], Awaitable[bool]], stop: asyncio.Event, poll_seconds: float, what: str
) -> None:
    """Run ``step`` until ``stop`` is set: again at once while it reports more work, otherwise after
    ``poll_seconds`` (or as soon as ``stop`` is set). A failing pass is logged and retried after the pause;
    every step is idempotent, so a repeated pass changes nothing it already did."""
    while not stop.is_set():
        try:
            more = await step()
        except Exception:
            log.exception("%s failed; retrying", what)
            more = False
        if not more:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_seconds)
