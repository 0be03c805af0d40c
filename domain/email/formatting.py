"""Localised formatting filters for templates: dates, times, money, numbers and percentages (Babel).

``{{ properties.total | money("EUR") }}`` prints ``1.234,50 €`` for a German customer and ``€1,234.50``
for an American one; ``{{ event.timestamp | datetime("short") }}`` prints the instant in the customer's
time zone. The locale and zone of one message (``Locality``) sit in the render's variables under a key
no template can name (``LOCALITY``), so the filters read them without a template ever reaching a Babel
object: every filter takes plain data and gives back a plain string.

A null or missing value prints nothing, as it does everywhere else. A value the filter cannot read (not a
date, a number in words, an unknown currency) fails that one message with ``FormatError`` naming the
filter and the value: printing the raw value would put ``2026-12-04T18:00:00+00:00`` or ``NaN`` in front
of a customer, which is what these filters exist to prevent. Arguments written in the template itself
(a currency code, a pattern) are checked when the template is saved (``unreadable_arguments``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from datetime import time as clock_time
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, NamedTuple

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_skeleton, format_time
from babel.numbers import format_currency, format_decimal, format_percent, is_currency
from jinja2 import Undefined, nodes, pass_context

from domain import dates

LOCALITY = "@locality"  # not an identifier: no template can name it
FALLBACK_LOCALE = "en"
NAMED_FORMATS = ("short", "medium", "long", "full")
MAX_PATTERN = 100  # characters of a CLDR pattern: each letter can pad the output
MAX_INPUT = 64  # characters of a date or number read from text
MAX_DIGITS = 30  # digits before the decimal point: beyond any amount, and bounded output


class FormatError(ValueError):
    """A value or argument a formatting filter cannot read; fails that one message."""


class Locality(NamedTuple):
    locale: Locale
    zone: tzinfo


@lru_cache(maxsize=512)
def _locale(tag: str) -> Locale | None:
    try:
        return Locale.parse(tag.replace("_", "-"), sep="-")
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def readable_locale(tag: Any) -> bool:
    return isinstance(tag, str) and len(tag) <= 35 and _locale(tag) is not None


def written_in(customer: str | None, variant: str | None, default: str) -> tuple[str, ...]:
    """The locales to format in, best first: the language the message is written in (the chosen
    variant's, else the main content's, ``default``), spelled as the customer's locale when that is the
    same language (``de-AT`` for a ``de`` text, so its region's conventions). A customer whose language
    no variant has reads the main content, so a ``de`` customer of English text gets English dates."""
    text = variant or default
    if (
        readable_locale(customer)
        and readable_locale(text)
        and _locale(customer).language == _locale(text).language
    ):
        return (customer, text)
    return (text,)


@lru_cache(maxsize=4096)
def locality(
    *locales: str | None, timezone: str | None = None, default_timezone: str | None = None
) -> Locality:
    """The first of ``locales`` Babel knows (see ``written_in``), else English; the customer's zone,
    else ``default_timezone`` (a broadcast's, the zone it planned their send time in), else UTC, read
    by ``dates.zone``. A profile's unknown locale or zone falls back instead of failing: it decides
    how values are spelled, not whether the customer gets the message."""
    locale = next((_locale(tag) for tag in locales if readable_locale(tag)), None)
    return Locality(locale or _locale(FALLBACK_LOCALE), dates.zone(timezone, default_timezone))


_DEFAULT = locality()


# -- reading values ----------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or isinstance(value, Undefined) or (isinstance(value, str) and not value.strip())


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _number(name: str, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise FormatError(f"{name}: {_shown(value)} is not a number")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # 0.1 as written, not its binary expansion
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str) and len(value) <= MAX_INPUT:
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise FormatError(f"{name}: {_shown(value)} is not a number") from None
    else:
        raise FormatError(f"{name}: {_shown(value)} is not a number")
    if not number.is_finite():
        raise FormatError(f"{name}: {_shown(value)} is not a number")
    if number and number.adjusted() >= MAX_DIGITS:
        raise FormatError(f"{name}: {_shown(value)} is too large to format")
    return number


class _YearLess(NamedTuple):
    """A birthday kept without its year (``05-17``, as ``domain.dates`` reads it)."""

    day: date


def _moment(name: str, value: Any, *, year_less: bool = False) -> date | datetime | _YearLess:
    """A date, or a datetime with its zone (none written means UTC, as event times are stored). Text is
    ISO 8601; ``year_less`` also takes a month-day (``05-17``) and a date followed by other text, the
    values the product's segments read as dates (``domain.dates``)."""
    if isinstance(value, str) and len(value) <= MAX_INPUT:
        text = value.strip()
        try:
            return _aware(date.fromisoformat(text) if len(text) <= 10 else datetime.fromisoformat(text))
        except ValueError:
            parsed = dates.parse(text) if year_less else None
            if parsed is not None:
                return parsed[0] if parsed[1] else _YearLess(parsed[0])
    elif isinstance(value, date):
        return _aware(value)
    raise FormatError(f"{name}: {_shown(value)} is not an ISO 8601 date or date and time")


def _aware(value: date) -> date:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# a year-less day in each named length; no weekday, which depends on the year
_YEAR_LESS = {"short": "Md", "medium": "MMMd", "long": "MMMMd", "full": "MMMMd"}


def _local(moment: date | datetime, zone: tzinfo) -> datetime:
    if isinstance(moment, datetime):
        return moment.astimezone(zone)
    return datetime.combine(moment, clock_time(), zone)  # a day alone: its midnight where the customer is


def _pattern(name: str, format: Any, default: str | None, *, number: bool = False) -> str | None:
    if format is None or isinstance(format, Undefined):
        return default
    kinds = (
        "a CLDR number pattern (such as #,##0.00)"
        if number
        else f"{', '.join(NAMED_FORMATS)} or a CLDR pattern"
    )
    # a number pattern without a digit placeholder would print itself instead of the number
    if (
        not isinstance(format, str)
        or not format.strip()
        or len(format) > MAX_PATTERN
        or (number and not any(c in format for c in "0#@"))
    ):
        raise FormatError(
            f"{name}: the format must be {kinds} of at most {MAX_PATTERN} characters, not {_shown(format)}"
        )
    return format


def _currency(value: Any) -> str:
    if value is None or isinstance(value, Undefined):
        raise FormatError('money: name the currency, e.g. money("EUR")')
    code = value.upper() if isinstance(value, str) else value
    if not isinstance(code, str) or not is_currency(code):
        raise FormatError(f"money: {_shown(value)} is not an ISO 4217 currency code (such as EUR or USD)")
    return code


def _babel(name: str, value: Any, call: Callable[[], str]) -> str:
    try:
        return call()
    except FormatError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, ArithmeticError) as exc:
        # a pattern Babel refuses, or one asking a date for its hour
        raise FormatError(f"{name}: cannot format {_shown(value)}: {exc}") from None


# -- the filters -------------------------------------------------------------------------------------


def _here(context) -> Locality:
    found = context.get(LOCALITY)
    return found if isinstance(found, Locality) else _DEFAULT


@pass_context
def date_filter(context, value: Any, format: Any = "long") -> str:
    if _missing(value):
        return ""
    here, moment = _here(context), _moment("date", value, year_less=True)
    pattern = _pattern("date", format, "long")
    if isinstance(moment, _YearLess):
        if pattern not in _YEAR_LESS and "y" in pattern.lower():
            raise FormatError(f"date: {_shown(value)} has no year for the pattern {_shown(pattern)}")
        skeleton = _YEAR_LESS.get(pattern)
        if skeleton is not None:
            return format_skeleton(skeleton, moment.day, locale=here.locale)
        moment = moment.day
    # an instant is on the day it is where the customer is: 23:30 UTC on the 4th is the 5th in Tokyo
    day = moment.astimezone(here.zone).date() if isinstance(moment, datetime) else moment
    return _babel("date", value, lambda: format_date(day, pattern, locale=here.locale))


@pass_context
def datetime_filter(context, value: Any, format: Any = "medium") -> str:
    if _missing(value):
        return ""
    here = _here(context)
    moment = _local(_moment("datetime", value), here.zone)
    pattern = _pattern("datetime", format, "medium")
    return _babel("datetime", value, lambda: format_datetime(moment, pattern, locale=here.locale))


@pass_context
def time_filter(context, value: Any, format: Any = "short") -> str:
    if _missing(value):
        return ""
    here = _here(context)
    moment = _local(_moment("time", value), here.zone)
    pattern = _pattern("time", format, "short")
    return _babel("time", value, lambda: format_time(moment, pattern, locale=here.locale))


@pass_context
def number_filter(context, value: Any, format: Any = None) -> str:
    if _missing(value):
        return ""
    here, number = _here(context), _number("number", value)
    pattern = _pattern("number", format, None, number=True)
    return _babel("number", value, lambda: format_decimal(number, pattern, locale=here.locale))


@pass_context
def percent_filter(context, value: Any, format: Any = None) -> str:
    """A fraction as a percentage: 0.25 is 25 %."""
    if _missing(value):
        return ""
    here, number = _here(context), _number("percent", value)
    pattern = _pattern("percent", format, None, number=True)
    return _babel("percent", value, lambda: format_percent(number, pattern, locale=here.locale))


@pass_context
def money_filter(context, value: Any, currency: Any = None, format: Any = None) -> str:
    if _missing(value):
        return ""
    here, number, code = _here(context), _number("money", value), _currency(currency)
    pattern = _pattern("money", format, None, number=True)
    return _babel("money", value, lambda: format_currency(number, code, pattern, locale=here.locale))


FILTERS: dict[str, Callable[..., str]] = {
    "date": date_filter,
    "datetime": datetime_filter,
    "time": time_filter,
    "number": number_filter,
    "percent": percent_filter,
    "money": money_filter,
}


# -- save-time checks of literal arguments ----------------------------------------------------------

_SAMPLES = {
    "date": "2026-12-04",
    "datetime": "2026-12-04T18:00:00+00:00",
    "time": "2026-12-04T18:00:00+00:00",
    "number": 1234.5,
    "percent": 0.25,
    "money": 1234.5,
}


_USAGE = {
    "date": "an optional format: date, date('long') or date('d. MMMM')",
    "datetime": "an optional format: datetime, datetime('short')",
    "time": "an optional format: time, time('HH:mm')",
    "number": "an optional CLDR pattern: number, number('#,##0.00')",
    "percent": "an optional CLDR pattern: percent, percent('#,##0.0 %')",
    "money": "a currency code and an optional CLDR pattern: money('EUR'), money('EUR', '#,##0 ¤')",
}


def unreadable_arguments(ast: nodes.Template) -> list[str]:
    """Currency codes and patterns written into the template that its filters could never use: refused
    when the template is saved, not in every message it would have failed."""
    problems = []
    for node in ast.find_all(nodes.Filter):
        if node.name not in FILTERS or node.dyn_args is not None or node.dyn_kwargs is not None:
            continue
        if not all(isinstance(arg, nodes.Const) for arg in (*node.args, *(kw.value for kw in node.kwargs))):
            continue  # an argument from data is checked when rendering, for the data it gets
        args = [arg.value for arg in node.args]
        kwargs = {kw.key: kw.value.value for kw in node.kwargs}
        try:
            FILTERS[node.name]({LOCALITY: _DEFAULT}, _SAMPLES[node.name], *args, **kwargs)
        except FormatError as exc:
            problems.append(str(exc).replace(f"cannot format {_shown(_SAMPLES[node.name])}", "bad format"))
        except TypeError:  # wrong number or names of arguments
            problems.append(f"{node.name}: takes {_USAGE[node.name]}")
    return sorted(set(problems))
