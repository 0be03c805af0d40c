"""An order's amount, read one way by every reader: ingestion's lifetime value (Python on SQLite, SQL on
PostgreSQL: domain/events/postgres_batch.py) and the value tiers' and RFM's recompute (SQL on both;
SQLite calls ``amount_or_zero``, registered on its connections as ``order_amount`` by domain/db.py;
the SQL is domain/revenue_sql.py), and analytics' attributed revenue (ROI)."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

# A string amount (revenue) counts when it is a plain decimal number: ASCII digits, optionally ASCII
# white space around (Python's Decimal would also take '1_000', Unicode digits and spaces, and long
# exponents). Written for both Python and PostgreSQL's regular expressions (postgres_batch).
ASCII_SPACE = r" \t\n\r\f\v"
PLAIN_NUMBER = re.compile(
    rf"[{ASCII_SPACE}]*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{{1,3}})?[{ASCII_SPACE}]*"
)
CENT = Decimal("0.01")
MAX_REVENUE = Decimal(10) ** 12  # beyond this a "revenue" is a mistake, not an order


def amount(value: Any) -> Decimal:
    """The amount to the cent (half up); 0 when ``value`` is missing, not a number, or absurd."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return Decimal(0)
    if isinstance(value, str) and not PLAIN_NUMBER.fullmatch(value):
        return Decimal(0)
    try:
        found = Decimal(str(value).strip())  # a string has only PLAIN_NUMBER's ASCII space around
        if not found.is_finite() or abs(found) >= MAX_REVENUE:
            return Decimal(0)
        return found.quantize(CENT, rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError):
        return Decimal(0)


def amount_or_zero(value: Any) -> float:
    """``amount`` for SQLite, which passes a JSON number or string as it is (the caller leaves out true
    and false, which SQLite's json_extract gives as 1 and 0)."""
    return float(amount(value))
