"""Templates found by fuzzing the API: deep nesting answered 500, and a huge width in one filter call
(``'%0999999999d'|format(1)``) blocked the whole API for half a minute at save and again at preview."""

from __future__ import annotations

import time

import pytest

from domain.db import transaction
from domain.email import rendering
from domain.email.models import Template, TemplateVersion

GOOD = {"id": "t", "name": "n", "subject": "Hi", "html": "<p>x</p>"}


def _problem(r) -> dict:
    detail = r.json()["detail"]
    return detail[0] if isinstance(detail, list) else detail


# -- 1. nesting ---------------------------------------------------------------------------------------

DEEP = [
    ("subject", "{{ " + "(" * 500 + "1" + ")" * 500 + " }}"),
    ("html", "{% if 1 %}" * 300 + "x" + "{% endif %}" * 300),
    ("html", "{% for a in [1] %}" * 30 + "x" + "{% endfor %}" * 30),  # Python: too many nested blocks
]


@pytest.mark.parametrize(("field", "source"), DEEP)
async def test_deeply_nested_templates_are_a_422_naming_the_field(client, marketer_headers, field, source):
    r = await client.post("/api/templates", json=GOOD | {field: source}, headers=marketer_headers)
    assert r.status_code == 422, r.text
    assert _problem(r)["field"] == field and "nested too deeply" in _problem(r)["problem"]


@pytest.mark.parametrize(("field", "source"), DEEP)
def test_deeply_nested_templates_fail_to_render_with_a_render_error(field, source):
    parts = {"subject": "Hi", "html": "<p>x</p>"} | {field: source}
    with pytest.raises(rendering.RenderError, match="nested too deeply"):
        rendering.render(parts["subject"], parts["html"], None, rendering.context_for({"id": 1}, None))


# -- 2. huge widths -----------------------------------------------------------------------------------

HOSTILE = [
    "<p>{{ '%0999999999d'|format(1) }}</p>",
    "<p>{{ '%*d'|format(999999999, 1) }}</p>",
    "<p>{{ 'a'|center(999999999) }}</p>",
    "<p>{{ traits.x|center(999999999) }}</p>",
    "<p>{{ '%0999999999d' % 1 }}</p>",
    "<p>{{ '%.999999999f' % 1.5 }}</p>",
    "<p>{{ '{:0999999999}'.format(1) }}</p>",
    "<p>{{ 'a'.ljust(999999999) }}</p>",
    "<p>{{ 'a'.rjust(999999999) }}</p>",
    "<p>{{ 'a'.zfill(999999999) }}</p>",
    "<p>{{ 'a\tb'.expandtabs(999999999) }}</p>",
    "<p>{{ traits.x|indent(999999999) }}</p>",
    "<p>{{ [1]|batch(999999999, 0)|list }}</p>",
    "<p>{{ [1]|slice(999999999)|list }}</p>",
]


async def _store_unchecked(sessions, html: str) -> None:
    """A template as it could have been stored before these checks existed."""
    async with transaction(sessions) as session:
        session.add(Template(id="old", name="old", current_version=1))
        await session.flush()
        session.add(TemplateVersion(template_id="old", version=1, subject="Hi", html=html, variants={}))


@pytest.mark.parametrize("html", HOSTILE)
async def test_huge_widths_are_refused_at_save_and_at_preview_at_once(
    client, marketer_headers, sessions, html
):
    started = time.monotonic()
    r = await client.post("/api/templates", json=GOOD | {"html": html}, headers=marketer_headers)
    assert r.status_code == 422, r.text
    assert _problem(r)["field"] == "html" and "larger than" in _problem(r)["problem"]
    await _store_unchecked(sessions, html)
    r = await client.post("/api/templates/old/preview", json={"traits": {"x": "a"}}, headers=marketer_headers)
    assert r.status_code == 422, r.text
    assert "larger than" in _problem(r)["problem"]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("html", "traits"),
    [
        ("<p>{{ traits.s|center(traits.w) }}</p>", {"s": "a", "w": 999999999}),
        ("<p>{{ traits.s.ljust(traits.w) }}</p>", {"s": "a", "w": 999999999}),
        ("<p>{{ traits.f|format(1) }}</p>", {"f": "%0999999999d"}),
        ("<p>{{ traits.f % traits.w }}</p>", {"f": "%*d", "w": (999999999, 1)}),
        ("<p>{{ '{:{w}}'.format(1, w=traits.w) }}</p>", {"w": 999999999}),
        ("<p>{{ 'ab'|replace('', 'x' * 100000) }}</p>", {}),
        ("<p>{{ ','.join(['x' * 100000] * 1000) }}</p>", {}),
        ("<p>{{ ['x' * 100000] * 1000|join }}</p>", {}),
        ("{% set a = 'x' * 100000 %}<p>{{ (a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a)|length }}</p>", {}),
        ("{% set a = 'x' * 100000 %}<p>{{ (a + a + a + a + a + a + a + a + a + a + a)|length }}</p>", {}),
        # many strings, each within the caps: the render's budget of built text stops it
        ("{% for i in range(10000) %}{% set a = 'x'|center(99999) %}{% endfor %}<p>x</p>", {}),
    ],
)
async def test_huge_widths_from_data_fail_the_preview_at_once(client, marketer_headers, html, traits):
    started = time.monotonic()
    r = await client.post("/api/templates", json=GOOD | {"html": html}, headers=marketer_headers)
    assert r.status_code == 201, r.text
    r = await client.post("/api/templates/t/preview", json={"traits": traits}, headers=marketer_headers)
    assert r.status_code == 422, r.text
    assert _problem(r)["field"] == "template"
    assert time.monotonic() - started < 5


async def test_the_api_keeps_answering_while_a_hostile_template_is_saved(client, marketer_headers):
    started = time.monotonic()
    r = await client.post(
        "/api/templates",
        json=GOOD | {"html": "<p>{{ '%0999999999d'|format(1) }}</p>"},
        headers=marketer_headers,
    )
    assert r.status_code == 422 and time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("{{ '%05d'|format(42) }}", "00042"),
        ("[{{ 'ab'|center(6) }}]", "[  ab  ]"),
        ("{{ traits.long|truncate(50) }}", "x" * 47 + "..."),
        ("{{ '%s-%03d' % ('a', 7) }}", "a-007"),
        ("{{ '%(n)s!' % {'n': 'Zoé'} }}", "Zoé!"),
        ("{{ '{:>6.2f}'.format(3.14159) }}", "  3.14"),
        ("{{ '{n}'.format_map({'n': 2}) }}", "2"),
        ("{{ 'x'.ljust(3, '.') }}{{ '7'.zfill(3) }}", "x..007"),
        ("{{ [1, 2]|join(', ') }} {{ 'a b'|replace(' ', '_') }}", "1, 2 a_b"),
        ("{{ 1 + 2 }} {{ 'a' + 'b' }} {{ 7 % 3 }} {{ 'a' ~ 1 }}", "3 ab 1 a1"),
        ("{{ [1, 2, 3]|batch(2)|list }}", "[[1, 2], [3]]"),
        ("{{ 'one two'|wordwrap(3) }}", "one\ntwo"),
    ],
)
def test_ordinary_widths_and_formats_still_render(html, expected):
    rendering.check_template({"html": html})
    context = rendering.context_for({"id": 1, "traits": {"long": "x" * 100}}, None)
    out = rendering.render("s", html, None, context, layout=None)
    assert out.html == expected
