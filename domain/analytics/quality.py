"""The CRM review of customer data: score = 0.4 accuracy + 0.3 completeness + 0.2 consistency
+ 0.1 timeliness, over known customers (profiles with a userId), with the findings behind each score.

- accuracy: share of customers whose email (if any) is well formed (one @, a dot after it, no
  spaces), whose `phone` trait (if any) is a string of 7-15 digits once spaces, dashes, dots and
  parentheses are removed (an optional leading +), and whose timezone (if any) is an IANA zone;
- completeness: share of (customer, required trait) pairs where the trait is present (not null, not
  blank);
- consistency: share of customers with no conflict: no other known customer with the same email or
  the same phone digits, and no field (email, phone, required traits) on which the latest identify
  calls of two sources (write keys) disagree;
- timeliness: share of customers whose profile changed (traits or facts: updated_at) within N days.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from domain import dates
from domain.analytics import quality_repository as repository
from domain.analytics import side_by_side
from domain.analytics.schemas import DataQualityOut, Dimension, Finding
from domain.analytics.sql import for_reports
from domain.analytics.stats import ratio

WEIGHTS = {"accuracy": 0.4, "completeness": 0.3, "consistency": 0.2, "timeliness": 0.1}
ACCURACY_PROBLEMS = {
    "email": "not a well-formed email address",
    "phone": "not a phone number (7-15 digits, optional leading +)",
    "timezone": "not an IANA time zone",
}
CSV_COLUMNS = ["dimension", "customer_id", "user_id", "field", "problem"]


@cache
def _zones() -> list[str]:
    return sorted(dates.known_zones())


def _checks(session: AsyncSession, settings: Settings, now: datetime) -> repository.Checks:
    fresh_since = now - timedelta(days=settings.analytics_timeliness_days)
    return repository.Checks(
        session.bind.dialect.name, list(settings.analytics_required_traits), _zones(), fresh_since
    )


def _conflict_fields(settings: Settings) -> list[str]:
    return list(dict.fromkeys([*repository.IDENTITY_FIELDS, *settings.analytics_required_traits]))


# -- findings from rows ------------------------------------------------------------------------------------
def _accuracy(row) -> list[Finding]:
    return [
        Finding(
            dimension="accuracy", customer_id=row[0], user_id=row[1], field=f, problem=ACCURACY_PROBLEMS[f]
        )
        for f, bad in zip(ACCURACY_PROBLEMS, row[2:], strict=True)
        if bad
    ]


def _completeness(traits: list[str]) -> Callable[[Any], list[Finding]]:
    def findings(row) -> list[Finding]:
        return [
            Finding(dimension="completeness", customer_id=row[0], user_id=row[1], field=t, problem="missing")
            for t, missing in zip(traits, row[2:], strict=True)
            if missing
        ]

    return findings


def _timeliness(days: int) -> Callable[[Any], list[Finding]]:
    def findings(row) -> list[Finding]:
        problem = f"not updated since {row[2].date().isoformat()} (more than {days} days)"
        return [
            Finding(
                dimension="timeliness", customer_id=row[0], user_id=row[1], field="profile", problem=problem
            )
        ]

    return findings


def _consistency(row) -> list[Finding]:
    customer_id, user_id, field, kind, n = row
    if kind == "shared":
        problem = f"shared with {n} other customer{'s' if n != 1 else ''}"
    else:
        problem = f"{n} sources disagree"
    return [
        Finding(
            dimension="consistency", customer_id=customer_id, user_id=user_id, field=field, problem=problem
        )
    ]


def _queries(
    checks: repository.Checks, settings: Settings
) -> dict[str, tuple[Any, Callable[[Any], list[Finding]]]]:
    """Per dimension, the query of customers with problems (by id) and how a row becomes findings."""
    traits = list(settings.analytics_required_traits)
    return {
        "accuracy": (repository.accuracy_rows(checks), _accuracy),
        "completeness": (repository.completeness_rows(checks), _completeness(traits)),
        "consistency": (repository.consistency_rows(checks, _conflict_fields(settings)), _consistency),
        "timeliness": (repository.timeliness_rows(checks), _timeliness(settings.analytics_timeliness_days)),
    }


def _cell(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


# -- the review ------------------------------------------------------------------------------------------
def _dimension(name: str, checked: int, passed: int, findings: int) -> Dimension:
    return Dimension(
        score=ratio(passed, checked), weight=WEIGHTS[name], checked=checked, passed=passed, findings=findings
    )


async def review(
    session: AsyncSession, settings: Settings, *, now: datetime, limit: int = 100
) -> DataQualityOut:
    await for_reports(session)
    checks = _checks(session, settings, now)
    queries = _queries(checks, settings)
    listed_rows = [(name, query) for name, (query, _) in queries.items() if name != "consistency"]
    # The conflicts are read whole, once: they give both the score and the findings listed. The reads
    # are independent and run side by side (on one snapshot).
    totals, conflicts, *firsts = await side_by_side.gather(
        session,
        lambda s: repository.totals(s, checks),
        lambda s: repository.rows(s, queries["consistency"][0]),
        *[lambda s, q=query: repository.first(s, q, limit) for _, query in listed_rows],
    )
    first_rows = {name: found for (name, _), found in zip(listed_rows, firsts, strict=True)}
    n = totals["customers"]
    traits = list(settings.analytics_required_traits)
    missing = sum(totals[f"missing:{t}"] for t in traits)
    conflicted = sorted({row[0] for row in conflicts})
    dimensions = {
        "accuracy": _dimension(
            "accuracy", n, n - totals["inaccurate"], totals["email"] + totals["phone"] + totals["timezone"]
        ),
        "completeness": _dimension("completeness", n * len(traits), n * len(traits) - missing, missing),
        "consistency": _dimension("consistency", n, n - len(conflicted), len(conflicts)),
        "timeliness": _dimension("timeliness", n, n - totals["stale"], totals["stale"]),
    }
    score = None
    if n:
        score = sum(WEIGHTS[name] * d.score for name, d in dimensions.items())
    findings: list[Finding] = []
    for name, (_, to_findings) in queries.items():
        if name == "consistency":
            listed = set(conflicted[:limit])
            findings += [f for row in conflicts if row[0] in listed for f in _consistency(row)]
            continue
        for row in first_rows[name]:
            findings += to_findings(row)
    return DataQualityOut(
        score=score,
        customers=n,
        required_traits=traits,
        timeliness_days=settings.analytics_timeliness_days,
        findings=findings,
        **dimensions,
    )


async def findings_csv(session: AsyncSession, settings: Settings, *, now: datetime) -> AsyncIterator[str]:
    """Every finding, as CSV text in chunks (streamed: the list can be as long as the customer base)."""
    await for_reports(session)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for rows, to_findings in _queries(_checks(session, settings, now), settings).values():
        async for row in repository.stream(session, rows):
            for f in to_findings(row):
                writer.writerow(
                    [f.dimension, f.customer_id, _cell(f.user_id or ""), _cell(f.field), f.problem]
                )
            if buffer.tell() > 64_000:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()
