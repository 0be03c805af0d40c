"""The queue's page cursor: where the last page ended, in the order the cases stood when the walk began.

Ordering on the live columns would move a case between pages when it changes: a claim puts its
deadline later (it shows again), a breach raises its priority among cases due at the same moment (it
is skipped). So every page orders cases as they stood at the walk's start ``at``, which the stored
times tell exactly: the deadline that counted then (first response until ``first_responded_at``, then
resolution, none once ``resolved_at``), and the rank before a breach made since. The token is opaque
to clients (base64url of JSON) and carries ``at`` and the last case's key in that order.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from domain.cases.models import Case


@dataclass(frozen=True)
class QueueKey:
    """A case's place in the queue as it stood at ``at``."""

    at: datetime
    due: datetime | None  # the deadline that counted; None = finished by then
    resolved: datetime | None  # when finished by then, else None
    rank: int
    case_id: int


def key_of(case: Case, at: datetime) -> QueueKey:
    """Mirrors repository.queue_as_of: the same rules in SQL."""
    finished = case.resolved_at is not None and case.resolved_at <= at
    if finished:
        due = None
    elif case.first_responded_at is not None and case.first_responded_at <= at:
        due = case.resolution_due
    else:
        due = case.first_response_due
    breached_since = case.breached_at is not None and case.breached_at > at
    rank = case.priority_rank
    if breached_since and case.opened_priority_rank is not None:
        rank = case.opened_priority_rank
    return QueueKey(at, due, case.resolved_at if finished else None, rank, case.id)


def encode(key: QueueKey) -> str:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    raw = json.dumps([iso(key.at), iso(key.due), iso(key.resolved), key.rank, key.case_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str) -> QueueKey | None:
    """The key a token holds; None when it is no token ``encode`` made."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        at, due, resolved, rank, case_id = json.loads(raw)
        times = [_time(v) for v in (at, due, resolved)]
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        return None
    if times[0] is None or (times[1] is None) == (times[2] is None):
        return None  # a walk has a start, and a case either had a deadline then or was finished
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (rank, case_id)):
        return None
    if not 0 <= rank <= 3 or not 0 < case_id < 2**63:
        return None
    return QueueKey(times[0], times[1], times[2], rank, case_id)


def _time(value) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)  # TypeError for a non-string, ValueError for a bad one
    if parsed.tzinfo is None:
        raise ValueError("naive")
    return parsed
