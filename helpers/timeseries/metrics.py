"""Forecast accuracy through sktime's own metric classes (no re-implementation).

* MASE: mean absolute error scaled by the in-sample seasonal-naive error (Hyndman & Koehler 2006);
  below 1 means better than a seasonal naive forecast *in sample*.
* sMAPE: ``mean(2|y - ŷ| / (|y| + |ŷ|))`` (sktime's ``symmetric=True``).
* MAPE: ``mean(|y - ŷ| / |y|)``.
* coverage: share of test points inside the prediction interval (should be near its nominal level).

Competition metrics (lesson 09, plain numpy on arrays, one series per call unless stated):

* :func:`smape`: M3/M4 sMAPE on 0-200, ``mean_h 200|y - f| / (|y| + |f|)`` (Makridakis & Hibon 2000;
  M4 competitor's guide), equal to 100 x sktime's ``symmetric=True`` MAPE.
* :func:`mase`: MAE over the in-sample seasonal-naive MAE with period ``m`` (Hyndman & Koehler 2006).
* :func:`msis`: mean scaled interval score of a ``1 - alpha`` interval (M4 guide), the interval score
  of Gneiting & Raftery (2007) divided by the same in-sample seasonal-naive MAE.
* :func:`owa`: overall weighted average of relative sMAPE and MASE against Naive2 (M4 guide).
* :func:`crps_from_quantiles`: CRPS approximated by scoringrules' pinball-loss average over an
  evenly spaced quantile grid; :func:`pit_from_quantiles` the matching PIT values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers import validate

__all__ = [
    "METRIC_NAMES",
    "QUANTILE_LEVELS",
    "crps_from_quantiles",
    "interval_coverage",
    "mape",
    "mase",
    "msis",
    "owa",
    "pit_from_quantiles",
    "point_metrics",
    "scorers",
    "seasonal_scale",
    "smape",
]

#: column names used by :func:`point_metrics`, the leaderboard and the lessons
METRIC_NAMES = ("MASE", "sMAPE", "MAPE")

#: the quantile grid every lesson-09 contender reports: 0.025, 0.05, ..., 0.975 (39 even levels, so
#: the 95 % interval is the first and last level and the median the middle one)
QUANTILE_LEVELS = tuple(round(k / 40, 3) for k in range(1, 40))


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


# ----------------------------------------------------------------------------- competition metrics
def _pair(y: object, f: object, names: tuple[str, str] = ("y", "forecast")) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(y, dtype=float), np.asarray(f, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"{names[0]} and {names[1]} must have the same non-empty shape, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"{names[0]} and {names[1]} must be finite")
    return a, b


def smape(y: object, forecast: object) -> float:
    """M3/M4 sMAPE in percent (0-200) of one series: ``mean_h 200|y - f| / (|y| + |f|)``."""
    a, b = _pair(y, forecast)
    denom = np.abs(a) + np.abs(b)
    terms = np.divide(200.0 * np.abs(a - b), denom, out=np.zeros_like(a), where=denom > 0)
    return float(terms.mean())


def mape(y: object, forecast: object) -> float:
    """MAPE in percent of one series: ``mean_h 100|y - f| / |y|`` (``y`` must not contain zeros)."""
    a, b = _pair(y, forecast)
    if np.any(a == 0):
        raise ValueError("y contains zeros: MAPE is undefined")
    return float(np.mean(100.0 * np.abs(a - b) / np.abs(a)))


def seasonal_scale(y_train: object, m: int) -> float:
    """In-sample MAE of the seasonal naive forecast: ``mean_t |y_t - y_{t-m}|`` (MASE/MSIS denominator)."""
    validate.positive_int("m (the seasonal period)", m)
    x = np.asarray(y_train, dtype=float).ravel()
    if len(x) <= m:
        raise ValueError(f"y_train has {len(x)} points; needs more than m={m}")
    scale = float(np.mean(np.abs(x[m:] - x[:-m])))
    if not scale > 0:
        raise ValueError("y_train is constant at lag m: the seasonal-naive scale is zero")
    return scale


def mase(y: object, forecast: object, y_train: object, m: int) -> float:
    """Mean absolute scaled error with seasonal period ``m`` (Hyndman & Koehler 2006)."""
    a, b = _pair(y, forecast)
    return float(np.mean(np.abs(a - b)) / seasonal_scale(y_train, m))


def msis(y: object, lower: object, upper: object, y_train: object, m: int, alpha: float = 0.05) -> float:
    """Mean scaled interval score of the ``1 - alpha`` interval ``[lower, upper]`` (M4 guide)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r}: must be in (0, 1)")
    a, lo = _pair(y, lower, ("y", "lower"))
    _, hi = _pair(y, upper, ("y", "upper"))
    if np.any(lo > hi):
        raise ValueError("lower must not exceed upper")
    score = (hi - lo) + (2 / alpha) * (lo - a) * (a < lo) + (2 / alpha) * (a - hi) * (a > hi)
    return float(np.mean(score) / seasonal_scale(y_train, m))


def owa(smape_value: float, mase_value: float, smape_naive2: float, mase_naive2: float) -> float:
    """M4's overall weighted average: ``(sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) / 2``."""
    for name, v in (("smape_naive2", smape_naive2), ("mase_naive2", mase_naive2)):
        validate.positive_finite(name, v)
    return 0.5 * (smape_value / smape_naive2 + mase_value / mase_naive2)


def _levels(levels: object, k: int) -> np.ndarray:
    lv = np.asarray(levels, dtype=float).ravel()
    if len(lv) != k or np.any(np.diff(lv) <= 0) or lv[0] <= 0 or lv[-1] >= 1:
        raise ValueError(f"levels must be {k} increasing values in (0, 1), got {lv.tolist()}")
    return lv


def crps_from_quantiles(y: object, quantiles: object, levels: object = QUANTILE_LEVELS) -> np.ndarray:
    """CRPS per observation from quantile forecasts (``quantiles[..., j]`` at ``levels[j]``), by
    scoringrules' ``crps_quantile``: ``2 / |Q| sum_q pinball_q``, an approximation from an even grid."""
    import scoringrules as sr  # light, but only lesson 09 needs it

    q = np.asarray(quantiles, dtype=float)
    a = np.asarray(y, dtype=float)
    if q.shape[:-1] != a.shape:
        raise ValueError(f"quantiles must have shape y.shape + (levels,), got {q.shape} for y {a.shape}")
    lv = _levels(levels, q.shape[-1])
    return np.asarray(sr.crps_quantile(a, np.sort(q, axis=-1), lv, backend="numpy"), dtype=float)


def pit_from_quantiles(y: object, quantiles: object, levels: object = QUANTILE_LEVELS) -> np.ndarray:
    """Probability integral transform ``F(y)`` by linear interpolation of the quantile grid
    (clipped to the outermost levels); uniform on (0, 1) for a calibrated forecaster."""
    q = np.sort(np.asarray(quantiles, dtype=float), axis=-1)
    a = np.asarray(y, dtype=float)
    if q.shape[:-1] != a.shape:
        raise ValueError(f"quantiles must have shape y.shape + (levels,), got {q.shape} for y {a.shape}")
    lv = _levels(levels, q.shape[-1])
    flat_q, flat_y = q.reshape(-1, q.shape[-1]), a.ravel()
    out = np.array([np.interp(v, row, lv) for v, row in zip(flat_y, flat_q, strict=True)])
    return out.reshape(a.shape)
