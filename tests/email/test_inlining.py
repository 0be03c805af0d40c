"""A template's own CSS is inlined once per template version, with the styles inlining each rendered
message would give; CSS a render could change is still inlined message by message."""

from __future__ import annotations

import re

import pytest

from domain.email import inlining, rendering

FOOTER = rendering.Footer(
    sender_name="Acme",
    postal_address="1 Main St",
    unsubscribe_url="https://mail.example/u/t",
    preferences_url="https://mail.example/p/t",
    group_name="News",
)
STYLED = """<style>h1 { font-size: 22px } .cta a { color: #fff; background: #c00 } p { margin: 0 }</style>
<h1>Hi {{ traits.first_name }}</h1>
<p class="cta">{% for item in ["Shoes", "Hats"] %}
<a href="https://shop.example/{{ item | lower }}">{{ item }}</a>
{% endfor %}</p>
{% if traits.vip %}<p>Thanks for being a VIP</p>{% else %}<p>See you soon</p>{% endif %}"""


def _render(html: str, first_name: str = "Ann", vip: bool = True) -> str:
    customer = {"id": 1, "traits": {"first_name": first_name, "vip": vip}}
    return rendering.render("Hi", html, None, rendering.context_for(customer, None), footer=FOOTER).html


def _inlined_per_message(html: str, **traits) -> str:
    """What the old way gives: render the message, then inline it."""
    saved = inlining.inline_source
    inlining.inline_source = lambda *args: None
    rendering._styled.cache_clear()
    try:
        return _render(html, **traits)
    finally:
        inlining.inline_source = saved
        rendering._styled.cache_clear()


@pytest.fixture
def inliner_calls(monkeypatch):
    calls = []
    real = rendering._inliner

    class Counting:
        def inline(self, html):
            calls.append(html)
            return real.inline(html)

    rendering._styled.cache_clear()
    rendering._html_skeleton.cache_clear()
    monkeypatch.setattr(rendering, "_inliner", Counting())
    yield calls
    rendering._styled.cache_clear()
    rendering._html_skeleton.cache_clear()


def test_template_css_is_inlined_once_for_many_messages(inliner_calls):
    pages = [_render(STYLED, first_name=f"Name{i}", vip=i % 2 == 0) for i in range(50)]
    assert len(inliner_calls) == 2  # the layout's CSS once, the template's once: not per message
    assert all("<style" not in page for page in pages)
    assert 'style="font-size: 22px;">Hi Name7</h1>' in pages[7]
    assert re.search(r'<a href="https://shop.example/hats" style="color: #fff;background: #c00;">', pages[7])
    assert "See you soon" in pages[7] and "VIP" not in pages[7] and "VIP" in pages[8]
    assert '<p style="margin: 0;">You receive this email' in pages[0]  # the template's CSS reaches the footer


@pytest.mark.parametrize("vip", [True, False])
def test_styles_are_those_inlining_each_message_gives(vip):
    rendering._styled.cache_clear()
    assert _render(STYLED, vip=vip) == _inlined_per_message(STYLED, vip=vip)


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        # the rules vary per message
        ("<style>p { color: {{ traits.color }} }</style><p>x</p>", 'style="color: teal;"'),
        # which element matches depends on what the loop renders
        (
            "<style>li:nth-child(2) { color: red }</style>"
            "<ul>{% for i in range(3) %}<li>{{ i }}</li>{% endfor %}</ul>",
            '<li>0</li><li style="color: red;">1</li><li>2</li>',
        ),
        # the class comes from data
        (
            '<style>.vip { color: gold }</style><p class="{{ "vip" if traits.vip }}">x</p>',
            'style="color: gold;"',
        ),
        # HTML would move a statement inside a table out of it
        (
            "<style>td { padding: 4px }</style>"
            "<table>{% for i in range(2) %}<tr><td>{{ i }}</td></tr>{% endfor %}</table>",
            '<td style="padding: 4px;">1</td>',
        ),
        # a statement opens an element it does not close
        (
            '<style>.box p { color: red }</style>{% if traits.vip %}<div class="box">{% endif %}<p>x</p>'
            "{% if traits.vip %}</div>{% endif %}",
            '<p style="color: red;">x</p>',
        ),
    ],
    ids=["jinja-in-css", "structural-selector", "dynamic-class", "statement-in-table", "unbalanced"],
)
def test_css_a_render_can_change_is_inlined_per_message(html, expected):
    skeleton = rendering._html_skeleton("base", "en", FOOTER.skeleton_key())
    assert inlining.inline_source(html, skeleton, rendering._BODY, rendering._inliner.inline) is None
    customer = {"id": 1, "traits": {"color": "teal", "vip": True}}
    out = rendering.render("Hi", html, None, rendering.context_for(customer, None), footer=FOOTER).html
    assert expected in out and "<style" not in out


def test_customer_data_stays_escaped_in_an_inlined_template():
    out = _render(STYLED, first_name='<img src=x onerror="alert(1)">')
    assert "<img src=x" not in out and "&lt;img" in out
