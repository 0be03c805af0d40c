"""Confidence intervals for conversion rates and their differences (uplift against a holdout).

Wilson's score interval for one proportion, and Newcombe's hybrid score interval (method 10 of
Newcombe, Statistics in Medicine 1998) for the difference of two independent proportions: it stays
inside [-1, 1] and behaves at rates near 0 or 1 and on small groups, where the textbook Wald interval
does not. The standard library's NormalDist gives the quantile; nothing more is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of successes / trials (trials > 0)."""
    z = _z(confidence)
    p = successes / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    denominator = 1 + z * z / trials
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


@dataclass(frozen=True)
class Difference:
    difference: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def newcombe(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> Difference:
    """x1/n1 - x2/n2 with Newcombe's hybrid score interval (both groups non-empty)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, confidence)
    l2, u2 = wilson(x2, n2, confidence)
    d = p1 - p2
    return Difference(
        difference=d,
        low=d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        high=d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when there is nothing to divide by (never 0, never an error)."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator
