"""Date-trait journeys (birthdays, sign-up anniversaries): enroll customers shortly before the day.

A sweep pages through customers and starts one enrollment per customer per year, a day or two ahead;
the workflow itself waits until the local time on the day in the customer's timezone, so the sweep's
own timing does not matter. Ids carry the year and Temporal refuses a duplicate start, so running the
sweep twice (or from two workers) enrolls once. A Temporal Schedule runs it (AnniversarySweepWorkflow,
see runtime/anniversary_schedule.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.contracts import EventRef
from domain.db import transaction, utcnow
from domain.journeys import service as journeys
from domain.journeys import timing
from runtime.journey_start import record_started, start_enrollment, started_row

LOOKAHEAD = timedelta(hours=48)
# Earlier releases' sweep keyed an enrollment by its moment's UTC year, one off the local year near New
# Year (1 January at UTC+14 is 31 December UTC). An enrollment under that key entered in the look-ahead
# before this moment (a zone move shifts it by a day at most) is this birthday's, made by that sweep just
# before the upgrade; last year's, under the same key, was entered a year before. Once every enrollment
# made before the upgrade has passed its day, this check finds nothing more.
OLD_KEY_WINDOW = LOOKAHEAD + timedelta(days=1)
PAGE = 1000


async def enroll_due(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    *,
    task_queue: str,
    now: datetime | None = None,
) -> int:
    """Start enrollments for anniversaries falling within the look-ahead; returns how many started."""
    now = now or utcnow()
    async with transaction(sessions) as session:
        versions = await journeys.date_trait_versions(session)
    started = 0
    for version in versions:
        entry = next(n for n in version.definition["nodes"] if n["type"] == "entry")
        default_tz = (version.definition.get("rules") or {}).get("default_timezone", "UTC")
        after_id = 0
        while True:
            async with transaction(sessions) as session:
                page = await journeys.customer_page(session, after_id, PAGE)
            if not page:
                break
            after_id = page[-1][0]
            for customer_id, traits, tz_name in page:
                day = timing.parse_date(traits.get(entry["trait"]))
                if day is None:
                    continue
                tz = timing.zone(tz_name, default_tz)
                moment = timing.next_anniversary(now, tz, day, entry["at"])
                if moment - now <= LOOKAHEAD and await _start(
                    client, sessions, version, customer_id, moment, moment.astimezone(tz).year, task_queue
                ):
                    started += 1
    return started


async def _start(
    client, sessions, version, customer_id: int, moment: datetime, year: int, task_queue: str
) -> bool:
    """``year``: the anniversary's own, on the customer's calendar. The instant's UTC year would give one
    key to two birthdays (1 January at UTC-11, then at UTC+14 after a move: both fall in one UTC year,
    so the second was never sent) and two keys to one (a move on the eve sent that birthday twice)."""
    key = str(year)
    workflow_id = journeys.workflow_id_for(version.journey_id, customer_id, key)
    old_key = str(moment.year)  # moment is in UTC
    old_id = journeys.workflow_id_for(version.journey_id, customer_id, old_key)
    async with transaction(sessions) as session:
        if not await journeys.may_enroll(session, version.journey_id, customer_id, key, "once"):
            return False
        if old_key != key and await journeys.enrolled_as_any_profile(
            session, {old_id: (version.journey_id, customer_id, old_key)}, moment - OLD_KEY_WINDOW
        ):
            return False
    ref = EventRef(id=0, name="$anniversary", properties={"year": year}, timestamp=moment.isoformat())
    if not await start_enrollment(client, version, customer_id, workflow_id, ref, task_queue=task_queue):
        return False
    return await record_started(client, sessions, [started_row(version, workflow_id, customer_id)]) == 1
