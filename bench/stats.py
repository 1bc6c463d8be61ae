"""Differences between two sets of per-seed results, with an interval over seeds.

Used wherever the study asks "does this change move the metric beyond seed noise?": bf16 against
fp32 (reports/precision.md) and each open choice of the paper against our default (the
sensitivity study). Pure functions on arrays; scipy does the distributions.

The test is Welch's t (unequal variances, Welch-Satterthwaite degrees of freedom): seeds are
few (3 to 10), the two arms need not share a spread, and the t interval is exact for normal
per-seed values, where a bootstrap over 3 seeds would be too coarse to trust.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

BEYOND_NOISE = "moves the metric beyond seed noise"
NOT_DETECTABLE = "not detectably"


@dataclass(frozen=True)
class Difference:
    """mean(b) - mean(a) with its Welch standard error, interval and p-value."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    delta: float
    stderr: float
    dof: float
    low: float
    high: float
    p_value: float
    level: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (equivalently p < 1 - level)."""
        return self.low > 0 or self.high < 0

    @property
    def verdict(self) -> str:
        return BEYOND_NOISE if self.significant else NOT_DETECTABLE

    @property
    def standard_errors(self) -> float:
        """|delta| in units of its standard error (inf when the seeds agree exactly)."""
        if self.stderr == 0:
            return 0.0 if self.delta == 0 else math.inf
        return abs(self.delta) / self.stderr


class PerSeedValues:
    """Mixin for a record with `values` (one metric per done seed): their count, mean and
    sample std (ddof 1), NaN where there are too few. Shared by a table's cell and a
    sensitivity arm, so both summarise seeds the same way."""

    values: tuple[float, ...] | list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if len(self.values) else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else math.nan


def _values(name: str, values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size < 2:
        raise ValueError(f"{name} needs at least 2 seeds for a spread; got {a.size}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf (a diverged seed is not a value)")
    return a


def welch_difference(a, b, level: float = 0.95) -> Difference:
    """Welch's t for mean(b) - mean(a) over two sets of per-seed values (>= 2 each)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    a, b = _values("a", a), _values("b", b)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    delta = float(b.mean() - a.mean())
    stderr = math.sqrt(va + vb)
    if stderr == 0:  # both arms constant: no noise to compare against
        p = 1.0 if delta == 0 else 0.0
        return Difference(a.size, b.size, float(a.mean()), float(b.mean()), delta, 0.0, math.inf,
                          delta, delta, p, level)
    # Welch-Satterthwaite degrees of freedom.
    dof = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * stderr
    p = float(2 * stats.t.sf(abs(delta) / stderr, dof))
    return Difference(a.size, b.size, float(a.mean()), float(b.mean()), delta, stderr, float(dof),
                      delta - half, delta + half, p, level)
