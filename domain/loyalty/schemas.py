"""Programme configuration and the shapes the loyalty API takes and returns."""

from __future__ import annotations

from copy import copy
from datetime import UTC, datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from domain.db import StoredTime

MAX_POINTS = 1_000_000_000  # per operation; balances are 64-bit
RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# Validation context for the programme read back from the database, which may predate a rule.
STORED = "stored"

# Events the programme itself emits. Earning from them would feed points back into points.
POINTS_EARNED = "Points Earned"
POINTS_REDEEMED = "Points Redeemed"
POINTS_ADJUSTED = "Points Adjusted"
POINTS_EXPIRED = "Points Expired"
POINTS_EXPIRING_SOON = "Points Expiring Soon"
TIER_CHANGED = "Tier Changed"
OWN_EVENTS = frozenset(
    {POINTS_EARNED, POINTS_REDEEMED, POINTS_ADJUSTED, POINTS_EXPIRED, POINTS_EXPIRING_SOON, TIER_CHANGED}
)


class EarnRule(BaseModel):
    """Points for a track event: a fixed number, or so many per currency unit of a property."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=RULE_ID, description="Stable name; part of each award's idempotency key.")
    event: str = Field(min_length=1, max_length=255, description="Track event name that earns.")
    where: dict[str, Any] = Field(default_factory=dict, description="Event properties that must equal.")
    points: StrictInt | None = Field(None, gt=0, le=MAX_POINTS, description="Fixed points per event.")
    points_per_unit: float | None = Field(
        None, gt=0, le=1_000_000, description="Points per currency unit of `amount_property` (floored)."
    )
    amount_property: str = Field("revenue", min_length=1, max_length=255)
    cap_per_day: StrictInt | None = Field(None, gt=0, le=MAX_POINTS, description="Per customer, UTC day.")
    cap_per_month: StrictInt | None = Field(None, gt=0, le=MAX_POINTS, description="Per customer, month.")
    since: StoredTime | None = Field(
        None, description="Events before this time do not earn; defaults to when the rule was added."
    )

    @field_validator("event")
    @classmethod
    def _not_our_own(cls, value: str) -> str:
        if value in OWN_EVENTS:
            raise ValueError(f"{value!r} is emitted by the loyalty programme itself and cannot earn points")
        return value

    @field_validator("since")
    @classmethod
    def _with_offset(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        # Event times are instants: one compared with a time without an offset failed every earning
        # pass, for every customer, for as long as the rule stood.
        if value is None or value.tzinfo is not None:
            return value
        if (info.context or {}).get(STORED):
            return value.replace(tzinfo=UTC)  # saved before an offset was required
        raise ValueError("give the time with its offset, e.g. 2024-01-01T00:00:00Z")

    @model_validator(mode="after")
    def _one_amount(self) -> EarnRule:
        if (self.points is None) == (self.points_per_unit is None):
            raise ValueError("give exactly one of 'points' (fixed) or 'points_per_unit' (per currency unit)")
        return self


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    threshold: StrictInt = Field(ge=0, le=10 * MAX_POINTS, description="Qualifying points to reach it.")
    multiplier: float = Field(1.0, gt=0, le=100, description="Applied to points earned from events.")


def _default_tiers() -> list[Tier]:
    return [Tier(name="member", threshold=0)]


class ProgramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[EarnRule] = Field(default_factory=list, max_length=200)
    tiers: list[Tier] = Field(default_factory=_default_tiers, min_length=1, max_length=20)
    tier_window_months: int | None = Field(
        12, ge=1, le=120, description="Tier counts points earned in this many months; null: lifetime."
    )
    expiry_months: int | None = Field(
        None, ge=1, le=120, description="Earned points expire after this many months; null: never."
    )
    expiry_warning_days: int = Field(30, ge=1, le=365, description="`Points Expiring Soon` lead time.")

    @field_validator("rules")
    @classmethod
    def _unique_rule_ids(cls, rules: list[EarnRule]) -> list[EarnRule]:
        seen: set[str] = set()
        for i, rule in enumerate(rules):
            if rule.id in seen:
                raise ValueError(f"rules[{i}].id {rule.id!r} is used more than once")
            seen.add(rule.id)
        return rules

    @field_validator("tiers")
    @classmethod
    def _ordered_tiers(cls, tiers: list[Tier]) -> list[Tier]:
        if tiers[0].threshold != 0:
            raise ValueError("tiers[0].threshold must be 0: every member is in some tier")
        names: set[str] = set()
        for i, tier in enumerate(tiers):
            if tier.name in names:
                raise ValueError(f"tiers[{i}].name {tier.name!r} is used more than once")
            names.add(tier.name)
            if i and tier.threshold <= tiers[i - 1].threshold:
                raise ValueError(f"tiers[{i}].threshold must be greater than tiers[{i - 1}].threshold")
        return tiers

    def tier_for(self, points: int) -> Tier:
        return [t for t in self.tiers if t.threshold <= points][-1]

    def next_tier(self, points: int) -> Tier | None:
        return next((t for t in self.tiers if t.threshold > points), None)

    def tier_named(self, name: str) -> Tier | None:
        return next((t for t in self.tiers if t.name == name), None)


class _ProgramSpec(ProgramConfig):
    def config(self) -> ProgramConfig:
        return ProgramConfig.model_validate(self.model_dump())


def _required(info: FieldInfo) -> FieldInfo:
    """The field as declared (type, bounds, description) without its default."""
    info = copy(info)
    info.default, info.default_factory = PydanticUndefined, None
    return info


# What ``PUT /api/loyalty/program`` takes: the whole programme. It replaces the stored one, so every
# field of ProgramConfig, with its bounds, must be given (``null`` where that means "none"); a field
# left out is refused rather than reset to its default (an empty body would wipe rules and tiers).
ProgramIn = create_model(
    "ProgramIn",
    __base__=_ProgramSpec,
    __doc__="The whole programme: every field is required ([] or null where that means none).",
    **{name: (info.annotation, _required(info)) for name, info in ProgramConfig.model_fields.items()},
)


class ProgramOut(BaseModel):
    config: ProgramConfig
    version: int
    updated_at: datetime | None


class RedeemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: StrictInt = Field(gt=0, le=MAX_POINTS, description="Whole points to spend.")
    reason: str | None = Field(None, max_length=500)


class AdjustIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: StrictInt = Field(description="Whole points; positive credits, negative debits.")
    reason: str = Field(min_length=1, max_length=500, description="Why: shown in the history.")

    @field_validator("points")
    @classmethod
    def _nonzero(cls, value: int) -> int:
        if value == 0 or abs(value) > MAX_POINTS:
            raise ValueError(f"must be a non-zero whole number between -{MAX_POINTS} and {MAX_POINTS}")
        return value

    @field_validator("reason")
    @classmethod
    def _said(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must say why the points are adjusted")
        return value.strip()


class EntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    points: int
    balance_after: int
    reason: str | None
    source: str
    rule_id: str | None
    event_id: int | None
    idempotency_key: str
    occurred_at: datetime
    expires_at: datetime | None
    created_at: datetime


class LotOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    entry_id: int
    points: int
    remaining: int
    earned_at: datetime
    expires_at: datetime | None


class AccountOut(BaseModel):
    customer_id: int
    balance: int
    tier: str
    tier_points: int = Field(description="Points counting towards the tier (window or lifetime).")
    next_tier: str | None
    points_to_next_tier: int | None
    lifetime_earned: int
    expiring_points: int = Field(description="Points in lots that expire within the window asked for.")
    expiring: list[LotOut]


class MovementOut(BaseModel):
    """The result of a redeem or adjust: the entry and the balance after it."""

    entry: EntryOut | None = Field(
        description="The entry; null for a replay whose entry was recorded on a profile since merged into "
        "this one (the merge brought its points over)."
    )
    balance: int = Field(description="The balance now (after the movement, or after a replay).")
    tier: str = Field(description="The member's tier now.")
    replayed: bool = Field(description="True when this idempotency key had already been applied.")


class LedgerState(BaseModel):
    balance: int
    tier: str
    tier_points: int
    lots: dict[int, int] = Field(description="Remaining points per open lot (entry id).")


class AuditOut(BaseModel):
    customer_id: int
    stored: LedgerState
    recomputed: LedgerState
    problems: list[str]
    consistent: bool
