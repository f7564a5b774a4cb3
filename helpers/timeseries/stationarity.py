"""Unit-root and stationarity tests side by side (ADF and KPSS from statsmodels).

ADF's null is "unit root" (non-stationary); KPSS's null is "stationary". Reading both avoids the
classic mistake of taking a non-rejection as proof: a series is called stationary here only when
ADF rejects *and* KPSS does not.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

__all__ = ["stationarity_table"]


def _result_kwargs(fn: Callable) -> dict:
    # statsmodels >= 0.15 returns a result object when asked (and warns about the old tuple);
    # both unpack as (statistic, p-value, ...), so the code below works with either.
    return {"result_object": True} if "result_object" in inspect.signature(fn).parameters else {}


def _kpss(x: np.ndarray, regression: str) -> tuple[float, float, str]:
    from statsmodels.tools.sm_exceptions import (
        InterpolationWarning,  # heavy: statsmodels loads on first use (lessons 06-07)
    )
    from statsmodels.tsa.stattools import (
        kpss,  # heavy: statsmodels loads on first use (lessons 06-07)
    )

    with warnings.catch_warnings(record=True) as caught:
        # KPSS p-values come from a table covering 0.01..0.10; outside it statsmodels returns
        # the bound and warns. We report the bound explicitly instead ("<0.01" / ">0.1").
        warnings.simplefilter("always", InterpolationWarning)
        stat, p = tuple(kpss(x, regression=regression, nlags="auto", **_result_kwargs(kpss)))[:2]
    bound = ""
    if any(issubclass(w.category, InterpolationWarning) for w in caught):
        bound = "<" if p <= 0.01 else ">"
    for w in caught:  # anything else is not ours to hide
        if not issubclass(w.category, InterpolationWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return float(stat), float(p), bound


def stationarity_table(series: Mapping[str, pd.Series], alpha: float = 0.05, regression: str = "c") -> pd.DataFrame:
    """ADF and KPSS for each named series: statistics, p-values and a joint verdict.

    ``regression`` is the deterministic part of both tests: ``"c"`` (level) or ``"ct"`` (trend).
    """
    from statsmodels.tsa.stattools import (
        adfuller,  # heavy: statsmodels loads on first use (lessons 06-07)
    )

    if regression not in ("c", "ct"):
        raise ValueError(f"regression={regression!r}: allowed values are 'c' and 'ct'")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r}: must be in (0, 1)")
    if not isinstance(series, Mapping) or not series:
        raise TypeError("series must be a non-empty mapping name -> pd.Series")
    rows = []
    for name, s in series.items():
        x = np.asarray(pd.Series(s).dropna(), dtype=float)
        if len(x) < 20:
            raise ValueError(f"series {name!r} has {len(x)} observations; need at least 20")
        adf_stat, adf_p = tuple(adfuller(x, regression=regression, autolag="AIC", **_result_kwargs(adfuller)))[:2]
        kpss_stat, kpss_p, bound = _kpss(x, regression)
        adf_rejects = adf_p < alpha
        kpss_rejects = kpss_p < alpha
        verdict = {
            (True, False): "stationary",
            (False, True): "non-stationary",
            (True, True): "conflicting",
            (False, False): "inconclusive",
        }[(adf_rejects, kpss_rejects)]
        rows.append(
            {
                "series": name,
                "n": len(x),
                "ADF stat": round(float(adf_stat), 3),
                "ADF p": round(float(adf_p), 4),
                "KPSS stat": round(kpss_stat, 3),
                "KPSS p": f"{bound}{kpss_p:.3g}" if bound else f"{kpss_p:.3g}",
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows).set_index("series")
