"""``journeys router`` whose workflow starts stop after the first few: the test kills it there.

``python -m tests.runtime.stalling_router N MARKER``: the first N starts go through; when they have
all returned, MARKER is created and every later start waits forever. The batch is then claimed, N of
its workflows started, the rest not, nothing recorded or dequeued, whenever the kill lands.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import runtime.event_router as event_router
from runtime import cli


def main() -> int:
    allowed, marker = int(sys.argv[1]), Path(sys.argv[2])
    start = event_router.start_enrollment
    calls = done = 0

    async def stalling_start(*args, **kwargs):
        nonlocal calls, done
        calls += 1
        if calls > allowed:
            await asyncio.Event().wait()  # never set
        started = await start(*args, **kwargs)
        done += 1
        if done == allowed:
            marker.touch()
        return started

    event_router.start_enrollment = stalling_start
    return cli.main(["router"])


if __name__ == "__main__":
    sys.exit(main())
