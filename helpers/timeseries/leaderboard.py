"""One leaderboard for forecasters from any library that speaks sktime's interface.

Two views of accuracy on the same series:

* **hold-out**: fit on everything but the last ``test_size`` points, forecast them all at once;
* **backtest**: sktime's ``evaluate`` over an expanding window (``ExpandingWindowSplitter``):
  refit at each cutoff, forecast the next ``horizon`` points, average over folds.

Metrics come from :mod:`helpers.timeseries.metrics` (sktime's metric functions): MASE, sMAPE,
MAPE and the empirical coverage of the ``coverage`` prediction interval. Fit times are wall-clock
and therefore machine-dependent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers import validate
from helpers.timeseries.metrics import interval_coverage, point_metrics, scorers

__all__ = ["Leaderboard", "run_leaderboard"]


@dataclass
class Leaderboard:
    """Hold-out and backtest tables (rows: models), per-fold details, fit times and forecasts."""

    holdout: pd.DataFrame
    backtest: pd.DataFrame
    folds: pd.DataFrame
    fit_seconds: pd.DataFrame
    predictions: dict[str, pd.Series] = field(repr=False)
    intervals: dict[str, pd.DataFrame] = field(repr=False)

    def table(self, digits: int = 3) -> pd.DataFrame:
        """Hold-out and backtest metrics side by side, sorted by hold-out MASE."""
        both = pd.concat({"hold-out": self.holdout, "backtest": self.backtest}, axis=1)
        return both.sort_values(("hold-out", "MASE")).round(digits)


def _check(forecasters: Mapping, y: pd.Series, test_size: int, horizon: int, initial_window: int, sp: int, coverage: float) -> None:
    from sktime.forecasting.base import (
        BaseForecaster,  # heavy: sktime loads on first use (lessons 06-07)
    )

    if not isinstance(forecasters, Mapping) or not forecasters:
        raise TypeError("forecasters must be a non-empty mapping name -> sktime forecaster")
    for name, f in forecasters.items():
        if not isinstance(f, BaseForecaster):
            raise TypeError(f"forecasters[{name!r}] is a {type(f).__name__}, not an sktime forecaster")
    if not isinstance(y, pd.Series):
        raise TypeError(f"y must be a pd.Series, got {type(y).__name__}")
    for arg, value in (("test_size", test_size), ("horizon", horizon), ("initial_window", initial_window), ("sp", sp)):
        validate.positive_int(arg, value)
    if test_size + sp >= len(y):
        raise ValueError(f"test_size={test_size} leaves too little training data for sp={sp} (len(y)={len(y)})")
    if initial_window + horizon > len(y):
        raise ValueError(f"initial_window={initial_window} + horizon={horizon} exceeds len(y)={len(y)}")
    if not 0 < coverage < 1:
        raise ValueError(f"coverage={coverage!r}: must be in (0, 1)")


def run_leaderboard(
    forecasters: Mapping,
    y: pd.Series,
    test_size: int = 36,
    horizon: int = 12,
    initial_window: int = 96,
    sp: int = 12,
    coverage: float = 0.9,
) -> Leaderboard:
    """Hold-out + expanding-window backtest for every forecaster (cloned, never mutated)."""
    from sktime.forecasting.base import (
        ForecastingHorizon,  # heavy: sktime loads on first use (lessons 06-07)
    )
    from sktime.forecasting.model_evaluation import (
        evaluate,  # heavy: sktime loads on first use (lessons 06-07)
    )
    from sktime.split import (  # heavy: sktime loads on first use (lessons 06-07)
        ExpandingWindowSplitter,
        temporal_train_test_split,
    )

    _check(forecasters, y, test_size, horizon, initial_window, sp, coverage)
    y_train, y_test = temporal_train_test_split(y, test_size=test_size)
    fh = ForecastingHorizon(y_test.index, is_relative=False)
    cv = ExpandingWindowSplitter(fh=np.arange(1, horizon + 1), initial_window=initial_window, step_length=horizon)
    holdout, backtest, folds, times, preds, ivals = {}, {}, [], {}, {}, {}
    for name, forecaster in forecasters.items():
        f = forecaster.clone()
        t0 = time.perf_counter()
        f.fit(y_train, fh=fh)
        fit_s = time.perf_counter() - t0
        pred = f.predict()
        iv = f.predict_interval(coverage=coverage)
        iv.columns = ["lower", "upper"]
        preds[name], ivals[name] = pred, iv
        holdout[name] = {
            **point_metrics(y_test, pred, y_train, sp=sp),
            "coverage": interval_coverage(y_test, iv["lower"], iv["upper"]),
        }
        # a point metric makes evaluate return y_pred; the interval metric makes it call predict_interval
        res = evaluate(forecaster.clone(), cv, y, scoring=scorers(sp=sp, coverage=coverage)[::3], return_data=True)
        cov_col = next(c for c in res.columns if c.startswith("test_EmpiricalCoverage"))
        rows = []
        for i, r in res.iterrows():
            row = {"model": name, "fold": i, "cutoff": str(r["cutoff"]), **point_metrics(r["y_test"], r["y_pred"], r["y_train"], sp=sp)}
            row["coverage"] = float(r[cov_col])
            row["fit_s"] = float(r["fit_time"])
            rows.append(row)
        fold_df = pd.DataFrame(rows)
        folds.append(fold_df)
        backtest[name] = fold_df[["MASE", "sMAPE", "MAPE", "coverage"]].mean().to_dict()
        times[name] = {"hold-out fit [s]": fit_s, "backtest fit per fold [s]": float(fold_df["fit_s"].mean())}
    return Leaderboard(
        holdout=pd.DataFrame(holdout).T,
        backtest=pd.DataFrame(backtest).T,
        folds=pd.concat(folds, ignore_index=True),
        fit_seconds=pd.DataFrame(times).T,
        predictions=preds,
        intervals=ivals,
    )
