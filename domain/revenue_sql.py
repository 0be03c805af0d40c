"""An order's amount in SQL, by domain.revenue's rule, for the readers that sum it in a query: the value
tiers' and RFM's recompute (domain.segments.repository) and analytics' attributed revenue (ROI)."""

from __future__ import annotations

import codecs

from sqlalchemy import Float, Numeric, and_, case, cast, func
from sqlalchemy.sql.elements import ColumnElement

from domain.revenue import ASCII_SPACE, MAX_REVENUE, PLAIN_NUMBER
from domain.segments.compiler import JsonValue

_SPACES = codecs.decode(ASCII_SPACE, "unicode_escape")  # the characters ASCII_SPACE spells out


def order_amount(dialect: str, properties, key: str) -> ColumnElement:
    """An order's amount as ingestion adds it to the profile's lifetime value (domain.revenue.amount):
    a JSON number, or a string holding a plain number, to the cent; 0 when it is neither or 10^12 or
    more. SQLite calls domain.revenue.amount_or_zero, registered as ``order_amount`` by domain/db.py."""
    value = JsonValue(dialect, properties, key)
    if dialect != "postgresql":
        raw = func.json_extract(properties, f'$."{key}"')  # true and false would read as 1 and 0
        counted = value.type.in_(("integer", "real", "text"))
        return case((counted, func.order_amount(raw, type_=Float)), else_=0.0)
    plain = value.text.op("~")(f"^{PLAIN_NUMBER.pattern}$")
    number = case(
        (value.type == "number", cast(value.text, Numeric)),
        (and_(value.is_string, plain), cast(func.btrim(value.text, _SPACES), Numeric)),
    )
    return case((func.abs(number) < MAX_REVENUE, func.round(number, 2)), else_=0)
