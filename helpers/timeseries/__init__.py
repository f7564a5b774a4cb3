"""Forecasting helpers for lessons 06-07 (statsmodels, pykalman, sktime, Prophet, GluonTS).

- :mod:`~helpers.timeseries.datasets`    loaders for the series in ``data/`` and the known truth
  of the generated ones
- :mod:`~helpers.timeseries.stationarity` ADF + KPSS side by side
- :mod:`~helpers.timeseries.diagnostics`  feature strengths, Ljung-Box, SARIMA / ETS AICc tables
- :mod:`~helpers.timeseries.multivariate` VAR lag tables and stability, Johansen cases,
  Toda-Yamamoto, VAR/VECM hold-out scoring
- :mod:`~helpers.timeseries.metrics`     MASE / sMAPE / MAPE / coverage via sktime's metrics
- :mod:`~helpers.timeseries.kalman`      structural state-space models, constrained EM with
  pykalman, and an sktime adapter
- :mod:`~helpers.timeseries.gluon`       a quiet Lightning sandbox and an sktime adapter for GluonTS
- :mod:`~helpers.timeseries.leaderboard` hold-out + expanding-window backtest for any sktime forecaster
- :mod:`~helpers.timeseries.probabilistic` quantiles for point models (seasonal naive, split conformal),
  GluonTS wrapping, calibration, and the future-dependence leakage test
- :mod:`~helpers.timeseries.plots`       forecast plots with intervals and quantile fans
- :mod:`~helpers.timeseries.transforms`  ``kernel_stable``: rounding that makes tree pipelines CPU-independent

Importing this package applies :func:`~helpers.timeseries._quiet.quiet_forecasting_libraries`
(precise fixes for sktime's filter reset and cmdstanpy/prophet logging); GluonTS itself is
imported only when used.
"""

from __future__ import annotations

from helpers.timeseries._quiet import quiet_forecasting_libraries

quiet_forecasting_libraries()

from helpers.timeseries.datasets import (  # noqa: E402
    DAILY_DEMAND_TRUTH,
    STORE_PANEL_TRUTH,
    airline,
    daily_demand,
    daily_demand_holidays,
    interest_inflation,
    macrodata,
    nile,
    store_panel,
    store_panel_multiindex,
    uschange,
)
from helpers.timeseries.diagnostics import (  # noqa: E402
    SEASONAL_STRENGTH_THRESHOLD,
    ets_forecast,
    ets_table,
    feature_strengths,
    ljung_box,
    lognormal_mean,
    sarima_table,
)
from helpers.timeseries.gluon import GluonTSForecaster, lightning_sandbox, seeded  # noqa: E402
from helpers.timeseries.kalman import (  # noqa: E402
    EMResult,
    StateSpaceModel,
    StructuralKalmanForecaster,
    fit_em,
    forecast,
    local_level,
    local_linear_trend,
    structural,
    to_pykalman,
)
from helpers.timeseries.leaderboard import Leaderboard, run_leaderboard  # noqa: E402
from helpers.timeseries.metrics import interval_coverage, point_metrics, scorers  # noqa: E402
from helpers.timeseries.multivariate import (  # noqa: E402
    JOHANSEN_CASES,
    RESTRICTED_CONSTANT_TRACE_CV,
    companion_moduli,
    forecast_scores,
    growth_var_forecast,
    johansen_trace,
    lag_order_table,
    random_walk,
    toda_yamamoto,
)
from helpers.timeseries.plots import plot_acf_pacf, plot_fan, plot_forecasts, plot_residual_check  # noqa: E402
from helpers.timeseries.probabilistic import (  # noqa: E402
    conformal_quantiles,
    future_dependence,
    quantile_calibration,
    seasonal_naive_quantiles,
    to_gluonts,
)
from helpers.timeseries.stationarity import stationarity_table  # noqa: E402
from helpers.timeseries.transforms import kernel_stable  # noqa: E402

__all__ = [
    "DAILY_DEMAND_TRUTH",
    "JOHANSEN_CASES",
    "RESTRICTED_CONSTANT_TRACE_CV",
    "SEASONAL_STRENGTH_THRESHOLD",
    "STORE_PANEL_TRUTH",
    "EMResult",
    "GluonTSForecaster",
    "Leaderboard",
    "StateSpaceModel",
    "StructuralKalmanForecaster",
    "airline",
    "companion_moduli",
    "conformal_quantiles",
    "daily_demand",
    "daily_demand_holidays",
    "ets_forecast",
    "ets_table",
    "feature_strengths",
    "fit_em",
    "forecast",
    "forecast_scores",
    "future_dependence",
    "growth_var_forecast",
    "interest_inflation",
    "interval_coverage",
    "johansen_trace",
    "kernel_stable",
    "lag_order_table",
    "lightning_sandbox",
    "ljung_box",
    "local_level",
    "local_linear_trend",
    "lognormal_mean",
    "macrodata",
    "nile",
    "plot_acf_pacf",
    "plot_fan",
    "plot_forecasts",
    "plot_residual_check",
    "point_metrics",
    "quantile_calibration",
    "quiet_forecasting_libraries",
    "random_walk",
    "run_leaderboard",
    "sarima_table",
    "scorers",
    "seasonal_naive_quantiles",
    "seeded",
    "stationarity_table",
    "store_panel",
    "store_panel_multiindex",
    "structural",
    "to_gluonts",
    "to_pykalman",
    "toda_yamamoto",
    "uschange",
]
