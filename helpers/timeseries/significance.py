"""Comparing many methods over many series: ranks, Friedman + Nemenyi, paired bootstrap.

* :func:`average_ranks` ranks the methods within each series (1 = best, ties share the mean rank)
  and averages over series.
* :func:`nemenyi_cd`: two methods differ at level ``alpha`` when their average ranks differ by more
  than ``CD = q_alpha sqrt(k(k+1) / (6N))`` with ``q_alpha`` the studentized range quantile over
  ``sqrt 2`` (Demšar 2006, §3.2.2 and Table 5).
* :func:`bootstrap_difference`: percentile interval of a mean difference, resampling whole series.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from helpers import validate

__all__ = ["average_ranks", "bootstrap_difference", "friedman", "nemenyi_cd", "nemenyi_q", "rank_table"]


def _errors(errors: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(errors, pd.DataFrame):
        raise TypeError(f"errors must be a DataFrame (series x methods), got {type(errors).__name__}")
    if errors.shape[1] < 2 or errors.shape[0] < 2:
        raise ValueError(f"errors needs >= 2 series and >= 2 methods, got shape {errors.shape}")
    if not np.isfinite(errors.to_numpy(dtype=float)).all():
        raise ValueError("errors must be finite")
    return errors


def rank_table(errors: pd.DataFrame) -> pd.DataFrame:
    """Rank of each method within each series (rows): 1 = lowest error, ties averaged."""
    return _errors(errors).rank(axis=1, method="average")


def average_ranks(errors: pd.DataFrame) -> pd.Series:
    """Mean rank of each method over the series, best first."""
    return rank_table(errors).mean().sort_values()


def friedman(errors: pd.DataFrame) -> tuple[float, float]:
    """Friedman's chi-square statistic and p-value (scipy) for "all methods rank alike"."""
    e = _errors(errors)
    res = stats.friedmanchisquare(*(e[c].to_numpy(dtype=float) for c in e.columns))
    return float(res.statistic), float(res.pvalue)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """``q_alpha`` of the Nemenyi test for ``k`` methods: studentized range quantile (infinite
    degrees of freedom) over sqrt(2); 2.569 for k = 4 at 0.05 (Demšar 2006, Table 5a)."""
    validate.integer("k (number of methods)", k, 2)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r}: must be in (0, 1)")
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Critical difference of average ranks for ``k`` methods over ``n`` series."""
    validate.integer("n (number of series)", n, 2)
    return nemenyi_q(k, alpha) * float(np.sqrt(k * (k + 1) / (6 * n)))


def bootstrap_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, level: float = 0.95,
                         seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over series and its percentile bootstrap interval (pairs resampled)."""
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape or len(x) < 2:
        raise ValueError(f"a and b must be paired arrays of >= 2 values, got {x.shape} and {y.shape}")
    validate.positive_int("n_boot", n_boot)
    if not 0 < level < 1:
        raise ValueError(f"level={level!r}: must be in (0, 1)")
    d = x - y
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), float(lo), float(hi)
