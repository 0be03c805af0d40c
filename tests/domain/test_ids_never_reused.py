"""An id, once given, names one thing for ever, on SQLite as on PostgreSQL.

Running journeys carry customer and event ids (in their workflow ids and inputs), the merge redirects
keep merged-away customer ids, and agents' links keep case ids. A new customer that took the id of an
erased or merged-away one would receive that person's journey, or be sent to the customer it merged
into.
"""

from __future__ import annotations

from sqlalchemy import func, select

from domain.cases import service as cases
from domain.cases.models import Case
from domain.cases.schemas import TeamIn
from domain.customers import service as customers
from domain.customers.models import Customer
from domain.db import transaction
from domain.events.models import Event
from domain.events.schemas import IdentifyCall, TrackCall
from tests.domain.test_customer_merge import _profile


async def test_a_new_customer_never_takes_the_id_of_a_merged_away_visitor(sessions):
    kim = await _profile(sessions, IdentifyCall(userId="kim", messageId="m1", traits={}))
    visitor = await _profile(sessions, TrackCall(anonymousId="v-1", messageId="m2", event="Cart Viewed"))
    assert visitor > kim
    await _profile(sessions, IdentifyCall(userId="kim", anonymousId="v-1", messageId="m3", traits={}))

    lee = await _profile(sessions, IdentifyCall(userId="lee", messageId="m4", traits={}))

    assert lee > visitor
    async with sessions() as session:
        # The visitor's journeys still act for Kim, and Lee's act for Lee.
        assert await customers.current_ids(session, [visitor, lee]) == {visitor: kim, lee: lee}


async def test_nothing_an_erased_customer_had_gives_its_id_to_a_newcomer(sessions):
    async with transaction(sessions) as session:
        await cases.create_team(session, TeamIn(id="care", name="Care"))
    ada = await _profile(sessions, TrackCall(userId="ada", messageId="a1", event="Order Completed"))
    async with transaction(sessions) as session:
        case, _ = await cases.open_case(
            session, cases.OpenCase(customer_id=ada, reason="Refund", team="care")
        )
    async with sessions() as session:
        last_event = await session.scalar(select(func.max(Event.id)))
    async with transaction(sessions) as session:
        await customers.erase(session, ada, by_key_id=None, reason="asked")

    bo = await _profile(sessions, TrackCall(userId="bo", messageId="b1", event="Order Completed"))
    async with transaction(sessions) as session:
        later, _ = await cases.open_case(
            session, cases.OpenCase(customer_id=bo, reason="Refund", team="care")
        )

    async with sessions() as session:
        assert bo > ada
        assert await session.scalar(select(func.min(Event.id))) > last_event
        assert later.id > case.id
        assert await session.scalar(select(func.count()).select_from(Case)) == 1
        assert await session.scalar(select(func.count()).select_from(Customer)) == 1
