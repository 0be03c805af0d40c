"""Local time: birthdays at 09:00 in each customer's own timezone; quiet hours and the frequency cap
defer a send (never drop it unless told to), and the deferred email arrives once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update

from domain.customers.models import Customer
from domain.db import transaction
from domain.email import service as email
from domain.journeys import service as journeys
from domain.journeys.models import Enrollment
from runtime import anniversaries
from tests.conftest import wait_for
from tests.workflows.harness import engine


async def _async(value):
    return value


BIRTHDAY = {
    "nodes": [
        {
            "id": "start",
            "type": "entry",
            "trigger": "date_trait",
            "trait": "birthday",
            "at": "09:00",
            "next": "greet",
        },
        {"id": "greet", "type": "send_email", "template_id": "birthday", "next": "done"},
        {"id": "done", "type": "exit"},
    ]
}


async def test_birthday_greeting_at_nine_local_in_two_timezones(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("birthday", "Happy birthday, {{ traits.name }}!")
        await e.journey("birthday", BIRTHDAY)
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
        born = tomorrow.replace(year=1990).isoformat()
        tokyo = await e.customer("aiko", birthday=born, timezone="Asia/Tokyo")
        new_york = await e.customer("nora", birthday=born, timezone="America/New_York")
        await e.customer("nobody")  # no birthday trait: never enrolled

        started = await anniversaries.enroll_due(e.client, e.sessions, task_queue=e.task_queue)
        again = await anniversaries.enroll_due(e.client, e.sessions, task_queue=e.task_queue)
        assert (started, again) == (2, 0)

        for customer_id, zone in ((tokyo, "Asia/Tokyo"), (new_york, "America/New_York")):
            handle = e.handle("birthday", customer_id, str(tomorrow.year))
            result = await e.result(handle)
            assert result.path == ["greet", "done"]
            [greet, _] = await handle.query("path", result_type=list)
            sent_local = datetime.fromisoformat(greet["entered_at"]).astimezone(ZoneInfo(zone))
            assert (sent_local.date(), sent_local.hour, sent_local.minute) == (tomorrow, 9, 0)
        assert sorted(m["subject"] for m in e.mailbox()) == ["Happy birthday, Aiko!", "Happy birthday, Nora!"]


async def test_each_birthday_is_greeted_once_whichever_way_the_customer_moves_around_new_year(
    env, sessions, settings
):
    """1 January at 09:00 is 19:00 UTC on 31 December at UTC+14 and 20:00 UTC on 1 January at UTC-11.
    Kiri moves west on the eve, after the sweep enrolled her: one greeting, not two. Sam moves east
    during the year: the next birthday (in the same UTC year as the last) is still greeted."""
    async with engine(env, sessions, settings) as e:
        await e.template("birthday", "Happy birthday, {{ traits.name }}!")
        await e.journey("birthday", BIRTHDAY)
        year = datetime.now(UTC).year + 1
        kiri = await e.customer("kiri", birthday="1990-01-01", timezone="Pacific/Kiritimati")
        sam = await e.customer("sam", birthday="1990-01-01", timezone="Pacific/Pago_Pago")

        async def sweep(*when: int) -> int:
            now = datetime(*when, 12, 0, tzinfo=UTC)
            return await anniversaries.enroll_due(e.client, e.sessions, task_queue=e.task_queue, now=now)

        async def move(customer_id: int, zone: str) -> None:
            async with transaction(e.sessions) as session:
                (await session.get(Customer, customer_id)).timezone = zone

        await sweep(year, 12, 30)  # Kiri's birthday is due in 31 hours, Sam's in 56
        await move(kiri, "Pacific/Pago_Pago")
        await sweep(year, 12, 31)  # Sam's is due; Kiri's, now 32 hours ahead, is the one enrolled
        await move(sam, "Pacific/Kiritimati")
        await sweep(year + 1, 12, 30)  # Sam's next birthday, 31 hours ahead

        for enrollment in await e.enrollments("birthday"):
            await e.result(e.client.get_workflow_handle(enrollment.workflow_id))
        assert sorted(m["subject"] for m in e.mailbox()) == [
            "Happy birthday, Kiri!",
            "Happy birthday, Sam!",
            "Happy birthday, Sam!",
        ]
        years = sorted(
            (x.customer_id, x.workflow_id.rsplit("/", 1)[1]) for x in await e.enrollments("birthday")
        )
        assert years == sorted([(kiri, str(year + 1)), (sam, str(year + 1)), (sam, str(year + 2))])


async def test_a_birthday_enrolled_before_the_upgrade_is_not_enrolled_again(env, sessions, settings):
    """The sweep before the upgrade keyed Kiri's 1 January birthday (19:00 UTC on 31 December at UTC+14)
    by that UTC year; the sweep after it, keying by her own year, still finds that enrollment."""
    async with engine(env, sessions, settings) as e:
        await e.template("birthday", "Happy birthday, {{ traits.name }}!")
        await e.journey("birthday", BIRTHDAY)
        year = datetime.now(UTC).year + 1
        kiri = await e.customer("kiri", birthday="1990-01-01", timezone="Pacific/Kiritimati")
        now = datetime(year, 12, 30, 12, 0, tzinfo=UTC)
        moment = datetime(year, 12, 31, 19, 0, tzinfo=UTC)
        async with transaction(e.sessions) as session:
            [version] = await journeys.date_trait_versions(session)
        # As the old sweep did: the moment's UTC year as key, recorded when that sweep ran.
        assert await anniversaries._start(e.client, e.sessions, version, kiri, moment, year, e.task_queue)
        async with transaction(e.sessions) as session:
            await session.execute(update(Enrollment).values(entered_at=now))

        again = await anniversaries.enroll_due(e.client, e.sessions, task_queue=e.task_queue, now=now)

        assert again == 0
        for enrollment in await e.enrollments("birthday"):
            await e.result(e.client.get_workflow_handle(enrollment.workflow_id))
        assert [m["subject"] for m in e.mailbox()] == ["Happy birthday, Kiri!"]


def _one_send(rules: dict) -> dict:
    return {
        "nodes": [
            {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"},
            {"id": "hello", "type": "send_email", "template_id": "hello", "next": "done"},
            {"id": "done", "type": "exit"},
        ],
        "rules": rules,
    }


def _quiet_around(now: datetime, zone: str) -> tuple[str, str]:
    """Quiet hours that started an hour ago and end in two hours, in ``zone``."""
    local = now.astimezone(ZoneInfo(zone))
    return (local - timedelta(hours=1)).strftime("%H:%M"), (local + timedelta(hours=2)).strftime("%H:%M")


async def test_quiet_hours_defer_the_send_to_their_end_in_the_customer_timezone(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("hello", "Hello {{ traits.name }}")
        start, end = _quiet_around(datetime.now(UTC), "Asia/Kolkata")
        await e.journey("welcome", _one_send({"quiet_hours": {"start": start, "end": end}}))
        ravi = await e.customer("ravi", timezone="Asia/Kolkata")
        await e.track("ravi", "Signed Up")
        handle = e.handle("welcome", ravi)

        result = await e.result(handle)

        [hello, _] = await handle.query("path", result_type=list)
        sent_local = datetime.fromisoformat(hello["left_at"]).astimezone(ZoneInfo("Asia/Kolkata"))
        assert sent_local.strftime("%H:%M") == end
        assert result.path == ["hello", "done"]
        assert [m["subject"] for m in e.mailbox()] == ["Hello Ravi"]


async def test_quiet_hours_may_drop_instead_when_the_journey_says_so(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("hello", "Hello {{ traits.name }}")
        start, end = _quiet_around(datetime.now(UTC), "UTC")
        await e.journey(
            "welcome", _one_send({"quiet_hours": {"start": start, "end": end, "on_limit": "drop"}})
        )
        ravi = await e.customer("ravi")
        await e.track("ravi", "Signed Up")

        result = await e.result(e.handle("welcome", ravi))

        assert result.path == ["hello", "done"]
        assert e.mailbox() == []


async def test_frequency_cap_counts_other_journeys_and_defers_until_the_window_frees(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("hello", "Hello {{ traits.name }}")
        await e.template("promo", "A promo for {{ traits.name }}")
        await e.journey(
            "promo",
            {
                "nodes": [
                    {
                        "id": "start",
                        "type": "entry",
                        "event": "Browsed",
                        "reentry": "always",
                        "next": "promo",
                    },
                    {"id": "promo", "type": "send_email", "template_id": "promo", "next": "done"},
                    {"id": "done", "type": "exit"},
                ]
            },
        )
        await e.journey("welcome", _one_send({"frequency_cap": {"max": 2, "window": "1d"}}))
        mia = await e.customer("mia")
        # Two marketing emails from another journey fill the cap of 2 a day.
        await e.track("mia", "Browsed")
        await e.track("mia", "Browsed")
        # Poll the mailbox rather than awaiting results: with nothing left to run, the test server
        # would skip its clock far ahead.
        await wait_for(lambda: _async(len(e.mailbox()) == 2))
        async with transaction(e.sessions) as session:
            first_promo = min(m.created_at for m in await email.list_messages(session, customer_id=mia))

        await e.track("mia", "Signed Up")
        handle = e.handle("welcome", mia)
        result = await e.result(handle)

        [hello, _] = await handle.query("path", result_type=list)
        deferred_until = datetime.fromisoformat(hello["left_at"])
        assert deferred_until >= first_promo + timedelta(days=1)
        assert deferred_until < first_promo + timedelta(days=1, minutes=5)
        assert result.path == ["hello", "done"]
        subjects = [m["subject"] for m in e.mailbox()]
        assert sorted(subjects) == ["A promo for Mia", "A promo for Mia", "Hello Mia"]


async def test_send_rate_spreads_a_crowd_over_slots_and_drops_nobody(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("hello", "Hello {{ traits.name }}")
        await e.journey("welcome", _one_send({"send_rate": {"max": 2, "per": "minute"}}))
        crowd = [await e.customer(name) for name in ("ann", "bob", "cyd", "dan", "eve")]
        for name in ("ann", "bob", "cyd", "dan", "eve"):
            await e.track(name, "Signed Up")

        sent_at = []
        for customer_id in crowd:
            handle = e.handle("welcome", customer_id)
            assert (await e.result(handle)).path == ["hello", "done"]
            [hello, _] = await handle.query("path", result_type=list)
            sent_at.append(datetime.fromisoformat(hello["left_at"]))

        first = min(sent_at)
        assert sorted(round((t - first).total_seconds() / 60) for t in sent_at) == [0, 0, 1, 1, 2]
        subjects = sorted(m["subject"] for m in e.mailbox())
        assert subjects == ["Hello Ann", "Hello Bob", "Hello Cyd", "Hello Dan", "Hello Eve"]


async def test_the_frequency_cap_neither_holds_nor_counts_a_transactional_email(env, sessions, settings):
    """The cap is on marketing email: a receipt is not deferred because a promo filled it (Bob), and a
    promo is not deferred because a receipt went out (Mia)."""
    from domain.email.schemas import TemplateIn

    async with engine(env, sessions, settings) as e:
        await e.template("promo", "A promo for {{ traits.name }}")
        await e.template("upsell", "More for {{ traits.name }}")
        async with transaction(e.sessions) as session:
            receipt = TemplateIn(
                id="receipt",
                name="Receipt",
                category="transactional",
                subject="Your receipt, {{ traits.name }}",
                html="<p>Paid</p>",
            )
            await email.create_template(session, receipt)
        await e.journey(
            "browse",
            {
                "nodes": [
                    {"id": "start", "type": "entry", "event": "Browsed", "next": "promo"},
                    {"id": "promo", "type": "send_email", "template_id": "promo", "next": "done"},
                    {"id": "done", "type": "exit"},
                ]
            },
        )
        await e.journey(
            "order",
            {
                "nodes": [
                    {"id": "start", "type": "entry", "event": "Order Completed", "next": "receipt"},
                    {"id": "receipt", "type": "send_email", "template_id": "receipt", "next": "upsell"},
                    {"id": "upsell", "type": "send_email", "template_id": "upsell", "next": "done"},
                    {"id": "done", "type": "exit"},
                ],
                "rules": {"frequency_cap": {"max": 1, "window": "1d"}},
            },
        )
        mia, bob = await e.customer("mia"), await e.customer("bob")
        await e.track("bob", "Browsed")  # one promo fills Bob's cap of 1 a day
        await wait_for(lambda: _async(len(e.mailbox()) == 1))
        async with transaction(e.sessions) as session:
            [promo] = await email.list_messages(session, customer_id=bob)
        minute = timedelta(minutes=1)

        async def order(user_id: str, customer_id: int) -> tuple[datetime, datetime]:
            await e.track(user_id, "Order Completed")
            handle = e.handle("order", customer_id)
            assert (await e.result(handle)).path == ["receipt", "upsell", "done"]
            steps = await handle.query("path", result_type=list)
            return tuple(datetime.fromisoformat(s["left_at"]) for s in steps[:2])

        receipt_sent, upsell_sent = await order("mia", mia)
        assert upsell_sent - receipt_sent < minute  # the receipt did not use up Mia's cap
        receipt_sent, upsell_sent = await order("bob", bob)
        assert receipt_sent - promo.created_at < minute  # at once, not when the promo leaves the window
        assert (
            promo.created_at + timedelta(days=1)
            <= upsell_sent
            < promo.created_at + timedelta(days=1) + minute
        )
        assert sorted(m["subject"] for m in e.mailbox()) == [
            "A promo for Bob",
            "More for Bob",
            "More for Mia",
            "Your receipt, Bob",
            "Your receipt, Mia",
        ]


async def test_a_journey_email_shows_a_customer_without_a_zone_the_journeys_default_zone(
    env, sessions, settings
):
    # the zone the journey plans their waits in is the one their emails' dates and times are written in
    async with engine(env, sessions, settings) as e:
        await e.template("hello", 'Webinar at {{ properties.starts | datetime("yyyy-MM-dd HH:mm") }}')
        await e.journey("welcome", _one_send({"default_timezone": "Europe/Berlin"}))
        zoneless = await e.customer("zoe")
        nora = await e.customer("nora", timezone="America/New_York")
        for user_id in ("zoe", "nora"):
            await e.track(user_id, "Signed Up", starts="2030-06-01T22:30:00+00:00")

        for customer_id in (zoneless, nora):
            assert (await e.result(e.handle("welcome", customer_id))).path == ["hello", "done"]

        subjects = {m["to"]: m["subject"] for m in e.mailbox()}
        assert subjects == {
            "zoe@example.com": "Webinar at 2030-06-02 00:30",
            "nora@example.com": "Webinar at 2030-06-01 18:30",
        }
