"""The statistics behind every number of the leaderboard, with the image as the unit.

- Confidence interval of a mean (Student): ``x̄ ± t_{1−α/2, n−1} · s / √n`` with ``s`` the sample
  standard deviation (n − 1 in the denominator); undefined (NaN) for n < 2.
- Paired comparison of a weighting with ``unweighted`` on the same images: the paired t-test
  (``scipy.stats.ttest_rel``, two-sided, n − 1 dof) or, for n ≤ 12, the exact sign-flip
  permutation test: under H0 (differences symmetric about 0) each of the 2ⁿ sign patterns of the
  differences is equally likely, ``p = #{s : |mean(s·d)| ≥ |mean(d)|} / 2ⁿ`` (Fisher 1935;
  Good, *Permutation Tests*, 2000, §3.1). With n images its smallest p is 2/2ⁿ (0.0625 for n = 5).
- Holm's step-down correction (Holm, Scand. J. Statist. 6, 1979): with the m p-values sorted,
  ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j))``; it controls the family-wise error rate.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np

# Beyond this many images the 2ⁿ sign patterns stop being cheap; the t-test is used instead.
SIGN_FLIP_MAX_N = 12
TESTS = ("t", "sign-flip")


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2.0


def finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


@functools.lru_cache(maxsize=256)
def t_quantile(confidence: float, dof: int) -> float:
    """``t_{(1+c)/2, dof}``, the two-sided quantile (cached: a table asks for few dof)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2.0, dof))


def t_interval(values, confidence: float = 0.95) -> Interval:
    """Mean and two-sided Student t-interval of the finite ``values`` (NaN bounds for n < 2)."""
    x = finite(values)
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(np.mean(x))
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = t_quantile(confidence, n - 1) * float(np.std(x, ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


# The columns of a paired comparison (paired_difference) and their headers on the page.
PAIRED_COLUMNS = {
    "mean_diff": "Mean diff (dB)",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "n": "n",
    "significant": "Significant",
}
PAIRED_DIGITS = {"mean_diff": 2, "ci_low": 2, "ci_high": 2, "n": 0}


def paired_difference(a, b, confidence: float = 0.95) -> dict[str, float | int | bool]:
    """``a − b`` paired by index (pandas Series over images; pairs with a NaN dropped): the mean,
    its t-interval, n, and whether the interval excludes 0 (``significant``)."""
    d = (a - b).dropna().to_numpy(np.float64)
    iv = t_interval(d, confidence)
    significant = bool(np.isfinite(iv.low) and (iv.low > 0 or iv.high < 0))
    return {"mean_diff": iv.mean, "ci_low": iv.low, "ci_high": iv.high, "n": iv.n,
            "significant": significant}  # fmt: skip


def sign_flip_p(diffs) -> float:
    """Exact two-sided sign-flip permutation p-value of the mean of paired differences."""
    d = finite(diffs)
    n = int(d.size)
    if n == 0:
        return math.nan
    if n > SIGN_FLIP_MAX_N:
        raise ValueError(f"the exact sign-flip test enumerates 2^n patterns; n = {n} > 12")
    patterns = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1
    stats = np.abs(patterns @ d) / n
    observed = abs(float(np.mean(d)))
    # A relative tolerance keeps the observed pattern (and its mirror) counted despite rounding.
    tol = 1e-12 * max(1.0, float(np.max(np.abs(d))))
    return float(np.mean(stats >= observed - tol))


def paired_p(a, b, test: str = "t") -> tuple[float, str]:
    """Two-sided p-value of ``mean(a − b) = 0`` over paired finite values, and the test used.

    ``test="sign-flip"`` uses the exact permutation test when n ≤ 12 and falls back to the t-test
    above. NaN when fewer than two pairs or when every difference is equal (zero variance: the
    t statistic is undefined), so such a cell never enters the Holm family.
    """
    from scipy import stats

    if test not in TESTS:
        raise ValueError(f"unknown paired test {test!r}: use one of {list(TESTS)}")
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    d = a - b
    if d.size < 2 or float(np.ptp(d)) == 0.0:
        return math.nan, ""
    if test == "sign-flip" and d.size <= SIGN_FLIP_MAX_N:
        return sign_flip_p(d), "sign-flip"
    with warnings.catch_warnings():
        # Nearly equal differences only warn about precision; the p-value is still returned.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(a, b).pvalue), "t"


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values; NaN entries stay NaN and do not count in the family size m."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    if m == 0:
        return out
    # A stable sort makes tied p-values keep their table order, so reruns give the same bytes.
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out
