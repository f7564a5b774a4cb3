"""Box-Jenkins and ETS workflow helpers for lesson 06: strength of trend / seasonality,
Ljung-Box with the right degrees of freedom, AICc tables of SARIMA and ETS candidates, and the
bias-adjusted back-transform of log-scale forecasts.

References: Hyndman & Athanasopoulos, *Forecasting: Principles and Practice* (3rd ed., fpp3):
§4.3 (feature strengths, after Wang, Smith & Hyndman 2006), §5.4 (Ljung-Box), §5.6
(bias adjustment), §8 (ETS), §9.1 and §9.9 (seasonal differencing, seasonal ARIMA).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = [
    "SEASONAL_STRENGTH_THRESHOLD",
    "ets_forecast",
    "ets_table",
    "feature_strengths",
    "ljung_box",
    "lognormal_mean",
    "sarima_table",
]

#: fpp3 §9.1: ``unitroot_nsdiffs`` takes one seasonal difference when F_S > 0.64.
SEASONAL_STRENGTH_THRESHOLD = 0.64


def feature_strengths(decomposition: object) -> dict[str, float]:
    """Strength of trend and seasonality of an STL (or any trend/seasonal/resid) decomposition:
    F = max(0, 1 - Var(R) / Var(component + R)) (fpp3 §4.3)."""
    parts = [getattr(decomposition, a, None) for a in ("trend", "seasonal", "resid")]
    if any(p is None for p in parts):
        raise TypeError("decomposition must have .trend, .seasonal and .resid (e.g. an STL fit)")
    trend, seasonal, resid = (np.asarray(p, dtype=float) for p in parts)
    var_r = np.var(resid, ddof=1)
    return {
        "trend": float(max(0.0, 1 - var_r / np.var(trend + resid, ddof=1))),
        "seasonal": float(max(0.0, 1 - var_r / np.var(seasonal + resid, ddof=1))),
    }


def ljung_box(resid: pd.Series | np.ndarray, lags: int, model_df: int) -> dict[str, float]:
    """Ljung-Box Q on residuals, with lags - model_df degrees of freedom (model_df = number of
    fitted ARMA coefficients, p + q + P + Q; fpp3 §9.9 uses l - K)."""
    from statsmodels.stats.diagnostic import (
        acorr_ljungbox,  # heavy: statsmodels loads on first use (lessons 06-07)
    )

    x = np.asarray(resid, dtype=float)
    x = x[np.isfinite(x)]
    if not isinstance(lags, int) or not 1 <= lags < len(x):
        raise ValueError(f"lags={lags!r}: must be an int in [1, {len(x)})")
    if not isinstance(model_df, int) or not 0 <= model_df < lags:
        raise ValueError(f"model_df={model_df!r}: must be an int in [0, lags={lags})")
    out = acorr_ljungbox(x, lags=[lags], model_df=model_df)
    return {"Q": float(out["lb_stat"].iloc[0]), "df": lags - model_df, "pvalue": float(out["lb_pvalue"].iloc[0])}


def _check_orders(order: tuple, seasonal_order: tuple) -> None:
    if len(order) != 3 or len(seasonal_order) != 4 or not all(isinstance(v, int) and v >= 0 for v in (*order, *seasonal_order)):
        raise ValueError(f"order={order!r} must be (p, d, q) and seasonal_order={seasonal_order!r} (P, D, Q, s), "
                         "non-negative ints")


def sarima_table(y: pd.Series, candidates: Mapping[str, tuple[tuple, tuple]], lb_lags: int = 24,
                 burn: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Fit each candidate SARIMA (name -> (order, seasonal_order)) to the same ``y`` and tabulate
    AICc, the number of ARMA coefficients and Ljung-Box on the residuals.

    All candidates must share d and D: AICc compares likelihoods of the same (differenced)
    data only (fpp3 §9.6). The first ``burn`` residuals (default d + D*s) are dropped before
    Ljung-Box: the diffuse start makes them meaningless. Returns (table sorted by AICc, fits)."""
    import statsmodels.api as sm  # heavy: statsmodels loads on first use (lessons 06-07)

    if not isinstance(candidates, Mapping) or not candidates:
        raise TypeError("candidates must be a non-empty mapping name -> (order, seasonal_order)")
    for order, seasonal in candidates.values():
        _check_orders(order, seasonal)
    diffs = {(o[1], s[1], s[3]) for o, s in candidates.values()}
    if len(diffs) != 1:
        raise ValueError(f"candidates mix differencing (d, D, s) = {sorted(diffs)}: AICc is then not comparable")
    d, big_d, s = diffs.pop()
    burn = d + big_d * s if burn is None else burn
    rows, fits = [], {}
    for name, (order, seasonal) in candidates.items():
        fit = sm.tsa.SARIMAX(y, order=order, seasonal_order=seasonal).fit(disp=False)
        k = order[0] + order[2] + seasonal[0] + seasonal[2]
        lb = ljung_box(np.asarray(fit.resid)[burn:], lb_lags, k)
        fits[name] = fit
        rows.append({"model": name, "ARMA coefs": k, "AICc": float(fit.aicc),
                     f"LB Q({lb_lags})": lb["Q"], "LB df": lb["df"], "LB p": lb["pvalue"]})
    table = pd.DataFrame(rows).set_index("model").sort_values("AICc")
    return table, fits


def ets_table(y: pd.Series, specs: Mapping[str, dict], seasonal_periods: int = 12) -> tuple[pd.DataFrame, dict]:
    """Fit statsmodels ``ETSModel`` for each name -> keyword dict (error, trend, damped_trend,
    seasonal) on the same ``y`` and tabulate AICc (comparable: same data, same scale)."""
    from statsmodels.tsa.exponential_smoothing.ets import (
        ETSModel,  # heavy: statsmodels loads on first use (lessons 06-07)
    )

    if not isinstance(specs, Mapping) or not specs:
        raise TypeError("specs must be a non-empty mapping name -> ETSModel keyword dict")
    allowed = {"error", "trend", "damped_trend", "seasonal"}
    rows, fits = [], {}
    for name, kw in specs.items():
        if not isinstance(kw, Mapping) or set(kw) - allowed:
            raise ValueError(f"spec {name!r}={kw!r}: keys must be among {sorted(allowed)}")
        fit = ETSModel(y.astype(float), seasonal_periods=seasonal_periods, **kw).fit(disp=False)
        fits[name] = fit
        rows.append({"model": name, "params": int(len(fit.params)), "AICc": float(fit.aicc)})
    return pd.DataFrame(rows).set_index("model").sort_values("AICc"), fits


def ets_forecast(fit: object, index: pd.Index, alpha: float = 0.1, repetitions: int = 2000,
                 rng: np.random.Generator | None = None) -> pd.DataFrame:
    """h = len(index) steps of a fitted ETS model: the point forecast (the recursion's, what
    statsmodels calls ``predicted_mean``), the mean of ``repetitions`` simulated paths and the
    simulated 1 - alpha interval (quantiles), seeded by ``rng``."""
    if not hasattr(fit, "get_prediction") or not hasattr(fit, "nobs"):
        raise TypeError("fit must be a fitted statsmodels ETSResults")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r}: must be in (0, 1)")
    if not isinstance(repetitions, int) or repetitions < 100:
        raise ValueError(f"repetitions={repetitions!r}: must be an int >= 100")
    h = len(index)
    pred = fit.get_prediction(start=fit.nobs, end=fit.nobs + h - 1, method="simulated",
                              simulate_repetitions=repetitions, rng=rng)
    # unwrapped: statsmodels' date wrapper fails on the (steps x repetitions) simulation frame
    sims = np.asarray(getattr(pred, "_results", pred).simulation_results, dtype=float)
    bounds = np.asarray(pred.pred_int(alpha=alpha), dtype=float)
    return pd.DataFrame({"point": np.asarray(pred.predicted_mean, dtype=float), "mean": sims.mean(axis=1),
                         "lower": bounds[:, 0], "upper": bounds[:, 1]}, index=index)


def lognormal_mean(mu: pd.Series | np.ndarray, variance: pd.Series | np.ndarray) -> pd.Series | np.ndarray:
    """Mean of exp(X) for X ~ N(mu, variance): exp(mu + variance / 2) (the exact form of fpp3
    §5.6's bias adjustment; exp(mu) alone is the median)."""
    var = np.asarray(variance, dtype=float)
    if np.any(var < 0):
        raise ValueError("variance must be non-negative")
    return np.exp(mu + variance / 2)
