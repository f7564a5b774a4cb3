"""Quantile forecasts for models that give only a point, scored alongside sample-path models.

Lesson 07 compares DeepAR (sample paths) with a global linear model and a seasonal naive
forecast. A point forecast scored by a quantile loss is scored by its absolute error alone, so
a fair comparison first gives every contender quantiles:

* :func:`seasonal_naive_quantiles` - the seasonal naive forecast with the normal intervals of
  Hyndman & Athanasopoulos, *FPP3* §5.5 (Table 5.2): ``sigma_h = sigma * sqrt(k + 1)`` with
  ``k = floor((h - 1) / m)``, ``sigma`` from the in-sample seasonal-naive residuals;
* :func:`conformal_quantiles` - split-conformal quantiles: the point forecast times empirical
  quantiles of ``actual / forecast`` ratios from earlier, held-out forecast windows
  (scale-free, so one pool serves stores of different size);
* :func:`to_gluonts` - wrap the arrays as GluonTS ``QuantileForecast`` objects so one
  ``Evaluator`` scores every model with the same code;
* :func:`quantile_calibration` - the observed share of actuals at or below each quantile
  (a calibrated forecast's share equals the level: the PIT idea on a grid of levels).

And the leakage test used in lesson 07: :func:`future_dependence` - a forecast made at a cutoff
must not change when values *after* the cutoff change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "conformal_quantiles",
    "future_dependence",
    "quantile_calibration",
    "seasonal_naive_quantiles",
    "to_gluonts",
]


def _levels(levels: Sequence[float]) -> np.ndarray:
    lv = np.asarray(levels, dtype=float)
    if lv.ndim != 1 or len(lv) == 0 or np.any((lv <= 0) | (lv >= 1)) or np.any(np.diff(lv) <= 0):
        raise ValueError(f"levels={list(levels)!r}: must be increasing values in (0, 1)")
    return lv


def seasonal_naive_quantiles(y_train: np.ndarray, horizon: int, m: int, levels: Sequence[float]) -> np.ndarray:
    """Seasonal naive quantiles, shape ``(len(levels), horizon)`` (FPP3 §5.5, normal errors).

    The point (the 0.5 quantile) repeats the last season; ``sigma`` is the root mean square of the
    in-sample residuals ``y_t - y_{t-m}``."""
    y = np.asarray(y_train, dtype=float).ravel()
    if not isinstance(m, int) or m < 1 or len(y) <= m:
        raise ValueError(f"m={m!r}: must be a positive int smaller than len(y_train)={len(y)}")
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon={horizon!r}: must be a positive int")
    lv = _levels(levels)
    h = np.arange(1, horizon + 1)
    point = y[len(y) - m + (h - 1) % m]
    sigma = np.sqrt(np.mean((y[m:] - y[:-m]) ** 2))
    sigma_h = sigma * np.sqrt((h - 1) // m + 1)
    return point[None, :] + stats.norm.ppf(lv)[:, None] * sigma_h[None, :]


def conformal_quantiles(point: np.ndarray, ratios: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """``point * quantile(ratios, level)`` for each level: shape ``(len(levels),) + point.shape``.

    ``ratios`` are ``actual / forecast`` from held-out windows of the same model (split conformal
    prediction; e.g. Stankeviciute, Alaa & van der Schaar, NeurIPS 2021, for time series)."""
    r = np.asarray(ratios, dtype=float).ravel()
    if len(r) < 10 or not np.all(np.isfinite(r)):
        raise ValueError(f"ratios: need at least 10 finite values, got {len(r)}")
    q = np.quantile(r, _levels(levels), method="higher")
    return q.reshape((-1,) + (1,) * np.ndim(point)) * np.asarray(point, dtype=float)[None, ...]


def to_gluonts(quantiles: np.ndarray, levels: Sequence[float], starts: Sequence[pd.Period], item_ids: Sequence[str],
               mean: np.ndarray | None = None) -> list:
    """GluonTS ``QuantileForecast`` objects from an array ``(n_series, len(levels), horizon)``.

    ``mean`` (``(n_series, horizon)``), when given, is stored as the forecast's mean (GluonTS's
    Evaluator uses it for MSE; without it GluonTS substitutes the median and says so)."""
    from gluonts.model.forecast import (
        QuantileForecast,  # heavy: gluonts loads on first use (lesson 07)
    )

    arr = np.asarray(quantiles, dtype=float)
    lv = _levels(levels)
    if arr.ndim != 3 or arr.shape[0] != len(starts) or arr.shape[0] != len(item_ids) or arr.shape[1] != len(lv):
        raise ValueError(f"quantiles has shape {arr.shape}; want (n_series={len(starts)}, n_levels={len(lv)}, horizon)")
    keys = [str(float(q)) for q in lv]
    arrays = list(np.sort(arr, axis=1))
    if mean is not None:
        m = np.asarray(mean, dtype=float)
        if m.shape != (arr.shape[0], arr.shape[2]):
            raise ValueError(f"mean has shape {m.shape}; want (n_series, horizon) = {(arr.shape[0], arr.shape[2])}")
        arrays, keys = [np.vstack([a, row]) for a, row in zip(arrays, m, strict=True)], [*keys, "mean"]
    return [QuantileForecast(a, start_date=s, forecast_keys=keys, item_id=i)
            for a, s, i in zip(arrays, starts, item_ids, strict=True)]


def quantile_calibration(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> pd.Series:
    """Share of ``actual`` at or below each quantile (index: the level).

    ``quantiles`` has the levels on axis 1: ``(n_series, n_levels, horizon)``; ``actual`` is
    ``(n_series, horizon)``."""
    q = np.asarray(quantiles, dtype=float)
    y = np.asarray(actual, dtype=float)
    lv = _levels(levels)
    if q.ndim != 3 or q.shape[1] != len(lv) or y.shape != (q.shape[0], q.shape[2]):
        raise ValueError(f"actual {y.shape} and quantiles {q.shape} do not match (n_series, n_levels, horizon)")
    return pd.Series((y[:, None, :] <= q).mean(axis=(0, 2)), index=pd.Index(lv, name="level"), name="observed")


def future_dependence(forecast: Callable[[pd.Series], pd.Series], y: pd.Series, test_size: int, factor: float = 1.5) -> float:
    """Largest relative change of a forecast when the last ``test_size`` values of ``y`` change.

    ``forecast(y)`` must forecast the last ``test_size`` points of ``y``, supposedly from the
    values before them only. The test multiplies those future values by ``factor`` and calls it
    again: an honest forecast is unchanged (the result is exactly 0); a forecast that saw the
    future (a scaler, detrender or deseasonaliser fitted on the whole series) moves."""
    if not isinstance(y, pd.Series):
        raise TypeError(f"y must be a pd.Series, got {type(y).__name__}")
    if not isinstance(test_size, int) or not 0 < test_size < len(y):
        raise ValueError(f"test_size={test_size!r}: must be an int in 1..{len(y) - 1}")
    if factor == 1:
        raise ValueError("factor=1 changes nothing; use e.g. 1.5")
    changed = y.copy()
    changed.iloc[-test_size:] = changed.iloc[-test_size:] * factor
    a = np.asarray(forecast(y), dtype=float)
    b = np.asarray(forecast(changed), dtype=float)
    return float(np.max(np.abs(b - a) / np.maximum(np.abs(a), 1e-12)))
