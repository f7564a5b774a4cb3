"""One leaderboard for forecasters from any library that speaks sktime's interface.

Two views of accuracy on the same series:

* **hold-out**: fit on everything but the last ``test_size`` points, forecast them all at once;
* **backtest**: sktime's ``evaluate`` over an expanding window (``ExpandingWindowSplitter``) on
  the *training part only*: refit at each cutoff, forecast the next ``horizon`` points, average
  over folds. No fold touches the hold-out, so the two views are independent evidence.

Metrics: MASE (sktime's, seasonal period ``sp``), sMAPE on the M3/M4 scale 0-200
(``200|y - f| / (|y| + |f|)``, i.e. 100 x sktime's symmetric MAPE), the empirical coverage of
the ``coverage`` interval and its MSIS (M4 competitor's guide: the interval score of
Gneiting & Raftery 2007; :func:`helpers.timeseries.metrics.msis`, tested against
``scoringrules.interval_score``, divided by the in-sample seasonal-naive MAE). ``horizon_mase`` holds the backtest's scaled absolute error by step ahead.
Fit times are wall-clock and therefore machine-dependent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers import validate
from helpers.timeseries.metrics import interval_coverage, msis, point_metrics, scorers, seasonal_scale

__all__ = ["METRICS", "Leaderboard", "run_leaderboard"]


@dataclass
class Leaderboard:
    """Hold-out and backtest tables (rows: models), per-fold details, fit times and forecasts."""

    holdout: pd.DataFrame
    backtest: pd.DataFrame
    folds: pd.DataFrame
    horizon_mase: pd.DataFrame
    fit_seconds: pd.DataFrame
    predictions: dict[str, pd.Series] = field(repr=False)
    intervals: dict[str, pd.DataFrame] = field(repr=False)

    def table(self, digits: int = 3) -> pd.DataFrame:
        """Hold-out and backtest metrics side by side, sorted by hold-out MASE."""
        both = pd.concat({"hold-out": self.holdout, "backtest": self.backtest}, axis=1)
        return both.sort_values(("hold-out", "MASE")).round(digits)


#: the columns of :attr:`Leaderboard.holdout` and :attr:`Leaderboard.backtest`
METRICS = ("MASE", "sMAPE", "MSIS", "coverage")


def _scores(y_test: pd.Series, pred: pd.Series, lower: pd.Series, upper: pd.Series, y_train: pd.Series,
            sp: int, coverage: float) -> dict[str, float]:
    point = point_metrics(y_test, pred, y_train, sp=sp)
    return {
        "MASE": point["MASE"],
        "sMAPE": 100.0 * point["sMAPE"],
        "MSIS": msis(y_test, lower, upper, y_train, sp, alpha=1.0 - coverage),
        "coverage": interval_coverage(y_test, lower, upper),
    }


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
    if initial_window + horizon > len(y) - test_size:
        raise ValueError(f"initial_window={initial_window} + horizon={horizon} exceeds the training part "
                         f"len(y) - test_size = {len(y) - test_size} (the backtest never touches the hold-out)")
    if not 0 < coverage < 1:
        raise ValueError(f"coverage={coverage!r}: must be in (0, 1)")


def run_leaderboard(
    forecasters: Mapping,
    y: pd.Series,
    test_size: int = 36,
    horizon: int = 12,
    initial_window: int = 96,
    sp: int = 12,
    coverage: float = 0.95,
) -> Leaderboard:
    """Hold-out + expanding-window backtest (on the training part) for every forecaster (cloned,
    never mutated)."""
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
    # the backtest runs on y_train: every fold ends before the hold-out starts
    holdout, backtest, folds, horizons, times, preds, ivals = {}, {}, [], {}, {}, {}, {}
    for name, forecaster in forecasters.items():
        f = forecaster.clone()
        t0 = time.perf_counter()
        f.fit(y_train, fh=fh)
        fit_s = time.perf_counter() - t0
        pred = f.predict()
        iv = f.predict_interval(coverage=coverage)
        iv.columns = ["lower", "upper"]
        preds[name], ivals[name] = pred, iv
        holdout[name] = _scores(y_test, pred, iv["lower"], iv["upper"], y_train, sp, coverage)
        # a point metric makes evaluate return y_pred; the interval metric makes it call predict_interval
        res = evaluate(forecaster.clone(), cv, y_train, scoring=scorers(sp=sp, coverage=coverage)[::3], return_data=True)
        rows, scaled = [], []
        for i, r in res.iterrows():
            f_iv = r["y_pred_interval"]
            f_iv.columns = ["lower", "upper"]
            row = {"model": name, "fold": i, "cutoff": str(r["cutoff"]),
                   **_scores(r["y_test"], r["y_pred"], f_iv["lower"], f_iv["upper"], r["y_train"], sp, coverage)}
            row["fit_s"] = float(r["fit_time"])
            rows.append(row)
            scaled.append(np.abs(np.asarray(r["y_test"], float) - np.asarray(r["y_pred"], float))
                          / seasonal_scale(r["y_train"], sp))
        fold_df = pd.DataFrame(rows)
        folds.append(fold_df)
        horizons[name] = np.mean(scaled, axis=0)
        backtest[name] = fold_df[list(METRICS)].mean().to_dict()
        times[name] = {"hold-out fit [s]": fit_s, "backtest fit per fold [s]": float(fold_df["fit_s"].mean())}
    return Leaderboard(
        holdout=pd.DataFrame(holdout).T,
        backtest=pd.DataFrame(backtest).T,
        folds=pd.concat(folds, ignore_index=True),
        horizon_mase=pd.DataFrame(horizons, index=pd.RangeIndex(1, horizon + 1, name="steps ahead")),
        fit_seconds=pd.DataFrame(times).T,
        predictions=preds,
        intervals=ivals,
    )
