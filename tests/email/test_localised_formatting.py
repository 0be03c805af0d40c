"""Dates, times, money and numbers written for the customer: their locale and time zone, as the
README's table shows them; nulls print nothing; a value the filters cannot read fails that one message
naming the filter, the value and the line, never a 500."""

from __future__ import annotations

from decimal import Decimal

import pytest

from config.settings import Settings
from domain.email import formatting, rendering
from domain.email.delivery import MessageFactory, TemplateSpec
from tests.email.helpers import add_customer

NBSP, NNBSP = "\u00a0", "\u202f"  # CLDR's spaces: before "€" and "%", before "PM"
EVENT = {"timestamp": "2026-12-04T23:30:00+00:00", "properties": {"total": 1234.5, "discount": 0.25}}
TRAITS = {"birthday": "1990-05-17", "anniversary": "05-17"}


def _render(source: str, locale=None, timezone=None, traits=TRAITS, event=EVENT, variant=None) -> str:
    context = rendering.context_for({"traits": traits}, event)
    here = formatting.locality(locale, variant, timezone=timezone)
    return rendering.render("s", source, None, context, layout=None, locality=here).html


@pytest.mark.parametrize(
    ("locale", "zone", "expected"),
    [
        (
            "de",
            "Europe/Berlin",
            ["1.234,50" + NBSP + "€", "17. Mai 1990", "05.12.26, 00:30", "5. Dezember 2026",
             "1.234,5", "25" + NBSP + "%", "17. Mai"],
        ),
        (
            "fr",
            "Europe/Paris",
            ["1" + NNBSP + "234,50" + NBSP + "€", "17 mai 1990", "05/12/2026 00:30", "5 décembre 2026",
             "1" + NNBSP + "234,5", "25" + NBSP + "%", "17 mai"],
        ),
        (
            "en-US",
            "America/Los_Angeles",
            ["€1,234.50", "May 17, 1990", "12/4/26, 3:30" + NNBSP + "PM", "December 4, 2026",
             "1,234.5", "25%", "May 17"],
        ),
        (
            "ja",
            "Asia/Tokyo",
            ["€1,234.50", "1990年5月17日", "2026/12/05 8:30", "2026年12月5日", "1,234.5", "25%", "5月17日"],
        ),
    ],
)  # fmt: skip
def test_values_are_written_in_the_customers_locale_and_time_zone(locale, zone, expected):
    source = (
        "{{ properties.total | money('EUR') }}|{{ traits.birthday | date }}|"
        "{{ event.timestamp | datetime('short') }}|{{ event.timestamp | date }}|"
        "{{ properties.total | number }}|{{ properties.discount | percent }}|{{ traits.anniversary | date }}"
    )
    assert _render(source, locale, zone).split("|") == expected


def test_one_instant_is_a_different_day_on_either_side_of_the_date_line():
    source = "{{ event.timestamp | date('full') }} {{ event.timestamp | time }}"
    event = {"timestamp": "2026-12-04T11:00:00Z"}
    # UTC+14 and UTC-11: the same instant, a calendar day apart (not merely hours)
    assert (
        _render(source, "en-US", "Pacific/Kiritimati", event=event)
        == "Saturday, December 5, 2026 1:00" + NNBSP + "AM"
    )
    assert (
        _render(source, "en-US", "Pacific/Pago_Pago", event=event)
        == "Friday, December 4, 2026 12:00" + NNBSP + "AM"
    )
    # a birthday is a day, not an instant: the same wherever the customer is
    assert _render("{{ traits.birthday | date }}", "en-US", "Pacific/Kiritimati") == "May 17, 1990"
    assert _render("{{ traits.birthday | date }}", "en-US", "Pacific/Pago_Pago") == "May 17, 1990"


def test_without_a_zone_an_instant_is_in_utc_and_a_time_without_an_offset_is_utc():
    assert _render("{{ event.timestamp | datetime('short') }}", "de") == "04.12.26, 23:30"
    naive = {"timestamp": "2026-12-04T23:30:00"}
    assert _render("{{ event.timestamp | time }}", "de", "Asia/Tokyo", event=naive) == "08:30"


def test_inputs_may_be_numbers_numeric_text_dates_and_patterns():
    traits = {"amount": "1234.5", "count": 3, "price": Decimal("19.9"), "yen": 1500}
    source = (
        "{{ traits.amount | money('usd') }}|{{ traits.count | number('#,##0.00') }}|"
        "{{ traits.price | money('EUR', '#,##0.00 ¤') }}|{{ traits.yen | money('JPY') }}|"
        "{{ '2026-12-04' | date('EEEE, d. MMMM') }}|{{ (0.1 + 0.2) | number }}"
    )
    assert _render(source, "de", traits=traits).split("|") == [
        "1.234,50" + NBSP + "$",
        "3,00",
        "19,90 €",  # the pattern's own space
        "1.500" + NBSP + "¥",
        "Freitag, 4. Dezember",
        "0,3",
    ]


@pytest.mark.parametrize("filter_", ["date", "datetime", "time", "number", "percent", "money('EUR')"])
@pytest.mark.parametrize("value", ["traits.missing", "traits.null", "traits.blank", "traits.missing.deeper"])
def test_a_null_or_missing_value_prints_nothing(filter_, value):
    traits = {"null": None, "blank": ""}
    assert _render(f"[{{{{ {value} | {filter_} }}}}]", "de", traits=traits) == "[]"
    assert _render(f"[{{{{ {value} | {filter_} | default('-') }}}}]", "de", traits=traits) == "[]"


@pytest.mark.parametrize(
    ("source", "traits", "says"),
    [
        ("{{ traits.x | date }}", {"x": "tomorrow"}, "date: 'tomorrow' is not an ISO 8601 date"),
        ("{{ traits.x | datetime }}", {"x": "2026-13-40T10:00"}, "datetime: '2026-13-40T10:00' is not"),
        ("{{ traits.x | time }}", {"x": 1733356800}, "time: 1733356800 is not an ISO 8601"),
        ("{{ traits.x | money('EUR') }}", {"x": "n/a"}, "money: 'n/a' is not a number"),
        ("{{ traits.x | number }}", {"x": "NaN"}, "number: 'NaN' is not a number"),
        ("{{ traits.x | number }}", {"x": True}, "number: True is not a number"),
        ("{{ traits.x | percent }}", {"x": [1]}, "percent: [1] is not a number"),
        ("{{ traits.x | number }}", {"x": "1e999999999"}, "number: '1e999999999' is too large"),
        ("{{ 1 | money(traits.x) }}", {"x": "EURO"}, "money: 'EURO' is not an ISO 4217 currency code"),
        ("{{ '2026-12-04' | date(traits.x) }}", {"x": "y" * 101}, "date: the format must be"),
        ("{{ traits.x | date('yyyy') }}", {"x": "05-17"}, "date: '05-17' has no year"),
        ("{{ '2026-12-04' | date('HH:mm') }}", {}, "date: cannot format '2026-12-04'"),
    ],
)
def test_a_value_that_cannot_be_read_fails_the_message_naming_the_filter_the_value_and_the_line(
    source, traits, says
):
    with pytest.raises(rendering.RenderError) as failed:
        _render(f"<p>Hello</p>\n<p>{source}</p>", "de", traits=traits)
    assert says in str(failed.value)
    assert (failed.value.part, failed.value.line) == ("html", 2)


def test_a_profile_locale_babel_does_not_know_falls_back_to_the_variant_then_the_default_then_english():
    source = "{{ 1234.5 | money('EUR') }}"
    assert _render(source, "xx-YY", variant="de") == "1.234,50" + NBSP + "€"
    assert _render(source, "xx-YY") == "€1,234.50"
    assert formatting.locality("xx", None, "fr-FR").locale.language == "fr"
    assert formatting.locality("de-AT", "de", "fr").locale.territory == "AT"  # the most specific first
    # an unknown zone is UTC, not a failed message
    assert formatting.locality("de", timezone="Mars/Olympus").zone.utcoffset(None).total_seconds() == 0


def test_a_send_formats_for_the_customer_the_variant_and_the_configured_default(tmp_path):
    settings = Settings(dev_mode=True, data_dir=tmp_path, default_locale="fr-FR")
    spec = TemplateSpec(
        template_id="t", subject="{{ 1234.5 | number }}", html="<p>{{ 1234.5 | money('EUR') }}</p>",
        text="{{ event.timestamp | date }}", layout=None, category="transactional",
        subscription_group=None, reply_to=None, variants={"de": {"subject": "{{ 1234.5 | number }}"}},
    )  # fmt: skip
    factory = MessageFactory(settings)

    def sent(**customer):
        customer = {"id": 1, "email": "a@example.com", "traits": {}} | customer
        return factory.make(spec, customer, idempotency_key="k", event=EVENT, track=False).rendered

    german = sent(locale="de-CH", timezone="Asia/Tokyo")  # a Swiss German: the variant, Swiss digits
    assert (german.subject, german.text.strip()) == ("1'234.5", "5. Dezember 2026")
    assert sent(locale=None).subject == "1" + NNBSP + "234,5"  # the configured default
    assert sent(locale="zz", timezone="Nowhere/City").text.strip() == "4 décembre 2026"


def test_values_are_written_in_the_language_of_the_text_in_the_customers_region():
    assert formatting.written_in("de", None, "en") == ("en",)  # no German variant: English text
    assert formatting.written_in("de-AT", "de", "en") == ("de-AT", "de")  # Austrian conventions
    assert formatting.written_in("en-GB", None, "en") == ("en-GB", "en")
    assert formatting.written_in("xx-YY", None, "fr-FR") == ("fr-FR",)
    assert formatting.written_in(None, None, "pt-BR") == ("pt-BR",)


def test_a_default_locale_babel_does_not_know_stops_the_start(tmp_path):
    with pytest.raises(ValueError, match="default_locale"):
        Settings(dev_mode=True, data_dir=tmp_path, default_locale="klingon")


@pytest.mark.parametrize(
    ("html", "says"),
    [
        ("{{ 1 | money('EURO') }}", "money: 'EURO' is not an ISO 4217 currency code"),
        ("{{ 1 | money }}", 'money: name the currency, e.g. money("EUR")'),
        ("{{ traits.b | date('qqqqqqq') }}", "date: bad format"),
        ("{{ traits.n | number('abc') }}", "number: the format must be a CLDR number pattern"),
        ("{{ traits.b | date('long', 'x', 'y') }}", "date: takes an optional format"),
    ],
)
async def test_a_bad_currency_or_pattern_written_in_the_template_is_refused_at_save(
    client, marketer_headers, html, says
):
    spec = {"id": "t", "name": "T", "subject": "Hi", "html": f"<p>{html}</p>"}
    r = await client.post("/api/templates", json=spec, headers=marketer_headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == "html" and says in r.json()["detail"]["problem"]


def test_templates_reach_no_babel_object_and_cannot_name_the_locality():
    for source in ("{{ locality }}", "{{ traits | attr('locale') }}"):
        with pytest.raises(Exception, match=r"(?i)unknown variable|no filter named"):
            rendering.check_template({"html": source})
    # what a filter gives back is text, so nothing to walk from it
    with pytest.raises(rendering.RenderError, match="not allowed"):
        _render("{{ (1 | money('EUR')).__class__ }}", "de")
    assert _render("{{ (1 | money('EUR')) is string }}", "de") == "True"


ORDER_HTML = (
    "<p>Total: {{ properties.total | money('EUR') }}</p>\n"
    "<p>Placed {{ event.timestamp | datetime('short') }}</p>\n<p>Ships {{ properties.ships | date }}</p>"
)
ORDER = {
    "id": "order",
    "name": "Order",
    "subject": "Order of {{ event.timestamp | date }}",
    "html": ORDER_HTML,
    "variants": {
        "de": {"subject": "Bestellung vom {{ event.timestamp | date }}", "html": ORDER_HTML},
        "ja": {"subject": "ご注文 {{ event.timestamp | date }}", "html": ORDER_HTML},
    },
}


async def test_a_preview_formats_sample_data_and_a_stored_customer_and_a_bad_value_is_a_422(
    client, marketer_headers, sessions
):
    assert (await client.post("/api/templates", json=ORDER, headers=marketer_headers)).status_code == 201
    event = {"name": "Order Completed", "timestamp": "2026-12-04T23:30:00+00:00"}
    event["properties"] = {"total": "1234.5", "ships": "2026-12-07"}
    sample = {"locale": "de-DE", "timezone": "Europe/Berlin", "event": event}
    r = await client.post("/api/templates/order/preview", json=sample, headers=marketer_headers)
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == "Bestellung vom 5. Dezember 2026"
    assert "Total: 1.234,50" + NBSP + "€" in r.json()["text"] and "Placed 05.12.26, 00:30" in r.json()["text"]

    cid = await add_customer(sessions, email="ken@example.com", traits={}, locale="ja", timezone="Asia/Tokyo")
    r = await client.post(
        "/api/templates/order/preview", json={"customer_id": cid, "event": event}, headers=marketer_headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == "ご注文 2026年12月5日" and "Placed 2026/12/05 8:30" in r.json()["text"]

    # no French variant: a French customer reads the English main text, with English dates and amounts
    french = sample | {"locale": "fr-FR"}
    r = await client.post("/api/templates/order/preview", json=french, headers=marketer_headers)
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == "Order of December 5, 2026" and "Total: €1,234.50" in r.json()["text"]
    assert '<html lang="en"' in r.json()["html"]

    bad = sample | {"event": event | {"properties": {"total": 5, "ships": "next week"}}}
    r = await client.post("/api/templates/order/preview", json=bad, headers=marketer_headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "render_failed"
    detail = r.json()["detail"]
    assert (detail["part"], detail["line"]) == ("html", 3)
    assert "date: 'next week' is not an ISO 8601 date" in detail["problem"]

    r = await client.post(
        "/api/templates/order/preview", json=sample | {"timezone": "Mars/Olympus"}, headers=marketer_headers
    )
    assert r.status_code == 422, r.text
    assert "timezone" in str(r.json()["detail"]) and "Mars/Olympus" in str(r.json()["detail"])
