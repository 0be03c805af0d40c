"""Ingestion answers any Segment call a fuzzer makes with a 200 that stored it or a 400 that stored
nothing, never a 500: times in every spelling and UTC offset (PostgreSQL reads them from the calls'
JSON and refused offsets beyond 15:59), integers beyond 64 bits, NUL text, deep nesting, ids of any
type. Hypothesis draws the calls from a fixed seed, so a run is the same every time."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import httpx
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from api.app import create_app
from domain.events.models import Event

EXAMPLES = 150

# Any offset Python takes, in whole minutes as clients write them (PostgreSQL takes up to 15:59).
_offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
_times = st.datetimes(
    min_value=datetime(1899, 12, 30), max_value=datetime(2200, 1, 2), timezones=st.none() | _offsets
).map(datetime.isoformat)
_odd_times = st.sampled_from(
    ["2024-01-01", "2024-01-01 10:00:00Z", "2024-02-30T00:00:00Z", "2024-01-01T00:00:00+2400", "1704067200"]
)
TIMES = st.one_of(_times, _times, _times, st.none(), _odd_times, st.integers(-(10**12), 10**12))
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
# Usable ids weigh double, so many calls get as far as the database.
_known = st.sampled_from(["ada", "bob", "7"])
IDS = st.one_of(
    _known,
    _known,
    st.text(max_size=6),
    st.integers(-(2**70), 2**70),
    st.none(),
)

CALLS = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "identify", "page", "alias"]),
        "userId": IDS,
        "event": st.sampled_from(["Signed Up", "Order Completed"]) | st.text(max_size=6),
        "previousId": IDS,
    },
    optional={
        "anonymousId": IDS,
        "properties": JSON,
        "traits": JSON,
        "context": st.fixed_dictionaries({}, optional={"timezone": st.text(max_size=12), "traits": JSON}),
        "timestamp": TIMES,
        "sentAt": TIMES,
    },
)
REQUESTS = st.tuples(st.lists(CALLS, min_size=1, max_size=3), TIMES, st.booleans())


def _fuzz(settings_, write_key: str) -> tuple[list[str], dict[int, int]]:
    """Runs in a thread with an event loop of its own (Hypothesis drives a synchronous test); the
    app is made in that loop. Returns the problems found, each with the request that caused it, and
    how many answers of each status there were."""
    loop = asyncio.new_event_loop()
    app = create_app(settings_)
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://test"
    )
    problems: list[str] = []
    statuses: dict[int, int] = {}

    async def events() -> int:
        async with app.state.sessions() as session:
            return await session.scalar(select(func.count()).select_from(Event))

    async def send(calls: list[dict], sent_at, as_batch: bool) -> None:
        if as_batch or len(calls) > 1:
            path, body = "/v1/batch", {"batch": calls, **({"sentAt": sent_at} if sent_at is not None else {})}
        else:
            path, body = f"/v1/{calls[0]['type']}", calls[0]
        before = await events()
        response = await client.post(path, json=body, auth=(write_key, ""))
        stored = await events() - before
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code == 200 and stored != len(calls):
            problems.append(f"200 storing {stored} of {len(calls)}: {path} {body}")
        elif response.status_code == 400 and (stored or "field" not in response.text):
            problems.append(f"400 storing {stored} or naming no field: {path} {body} {response.text}")
        elif response.status_code not in (200, 400):
            problems.append(f"{response.status_code}: {path} {body} {response.text[:200]}")

    @seed(20261201)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(REQUESTS)
    def never_a_500(request):
        loop.run_until_complete(send(*request))

    try:
        never_a_500()
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()
    return problems, statuses


async def test_fuzzed_calls_are_stored_whole_or_refused_whole(settings, sessions, write_key):
    result: dict = {}

    def target():
        try:
            result["problems"], result["statuses"] = _fuzz(settings, write_key)
        except BaseException as exc:  # re-raised in the test's own thread
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    await asyncio.to_thread(thread.join)
    if "error" in result:
        raise result["error"]
    assert not result["problems"], "\n".join(result["problems"][:10])
    # Enough calls were stored for the fuzzing to reach the database, not only the validation. The
    # draws are the same run to run, but not in every suite: after other tests the same seed drew 29
    # usable requests of 150 where alone it drew 49, so the bound leaves room below both.
    assert result["statuses"].get(200, 0) >= EXAMPLES // 10, result["statuses"]
