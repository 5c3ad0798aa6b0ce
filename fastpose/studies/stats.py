"""Group statistics for ``compare --sweep`` / ``--by``: descriptive summaries and Welch's t-test. Torch-free.

- ``describe(values)``: n (finite values only), mean, sample standard deviation (ddof = 1; NaN when n < 2),
  min and max.
- ``welch(a, b)``: the difference of means ``mean(a) - mean(b)``, its 95 % confidence interval and the
  two-sided p-value of Welch's unequal-variances t-test. t and p come from
  ``scipy.stats.ttest_ind(a, b, equal_var=False)``; the interval is ``diff ± t_{0.975, df} · se`` with
  ``se = sqrt(s_a²/n_a + s_b²/n_b)`` and the Welch–Satterthwaite degrees of freedom
  ``df = se⁴ / ((s_a²/n_a)²/(n_a-1) + (s_b²/n_b)²/(n_b-1))``, the interval that test inverts.
  Needs n >= 2 in both groups (else None). When both groups have no spread at all (se = 0) there is no
  t distribution: p is 0 if the means differ and 1 if not, and the interval is the difference itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

TEST_NAME = "Welch's t-test (scipy.stats.ttest_ind, equal_var=False), two-sided"


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    sd: float
    min: float
    max: float


@dataclass(frozen=True)
class Welch:
    diff: float  # mean(a) - mean(b)
    ci_low: float
    ci_high: float
    t: float
    df: float
    p: float
    n_a: int
    n_b: int
    confidence: float = 0.95


def finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def describe(values: Sequence[float | None]) -> Summary:
    vals = finite(values)
    n = len(vals)
    if n == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan)
    mean = math.fsum(vals) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else float("nan")
    return Summary(n, mean, sd, min(vals), max(vals))


def welch(a: Sequence[float | None], b: Sequence[float | None], confidence: float = 0.95) -> Welch | None:
    a, b = finite(a), finite(b)
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    sa, sb = describe(a), describe(b)
    diff = sa.mean - sb.mean
    va, vb = sa.sd**2 / sa.n, sb.sd**2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Welch(diff, diff, diff, math.copysign(math.inf, diff) if diff else 0.0, float("nan"),
                     1.0 if diff == 0 else 0.0, sa.n, sb.n, confidence)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    result = stats.ttest_ind(a, b, equal_var=False)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Welch(diff, diff - half, diff + half, float(result.statistic), df, float(result.pvalue), sa.n, sb.n,
                 confidence)
