"""Lesson 09's contenders: each forecasts one training array (or, for DeepAR, all of them at once)
``h`` steps ahead through its own library and returns a point forecast and the quantile grid
:data:`~helpers.timeseries.metrics.QUANTILE_LEVELS` (0.025..0.975, so the 95 % interval too).

=============  ==================================================  ======  ===========================
name           method (library)                                    point   distribution
=============  ==================================================  ======  ===========================
SNaive         seasonal naive (numpy)                              mean    normal, fpp3 §5.5 sigma_h
Naive2         naive on M4-deseasonalised data (statsmodels decomp) mean    normal, sigma sqrt(h)
Theta          ``ThetaModel(period=m)`` (statsmodels)              mean    normal, its own sigma_h
ETS            ``ETSModel``, best AICc of 4 (statsmodels)          point   200 simulated paths
ARIMA          airline ``SARIMAX`` (0,1,1)(0,1,1)_m on logs        median  log-normal (exact)
Kalman         structural model, EM (pykalman, course helpers)     median  log-normal (exact)
Prophet        ``Prophet`` on a fake monthly index (prophet)       mean    200 predictive samples
DeepAR         one global ``DeepAREstimator`` (GluonTS, torch)     median  200 sample paths
=============  ==================================================  ======  ===========================

The series carry no dates: Prophet and GluonTS get a made-up monthly (or quarterly/yearly) index
starting in 2000, which only matters for their calendar features.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from helpers import validate
from helpers.timeseries.gluon import lightning_sandbox, seeded
from helpers.timeseries.kalman import fit_em, forecast, structural
from helpers.timeseries.metrics import QUANTILE_LEVELS
from helpers.timeseries.probabilistic import seasonal_naive_quantiles

__all__ = [
    "CONTENDERS",
    "Contender",
    "Forecast",
    "deepar_global",
    "naive2",
    "seasonal_indices",
    "seasonal_naive",
    "seasonality_test",
]

_LEVELS = np.asarray(QUANTILE_LEVELS)
_Z = stats.norm.ppf(_LEVELS)


@dataclass(frozen=True)
class Forecast:
    """Point forecast ``(h,)`` and quantiles ``(h, len(QUANTILE_LEVELS))`` of one series."""

    point: np.ndarray
    quantiles: np.ndarray

    @property
    def lower(self) -> np.ndarray:
        """The 2.5 % quantile (lower end of the 95 % interval)."""
        return self.quantiles[:, 0]

    @property
    def upper(self) -> np.ndarray:
        """The 97.5 % quantile (upper end of the 95 % interval)."""
        return self.quantiles[:, -1]


def _normal(mean: np.ndarray, sd: np.ndarray, point: np.ndarray | None = None) -> Forecast:
    mean, sd = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float)
    return Forecast(mean if point is None else point, mean[:, None] + sd[:, None] * _Z[None, :])


def _lognormal(mean_log: np.ndarray, sd_log: np.ndarray) -> Forecast:
    q = np.exp(np.asarray(mean_log)[:, None] + np.asarray(sd_log)[:, None] * _Z[None, :])
    return Forecast(np.exp(np.asarray(mean_log, dtype=float)), q)


def _from_samples(samples: np.ndarray, point: np.ndarray | None = None) -> Forecast:
    """``samples``: (paths, h). Point = sample median unless given."""
    q = np.quantile(samples, _LEVELS, axis=0).T
    return Forecast(np.median(samples, axis=0) if point is None else np.asarray(point, dtype=float), q)


def _check(y: np.ndarray, h: int, m: int) -> np.ndarray:
    validate.positive_int("h", h)
    validate.positive_int("m (the seasonal period)", m)
    x = np.asarray(y, dtype=float).ravel()
    if len(x) < 3 or not np.isfinite(x).all():
        raise ValueError(f"y must hold at least 3 finite values, got {len(x)}")
    return x


# ----------------------------------------------------------------------------- naive family
def seasonal_naive(y: np.ndarray, h: int, m: int, seed: int = 0) -> Forecast:
    """``y_{T+h} = y_{T+h-m(k+1)}``, ``k = floor((h-1)/m)``; ``sigma_h = sigma sqrt(k+1)`` (fpp3 §5.5),
    through :func:`helpers.timeseries.probabilistic.seasonal_naive_quantiles` (one implementation)."""
    x = _check(y, h, m)
    if len(x) <= m:
        raise ValueError(f"y has {len(x)} points; the seasonal naive needs more than m={m}")
    q = seasonal_naive_quantiles(x, h, m, _LEVELS)  # (levels, h)
    return Forecast(x[len(x) - m + np.arange(h) % m], q.T)


def seasonality_test(y: np.ndarray, m: int) -> bool:
    """M4's 90 % test: ``|r_m| > 1.645 sqrt((1 + 2 sum_{k<m} r_k^2) / n)``; False if ``n < 3m`` or ``m == 1``."""
    from statsmodels.tsa.stattools import acf  # heavy: statsmodels loads on first use

    validate.positive_int("m (the seasonal period)", m)
    x = np.asarray(y, dtype=float).ravel()
    if m == 1 or len(x) < 3 * m:
        return False
    r = acf(x, nlags=m, fft=False)
    limit = 1.645 * np.sqrt((1 + 2 * np.sum(r[1:m] ** 2)) / len(x))
    return bool(abs(r[m]) > limit)


def seasonal_indices(y: np.ndarray, m: int) -> np.ndarray:
    """Multiplicative seasonal index of each point of ``y`` and of the next ``m`` points (length
    ``len(y) + m``): classical decomposition when :func:`seasonality_test` passes, else ones."""
    from statsmodels.tsa.seasonal import seasonal_decompose  # heavy: statsmodels loads on first use

    x = np.asarray(y, dtype=float).ravel()
    if not seasonality_test(x, m) or np.min(x) <= 0:
        return np.ones(len(x) + m)
    season = seasonal_decompose(x, model="multiplicative", period=m).seasonal
    return np.r_[season, season[len(x) - m:]]


def naive2(y: np.ndarray, h: int, m: int, seed: int = 0) -> Forecast:
    """M4's Naive2: the last deseasonalised value, re-seasonalised; normal interval on the
    adjusted scale (``sigma sqrt(h)`` from its one-step naive residuals), scaled by the index."""
    x = _check(y, h, m)
    idx = seasonal_indices(x, m)
    adj = x / idx[: len(x)]
    future = np.resize(idx[len(x):], h)
    resid = np.diff(adj)
    sigma = float(np.sqrt(np.sum(resid**2) / max(len(resid) - 1, 1)))
    mean = np.full(h, adj[-1])
    fc = _normal(mean, sigma * np.sqrt(np.arange(1, h + 1)))
    return Forecast(fc.point * future, fc.quantiles * future[:, None])


# ----------------------------------------------------------------------------- statsmodels
def theta(y: np.ndarray, h: int, m: int, seed: int = 0) -> Forecast:
    """statsmodels' ``ThetaModel(period=m)`` (its own 90 % ACF seasonality test, multiplicative
    classical decomposition); quantiles from its normal interval."""
    from statsmodels.tsa.forecasting.theta import (
        ThetaModel,  # heavy: statsmodels loads on first use
    )

    x = _check(y, h, m)
    catcher = _statsmodels_quiet()
    try:
        res = ThetaModel(x, period=m, deseasonalize=m > 1).fit()
        point = np.asarray(res.forecast(h), dtype=float)
        pi = res.prediction_intervals(h, alpha=0.05)
    finally:
        catcher.__exit__(None, None, None)
    sd = (np.asarray(pi["upper"]) - np.asarray(pi["lower"])) / (2 * stats.norm.ppf(0.975))
    return _normal(point, sd)


#: ETS configurations tried (error, trend, damped, seasonal): ANN, AAdN, MNM, MAdM
ETS_CONFIGS = (("add", None, False, None), ("add", "add", True, None),
               ("mul", None, False, "mul"), ("mul", "add", True, "mul"))


def _statsmodels_quiet() -> warnings.catch_warnings:
    from statsmodels.tools.sm_exceptions import (  # heavy: statsmodels loads on first use
        ConvergenceWarning,
        EstimationWarning,
    )

    catcher = warnings.catch_warnings()
    catcher.__enter__()
    warnings.filterwarnings("ignore", category=ConvergenceWarning, module="statsmodels")
    warnings.filterwarnings("ignore", category=EstimationWarning, module="statsmodels",
                            message="(Non-invertible starting MA|Too few observations to estimate starting)")
    warnings.filterwarnings("ignore", category=UserWarning, module="statsmodels",
                            message="Non-(invertible|stationary) starting")
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="statsmodels")
    return catcher


def ets(y: np.ndarray, h: int, m: int, seed: int = 0, paths: int = 200) -> Forecast:
    """statsmodels ``ETSModel``: the lowest AICc of :data:`ETS_CONFIGS` (seasonal ones only for
    positive series with two full seasons); quantiles from ``paths`` simulated futures."""
    from statsmodels.tsa.exponential_smoothing.ets import (
        ETSModel,  # heavy: statsmodels loads on first use
    )

    x = _check(y, h, m)
    best = None
    catcher = _statsmodels_quiet()
    try:
        for error, trend, damped, seasonal in ETS_CONFIGS:
            if (error == "mul" or seasonal) and (np.min(x) <= 0 or m == 1 or len(x) < 2 * m + 2):
                continue
            model = ETSModel(x, error=error, trend=trend, damped_trend=damped, seasonal=seasonal,
                             seasonal_periods=m if seasonal else None)
            res = model.fit(disp=False)
            if np.isfinite(res.aicc) and (best is None or res.aicc < best.aicc):
                best = res
        point = np.asarray(best.forecast(h), dtype=float)
        sims = np.asarray(best.simulate(h, repetitions=paths, anchor="end", rng=np.random.default_rng(seed)), dtype=float)
    finally:
        catcher.__exit__(None, None, None)
    return _from_samples(sims.reshape(h, paths).T, point=point)


def arima(y: np.ndarray, h: int, m: int, seed: int = 0) -> Forecast:
    """Fixed airline model ``SARIMAX(0,1,1)(0,1,1)_m`` on ``log y`` (auto-ARIMA was ~3.5 s a
    series here, too slow): fitted on the differenced series, then filtered in levels for exact
    log-scale forecast variances; point = ``exp(mean log)`` = the median."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX  # heavy: statsmodels loads on first use

    x = _check(y, h, m)
    if np.min(x) <= 0:
        raise ValueError("arima models log(y): y must be strictly positive")
    z = np.log(x)
    seasonal = (0, 1, 1, m) if m > 1 and len(x) >= 2 * m + 4 else (0, 0, 0, 0)
    kw = dict(order=(0, 1, 1), seasonal_order=seasonal, concentrate_scale=True)
    catcher = _statsmodels_quiet()
    try:
        fit = SARIMAX(z, simple_differencing=True, **kw).fit(disp=False)
        pred = SARIMAX(z, **kw).filter(fit.params).get_forecast(h)
        mean, sd = np.asarray(pred.predicted_mean), np.sqrt(np.asarray(pred.var_pred_mean))
    finally:
        catcher.__exit__(None, None, None)
    return _lognormal(mean, sd)


# ----------------------------------------------------------------------------- pykalman, prophet
def kalman(y: np.ndarray, h: int, m: int, seed: int = 0, n_iter: int = 5) -> Forecast:
    """Local level + seasonal structural model on ``log y``, noise variances by ``n_iter`` EM steps
    (pykalman filter/smoother, :mod:`helpers.timeseries.kalman`); log-normal forecasts."""
    x = _check(y, h, m)
    if np.min(x) <= 0:
        raise ValueError("kalman models log(y): y must be strictly positive")
    z = np.log(x)
    result = fit_em(structural(m, trend="local level"), z, n_iter=n_iter)
    mean, var = forecast(result, z, h)
    return _lognormal(mean, np.sqrt(var))


_FREQ = {12: "MS", 4: "QS", 1: "YS"}


def prophet(y: np.ndarray, h: int, m: int, seed: int = 0, samples: int = 200) -> Forecast:
    """Prophet with yearly seasonality on a made-up index from 2000 (monthly ``m=12``, quarterly
    ``m=4``, yearly ``m=1``); point = ``yhat``, quantiles from ``samples`` predictive samples."""
    from prophet import Prophet  # heavy: prophet loads on first use

    x = _check(y, h, m)
    if m not in _FREQ:
        raise ValueError(f"m={m!r}: prophet contender supports {sorted(_FREQ)}")
    ds = pd.date_range("2000-01-01", periods=len(x) + h, freq=_FREQ[m])
    model = Prophet(yearly_seasonality=m > 1, weekly_seasonality=False, daily_seasonality=False,
                    uncertainty_samples=samples)
    np.random.seed(seed)  # prophet draws its predictive samples from numpy's global RNG
    model.fit(pd.DataFrame({"ds": ds[: len(x)], "y": x}))
    future = pd.DataFrame({"ds": ds[len(x):]})
    point = np.asarray(model.predict(future)["yhat"], dtype=float)
    draws = np.asarray(model.predictive_samples(future)["yhat"], dtype=float)  # (h, samples)
    return _from_samples(draws.T, point=point)


# ----------------------------------------------------------------------------- GluonTS (global)
_GLUON_FREQ = {12: "M", 4: "Q", 1: "Y"}


def deepar_global(ys: Sequence[np.ndarray], h: int, m: int, seed: int = 0, epochs: int = 5,
                  num_batches_per_epoch: int = 30, hidden: int = 24, paths: int = 200) -> list[Forecast]:
    """ONE DeepAR model trained across all series (mean scaling on, Student-t output), torch
    threads 1, Lightning output in a temporary folder; point = median of ``paths`` sample paths."""
    from gluonts.dataset.common import ListDataset  # heavy: GluonTS loads on first use
    from gluonts.torch import DeepAREstimator  # heavy: GluonTS loads on first use

    if m not in _GLUON_FREQ:
        raise ValueError(f"m={m!r}: deepar_global supports {sorted(_GLUON_FREQ)}")
    for name, v in (("epochs", epochs), ("num_batches_per_epoch", num_batches_per_epoch),
                    ("hidden", hidden), ("paths", paths)):
        validate.positive_int(name, v)
    xs = [_check(y, h, m) for y in ys]
    freq = _GLUON_FREQ[m]
    start = pd.Period("2000-01", freq=freq)
    data = ListDataset([{"start": start, "target": x} for x in xs], freq=freq)
    with lightning_sandbox() as trainer_kwargs, seeded(seed):
        estimator = DeepAREstimator(
            freq=freq, prediction_length=h, context_length=2 * h, hidden_size=hidden, num_layers=2,
            batch_size=32, num_batches_per_epoch=num_batches_per_epoch, num_parallel_samples=paths,
            trainer_kwargs={"max_epochs": epochs, **trainer_kwargs})
        predictor = estimator.train(data)
        forecasts = list(predictor.predict(data))
    return [_from_samples(np.asarray(f.samples, dtype=float)) for f in forecasts]


@dataclass(frozen=True)
class Contender:
    """A named method: ``fn(y, h, m, seed) -> Forecast`` (local) or ``fn(ys, h, m, seed) -> list``
    (``global_=True``); ``point`` says whether its point forecast is a mean or a median."""

    name: str
    fn: Callable
    point: str
    library: str
    global_: bool = False


CONTENDERS: dict[str, Contender] = {c.name: c for c in (
    Contender("SNaive", seasonal_naive, "mean", "numpy"),
    Contender("Naive2", naive2, "mean", "statsmodels (decomposition)"),
    Contender("Theta", theta, "mean", "statsmodels ThetaModel"),
    Contender("ETS", ets, "mean (point)", "statsmodels ETSModel"),
    Contender("ARIMA", arima, "median", "statsmodels SARIMAX"),
    Contender("Kalman", kalman, "median", "pykalman"),
    Contender("Prophet", prophet, "mean", "prophet"),
    Contender("DeepAR", deepar_global, "median", "GluonTS (torch)", global_=True),
)}
