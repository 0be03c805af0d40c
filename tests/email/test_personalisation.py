"""Personalisation with missing, null and oddly named data, as the README promises it: a null value
prints nothing, as a missing one does; a missing value never fails the message; an event property is
the data whatever its name."""

from __future__ import annotations

import pytest

from domain.email import rendering

CART = {"name": "Cart Updated", "properties": {"items": [{"name": "Mug"}, {"name": "Tea"}], "keys": 2}}


def _html(source: str, traits: dict, event: dict | None = None) -> str:
    context = rendering.context_for({"traits": traits}, event)
    return rendering.render("s", source, None, context, layout=None).html


@pytest.mark.parametrize(
    "source",
    [
        "Hi {{ traits.first_name | capitalize }}!",
        "Hi {{ traits.first_name | title }}!",
        "Hi {{ traits.first_name | upper }}!",
        "Hi {{ traits.first_name | trim }}!",
        "Hi {{ traits.first_name | e }}!",
        "Hi {{ traits.first_name | string }}!",
        "Hi {{ traits.first_name | truncate(10) }}!",
        "Hi {{ traits.first_name | replace('a', 'b') }}!",
        "Hi {{ traits.first_name ~ '' }}!",
        "Hi {{ [traits.first_name, traits.last_name] | join('') }}!",
    ],
)
def test_a_null_trait_through_a_text_filter_or_a_join_prints_nothing_as_a_missing_one_does(source):
    missing = _html(source, {})
    assert missing == "Hi !"
    assert _html(source, {"first_name": None, "last_name": None}) == missing  # was "Hi None!"


def test_a_null_trait_keeps_its_filter_for_a_real_value_and_default_still_covers_it():
    assert _html("Hi {{ traits.first_name | capitalize }}", {"first_name": "ann"}) == "Hi Ann"
    assert _html("{{ 'Hi ' ~ traits.first_name ~ '!' }}", {"first_name": None}) == "Hi !"
    assert _html("{{ traits.first_name | default('friend') | upper }}", {"first_name": None}) == "FRIEND"
    assert _html("{{ traits.first_name is none }}", {"first_name": None}) == "True"


def test_a_trait_under_a_missing_one_prints_nothing_and_default_covers_it():
    source = "<p>[{{ traits.address.city }}] {{ traits.address.city | default('your town') }}</p>"
    # a customer without an `address` trait failed the message ("'dict object' has no attribute")
    assert _html(source, {}) == "<p>[] your town</p>"
    assert _html(source, {"address": {"city": "Lyon"}}) == "<p>[Lyon] Lyon</p>"
    assert _html("{% for i in traits.orders.recent %}x{% endfor %}.", {}) == "."


def test_an_event_property_named_like_a_dict_method_is_the_property():
    # a cart's `items` was dict.items: the loop failed for every message of the journey
    source = (
        "<ul>{% for item in properties.items %}<li>{{ item.name }}</li>{% endfor %}</ul>{{ properties.keys }}"
    )
    assert _html(source, {}, CART) == "<ul><li>Mug</li><li>Tea</li></ul>2"
    # a method no key shadows is still there
    assert _html("{{ traits.get('nick', 'friend') }}", {}) == "friend"


def test_a_missing_value_still_cannot_reach_python_internals():
    for source in ("{{ traits.missing.__class__ }}", "{{ traits.missing._undefined_obj }}"):
        with pytest.raises(rendering.RenderError):
            _html(source, {})


async def test_preview_of_a_cart_template_lists_its_items_and_greets_a_null_name(client, marketer_headers):
    spec = {
        "id": "cart",
        "name": "Cart",
        "subject": "{{ traits.first_name | capitalize }}, your cart is waiting",
        "html": "<p>Hi {{ traits.first_name | title }}</p>"
        "<ul>{% for item in properties.items %}<li>{{ item.name }}</li>{% endfor %}</ul>"
        "<p>{{ traits.address.city | default('near you') }}</p>",
    }
    assert (await client.post("/api/templates", json=spec, headers=marketer_headers)).status_code == 201
    r = await client.post(
        "/api/templates/cart/preview",
        json={"traits": {"first_name": None}, "event": CART},
        headers=marketer_headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["subject"] == ", your cart is waiting"
    assert "None" not in body["html"] and "None" not in body["text"]
    assert "<li>Mug</li><li>Tea</li>" in body["html"] and "near you" in body["html"]
    assert "- Mug" in body["text"] and "- Tea" in body["text"]
