"""The public CSAT page answers any signature or rating a link or form may carry: one that is not plain
ASCII is a wrong signature or a rating outside 1-5, as any other (compare_digest and int() raised: 500)."""

from __future__ import annotations

import pytest

from domain.cases import service as cases
from domain.cases.models import Case
from tests.cases.test_csat_and_context import _resolved_case

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("sig", ["%C3%A9", "%E2%82%AC" * 5, "a%C3%A9b", "%FF"])
async def test_a_non_ascii_signature_is_just_a_wrong_signature(client, sessions, settings, sig):
    case_id = await _resolved_case(sessions, settings)
    page = await client.get(f"/csat/{case_id}?sig={sig}")
    assert page.status_code == 404, page.text
    assert "not valid" in page.text
    posted = await client.post(f"/csat/{case_id}", content=f"sig={sig}&rating=5", headers=FORM)
    assert posted.status_code == 404, posted.text
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating is None


@pytest.mark.parametrize("rating", ["%C2%B2", "%D9%A3", "%EF%BC%95", "5" * 5000, "9" * 40, "-1", "+5", " 5"])
async def test_a_rating_that_is_not_1_to_5_gets_the_pages_answer(client, sessions, settings, rating):
    case_id = await _resolved_case(sessions, settings)
    sig = cases.csat_signature(settings, case_id)
    posted = await client.post(f"/csat/{case_id}", content=f"sig={sig}&rating={rating}", headers=FORM)
    assert posted.status_code == 422, posted.text
    assert "1 to 5" in posted.text
    bad_sig = await client.post(f"/csat/{case_id}", content=f"sig=x&rating={rating}", headers=FORM)
    assert bad_sig.status_code == 404 and "not valid" in bad_sig.text, bad_sig.text
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating is None


@pytest.mark.parametrize("body", ["", "rating=", "rating=7", "sig=&rating=abc"])
async def test_a_post_without_a_signature_is_told_the_link_is_not_valid(client, sessions, settings, body):
    """The signature is checked first: an unsigned post with no rating (or a bad one) was answered
    "rating must be a whole number from 1 to 5" (422), as if the link were good."""
    case_id = await _resolved_case(sessions, settings)
    posted = await client.post(f"/csat/{case_id}", content=body, headers=FORM)
    assert posted.status_code == 404, posted.text
    assert "this rating link is not valid" in posted.text and "1 to 5" not in posted.text
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating is None


async def test_a_form_with_more_fields_than_the_page_has_is_refused_with_the_page(client, sessions, settings):
    """The form is read up to ten fields; more answered a 500."""
    case_id = await _resolved_case(sessions, settings)
    sig = cases.csat_signature(settings, case_id)
    posted = await client.post(
        f"/csat/{case_id}", content="extra=1&" * 11 + f"sig={sig}&rating=5", headers=FORM
    )
    assert posted.status_code == 400, posted.text
    assert "could not be read" in posted.text
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating is None
    # The page's own two fields, and a few more (a browser extension's), are still read.
    posted = await client.post(f"/csat/{case_id}", content=f"a=1&b=2&sig={sig}&rating=4", headers=FORM)
    assert posted.status_code == 200 and "4 out of 5" in posted.text, posted.text


@pytest.mark.parametrize("rating", ["abc", "%FF", "4.0", "9" * 40, "9" * 4301, ""])
async def test_opening_the_link_with_a_rating_the_page_has_no_button_for_shows_the_page(
    client, sessions, settings, rating
):
    """The rating of a one-click link was read as an integer by FastAPI: anything else (and 4301 digits,
    beyond int()'s limit) answered a JSON 422 instead of the page. Now no button is preselected."""
    case_id = await _resolved_case(sessions, settings)
    sig = cases.csat_signature(settings, case_id)
    page = await client.get(f"/csat/{case_id}?sig={sig}&rating={rating}")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "How did we do?" in page.text and 'class="chosen"' not in page.text
    chosen = await client.get(f"/csat/{case_id}?sig={sig}&rating=3&rating={rating}&rating=4")
    assert chosen.status_code == 200 and 'value="4" class="chosen"' in chosen.text, chosen.text


@pytest.mark.parametrize("case_id", ["abc", "%FF", "9" * 40, "-1", "1.0"])
async def test_a_mangled_link_gets_the_pages_not_valid_answer(client, sessions, settings, case_id):
    """A case id that is not one, or a signature longer than any, answered a JSON 422."""
    real = await _resolved_case(sessions, settings)
    sig = cases.csat_signature(settings, real)
    for answer in (
        await client.get(f"/csat/{case_id}?sig={sig}"),
        await client.post(f"/csat/{case_id}", content=f"sig={sig}&rating=5", headers=FORM),
        await client.get(f"/csat/{real}?sig={sig}{'0' * 200}"),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        assert "not valid" in answer.text
    async with sessions() as session:
        assert (await session.get(Case, real)).csat_rating is None


async def test_a_form_far_longer_than_the_pages_is_refused_unread(client, sessions, settings):
    """The whole body was buffered and read, however long (one field of megabytes is one field)."""
    case_id = await _resolved_case(sessions, settings)
    sig = cases.csat_signature(settings, case_id)
    posted = await client.post(
        f"/csat/{case_id}", content=f"sig={sig}&rating=5&note={'x' * 70_000}", headers=FORM
    )
    assert posted.status_code == 400 and "could not be read" in posted.text, posted.text
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating is None


@pytest.mark.parametrize("spelling", ["0{}", "00{}", "+{}", "{}%20"])
async def test_a_case_id_spelled_otherwise_than_the_link_is_not_valid(client, sessions, settings, spelling):
    """A link has one spelling, as the other signed links do: /csat/02 with case 2's signature was
    taken as case 2's link."""
    case_id = await _resolved_case(sessions, settings)
    sig = cases.csat_signature(settings, case_id)
    path = f"/csat/{spelling.format(case_id)}"
    page = await client.get(f"{path}?sig={sig}")
    assert page.status_code == 404 and "this rating link is not valid" in page.text, page.text
    posted = await client.post(path, content=f"sig={sig}&rating=5", headers=FORM)
    assert posted.status_code == 404 and "this rating link is not valid" in posted.text, posted.text
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating is None
    assert (await client.get(f"/csat/{case_id}?sig={sig}")).status_code == 200  # the link as sent


@pytest.mark.parametrize("rating", ["05", "005", "5.0", "0"])
async def test_a_rating_spelled_otherwise_than_the_buttons_is_no_rating(client, sessions, settings, rating):
    """Ratings have the one spelling the page's buttons and a link's `&rating=` write: '05' was taken as
    5 where '0005' and '+5' were refused."""
    case_id = await _resolved_case(sessions, settings)
    sig = cases.csat_signature(settings, case_id)
    page = await client.get(f"/csat/{case_id}?sig={sig}&rating={rating}")
    assert page.status_code == 200 and 'class="chosen"' not in page.text
    posted = await client.post(f"/csat/{case_id}", content=f"sig={sig}&rating={rating}", headers=FORM)
    assert posted.status_code == 422 and "1 to 5" in posted.text, posted.text
    async with sessions() as session:
        assert (await session.get(Case, case_id)).csat_rating is None
    preselected = await client.get(f"/csat/{case_id}?sig={sig}&rating=5")
    assert 'value="5" class="chosen"' in preselected.text
    assert (
        await client.post(f"/csat/{case_id}", content=f"sig={sig}&rating=5", headers=FORM)
    ).status_code == 200
