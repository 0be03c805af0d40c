"""A rule at the documented limits saves, previews and is kept fresh by every pass on both
databases."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.db import transaction
from domain.segments import service as segments
from domain.segments.schemas import PreviewIn
from tests.domain.test_segment_membership import _identify


async def test_birthdays_in_a_hundred_conditions_preview_at_any_hour(sessions):
    # At 23:30 UTC 303 zones are on tomorrow's date; each zone was a bound parameter per condition.
    at = datetime(2027, 3, 1, 23, 30, tzinfo=UTC)
    rule = {"any": [{"trait": f"day{i}", "op": "anniversary_today"} for i in range(100)]}
    await _identify(sessions, "ada", day42="1990-03-02", timezone="Pacific/Auckland")
    async with transaction(sessions) as session:
        preview = await segments.preview(session, PreviewIn(rule=rule), now=at)
    assert preview.count == 1
