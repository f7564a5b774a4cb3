"""Forecast accuracy through sktime's own metric classes (no re-implementation).

* MASE: mean absolute error scaled by the in-sample seasonal-naive error (Hyndman & Koehler 2006);
  below 1 means better than a seasonal naive forecast *in sample*.
* sMAPE: ``mean(2|y - ŷ| / (|y| + |ŷ|))`` (sktime's ``symmetric=True``).
* MAPE: ``mean(|y - ŷ| / |y|)``.
* coverage: share of test points inside the prediction interval (should be near its nominal level).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers import validate

__all__ = ["METRIC_NAMES", "interval_coverage", "point_metrics", "scorers"]

#: column names used by :func:`point_metrics`, the leaderboard and the lessons
METRIC_NAMES = ("MASE", "sMAPE", "MAPE")


def scorers(sp: int = 1, coverage: float | None = 0.9) -> list:
    """sktime metric objects for ``evaluate``: MASE(sp), sMAPE, MAPE and (optionally) coverage."""
    from sktime.performance_metrics.forecasting import (  # heavy: sktime loads on first use (lessons 06-07)
        MeanAbsolutePercentageError,
        MeanAbsoluteScaledError,
    )

    validate.positive_int("sp (the seasonal period)", sp)
    out = [
        MeanAbsoluteScaledError(sp=sp),
        MeanAbsolutePercentageError(symmetric=True),
        MeanAbsolutePercentageError(symmetric=False),
    ]
    if coverage is not None:
        from sktime.performance_metrics.forecasting.probabilistic import (
            EmpiricalCoverage,  # heavy: sktime loads on first use (lessons 06-07)
        )

        if not 0 < coverage < 1:
            raise ValueError(f"coverage={coverage!r}: must be in (0, 1)")
        out.append(EmpiricalCoverage(coverage=coverage))
    return out


def point_metrics(y_test: pd.Series, y_pred: pd.Series, y_train: pd.Series, sp: int = 1) -> dict[str, float]:
    """MASE, sMAPE and MAPE of a point forecast (sktime's metric functions)."""
    from sktime.performance_metrics.forecasting import (  # heavy: sktime loads on first use (lessons 06-07)
        mean_absolute_percentage_error,
        mean_absolute_scaled_error,
    )

    if len(y_test) != len(y_pred):
        raise ValueError(f"y_test has {len(y_test)} points but y_pred has {len(y_pred)}")
    if not isinstance(sp, int) or sp < 1 or len(y_train) <= sp:
        raise ValueError(f"sp={sp!r}: must be a positive int smaller than len(y_train)={len(y_train)}")
    return {
        "MASE": float(mean_absolute_scaled_error(y_test, y_pred, y_train=y_train, sp=sp)),
        "sMAPE": float(mean_absolute_percentage_error(y_test, y_pred, symmetric=True)),
        "MAPE": float(mean_absolute_percentage_error(y_test, y_pred, symmetric=False)),
    }


def interval_coverage(y_test: pd.Series | np.ndarray, lower: pd.Series | np.ndarray, upper: pd.Series | np.ndarray) -> float:
    """Share of ``y_test`` inside ``[lower, upper]``."""
    y, lo, hi = (np.asarray(a, dtype=float).ravel() for a in (y_test, lower, upper))
    if not (len(y) == len(lo) == len(hi)) or len(y) == 0:
        raise ValueError(f"lengths differ or are zero: y={len(y)}, lower={len(lo)}, upper={len(hi)}")
    if np.any(lo > hi):
        raise ValueError("lower must not exceed upper")
    return float(np.mean((y >= lo) & (y <= hi)))
