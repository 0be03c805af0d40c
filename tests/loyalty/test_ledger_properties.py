"""Random sequences of earn / redeem / expire / adjust, checked after every step against an independent
model and against a recomputation from the ledger alone."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from domain.db import transaction
from domain.loyalty import ledger, maintenance
from domain.loyalty import service as loyalty
from domain.loyalty.schemas import AdjustIn, RedeemIn
from tests.loyalty.helpers import audit, make_customer, set_program

PROGRAM = {
    "tiers": [
        {"name": "member", "threshold": 0},
        {"name": "silver", "threshold": 100},
        {"name": "gold", "threshold": 300},
    ],
    "tier_window_months": 3,
    "expiry_months": 2,
    "expiry_warning_days": 10,
}
START = datetime(2030, 1, 1, tzinfo=UTC)
_customers = itertools.count()

points = st.integers(min_value=1, max_value=150)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("earn"), points),
        st.tuples(st.just("redeem"), points),
        st.tuples(st.just("adjust"), st.integers(min_value=-150, max_value=150).filter(bool)),
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=70)),  # days, then expiry + tiers run
        st.tuples(st.just("retry"), st.just(0)),  # the previous operation again, same idempotency key
    ),
    min_size=1,
    max_size=25,
)


class Model:
    """Lots as the rules describe them: spent oldest first, gone after their expiry."""

    def __init__(self):
        self.lots: list[list] = []  # [earned_at, remaining, expires_at]

    @property
    def balance(self) -> int:
        return sum(lot[1] for lot in self.lots)

    def credit(self, amount: int, at: datetime) -> None:
        self.lots.append([at, amount, ledger.add_months(at, PROGRAM["expiry_months"])])

    def debit(self, amount: int) -> bool:
        if amount > self.balance:
            return False
        for lot in self.lots:
            take = min(lot[1], amount)
            lot[1] -= take
            amount -= take
        return True

    def expire(self, now: datetime) -> None:
        for lot in self.lots:
            if lot[2] <= now:
                lot[1] = 0


@settings(
    max_examples=30,
    # No shrinking: against a database it takes minutes; a failure prints its full operation list.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
async def test_stored_state_always_equals_the_ledger_replay(sessions, ops):
    await set_program(sessions, PROGRAM)
    customer = await make_customer(sessions, f"prop-{next(_customers)}")
    model, now, last = Model(), START, None
    for n, (kind, amount) in enumerate(ops):
        if kind == "retry":
            if last is None:
                continue
            kind, amount, key = last
        else:
            key = f"op-{n}"
        async with transaction(sessions) as session:
            if kind == "earn":
                moved = await loyalty.award(session, customer, key, amount, "test", now)
                if not moved.replayed:
                    model.credit(amount, now)
            elif kind == "redeem":
                try:
                    moved = await loyalty.redeem(session, customer, key, RedeemIn(points=amount), now)
                    assert moved.replayed or model.debit(amount), "the ledger let a redemption overdraw"
                except loyalty.InsufficientPoints:
                    assert amount > model.balance, "a covered redemption was refused"
            elif kind == "adjust":
                try:
                    moved = await loyalty.adjust(
                        session, customer, key, AdjustIn(points=amount, reason="t"), now
                    )
                    if not moved.replayed:
                        assert model.debit(-amount) if amount < 0 else model.credit(amount, now) is None
                except loyalty.InsufficientPoints:
                    assert -amount > model.balance
            elif kind == "wait":
                now += timedelta(days=amount)
                await maintenance.warn_expiring(session, now, 100)
                await maintenance.expire_due(session, now, 100)
                await maintenance.reevaluate_tiers(session, now, after_customer_id=customer - 1, limit=1)
                model.expire(now)
        if kind != "wait":
            last = (kind, amount, key)
        result = await audit(sessions, customer)
        assert result.consistent, (ops[: n + 1], result.problems)
        assert result.stored.balance == model.balance, ops[: n + 1]
        assert sorted(result.stored.lots.values()) == sorted(lot[1] for lot in model.lots if lot[1] > 0)
