"""VAR and VECM machinery for lesson 06: lag tables, stability, Johansen trace tests with a
stated deterministic case, Toda-Yamamoto causality on levels and hold-out scoring.

References: Lütkepohl, *New Introduction to Multiple Time Series Analysis* (2005), ch. 4
(lag selection), 2.1 (stability), 7-8 (VECM, Johansen); Johansen, *Likelihood-Based Inference in
Cointegrated VAR Models* (1995), ch. 6 and 15 (deterministic terms, asymptotic tables);
Toda & Yamamoto, *J. Econometrics* 66 (1995) 225-250.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "JOHANSEN_CASES",
    "RESTRICTED_CONSTANT_TRACE_CV",
    "companion_moduli",
    "forecast_scores",
    "growth_var_forecast",
    "johansen_trace",
    "lag_order_table",
    "random_walk",
    "toda_yamamoto",
]

#: Deterministic cases, named as statsmodels' VECM names them, with coint_johansen's det_order.
JOHANSEN_CASES = {
    "n": "no deterministic terms (coint_johansen det_order=-1)",
    "co": "unrestricted constant, outside the cointegration relation (coint_johansen det_order=0)",
    "ci": "constant restricted to the cointegration relation (no coint_johansen equivalent)",
}

#: Asymptotic trace-test critical values for the restricted-constant case ("ci"), by number of
#: common trends n - r: MacKinnon, Haug & Michelis (1999), J. Applied Econometrics 14, the case
#: EViews and JMulTi call "intercept in CE, none in VAR". Levels 0.10 / 0.05 / 0.01 are not all
#: published in the same form, so only the 5 % values are kept.
RESTRICTED_CONSTANT_TRACE_CV = {1: 9.1645, 2: 20.2618, 3: 35.1928}


def lag_order_table(data: pd.DataFrame, maxlags: int, trend: str = "c") -> pd.DataFrame:
    """Information criteria of VAR(0..maxlags), all on the same estimation sample (the first
    ``maxlags`` observations are held back for every order), with the minimum of each marked."""
    import statsmodels.api as sm  # heavy: statsmodels loads on first use (lessons 06-07)

    if not isinstance(data, pd.DataFrame) or data.shape[1] < 2:
        raise TypeError("data must be a pandas DataFrame with at least two columns")
    if not isinstance(maxlags, int) or not 1 <= maxlags < len(data) // 4:
        raise ValueError(f"maxlags={maxlags!r}: must be an int in [1, len(data)//4)")
    if trend not in ("n", "c", "ct"):
        raise ValueError(f"trend={trend!r}: allowed values are 'n', 'c', 'ct'")
    sel = sm.tsa.VAR(data).select_order(maxlags=maxlags, trend=trend)
    table = pd.DataFrame({k.upper(): [float(v) for v in sel.ics[k]] for k in ("aic", "bic", "hqic")})
    table.index.name = "p"
    chosen = {k.upper(): int(v) for k, v in sel.selected_orders.items() if k in ("aic", "bic", "hqic")}
    table.attrs["chosen"] = chosen
    return table


def companion_moduli(var_results: object) -> np.ndarray:
    """Moduli of the eigenvalues of a fitted VAR's companion matrix, largest first.

    The VAR is stable (stationary, impulse responses die out) iff all are < 1 (Lütkepohl 2005,
    §2.1.1); statsmodels' ``roots`` are the reciprocals, so there stability means all > 1."""
    coefs = getattr(var_results, "coefs", None)
    if coefs is None or np.ndim(coefs) != 3:
        raise TypeError("var_results must be a fitted statsmodels VARResults (it has .coefs)")
    p, k, _ = coefs.shape
    top = np.hstack(list(coefs))
    companion = np.vstack([top, np.eye(k * (p - 1), k * p)]) if p > 1 else top
    return np.sort(np.abs(np.linalg.eigvals(companion)))[::-1]


def _residuals(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if b.shape[1] == 0:
        return a
    return a - b @ np.linalg.lstsq(b, a, rcond=None)[0]


def johansen_trace(y: pd.DataFrame | np.ndarray, k_ar_diff: int, deterministic: str, seasons: int = 0,
                   first_season: int = 0) -> pd.DataFrame:
    """Johansen's trace statistics for H0: rank <= r, r = 0..K-1, by reduced-rank regression.

    ``deterministic`` is the VECM's case ("n", "co", "ci", see :data:`JOHANSEN_CASES`), so the
    test and the model fitted afterwards can use the same one. "co" and "n" reproduce
    ``coint_johansen`` with det_order 0 / -1 (its 5 % critical values are attached); "ci" puts
    the constant inside the cointegration relation (Johansen 1995, ch. 6) and carries the
    5 % values of :data:`RESTRICTED_CONSTANT_TRACE_CV`. ``seasons`` > 0 adds ``seasons - 1``
    centred seasonal dummies to the short-run part, exactly as statsmodels' ``VECM(...,
    seasons=, first_season=)`` and JMulTi do; centred dummies leave the asymptotic critical
    values unchanged (Johansen 1995, §15.1), so the same tables apply.
    """
    from statsmodels.tsa.vector_ar.vecm import (
        coint_johansen,  # heavy: statsmodels loads on first use (lessons 06-07)
    )

    if deterministic not in JOHANSEN_CASES:
        raise ValueError(f"deterministic={deterministic!r}: allowed values are {sorted(JOHANSEN_CASES)}")
    if not isinstance(k_ar_diff, int) or k_ar_diff < 0:
        raise ValueError(f"k_ar_diff={k_ar_diff!r}: must be a non-negative int")
    if not isinstance(seasons, int) or seasons < 0 or seasons == 1:
        raise ValueError(f"seasons={seasons!r}: must be 0 (no dummies) or an int >= 2")
    if not isinstance(first_season, int) or first_season < 0:
        raise ValueError(f"first_season={first_season!r}: must be a non-negative int")
    x = np.asarray(y, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2 or len(x) < 10 * x.shape[1] + k_ar_diff:
        raise ValueError(f"y must be a 2-D array of T x K (K >= 2) with enough rows, got shape {x.shape}")
    dy = np.diff(x, axis=0)
    n_obs, k = len(dy) - k_ar_diff, x.shape[1]
    z0 = dy[k_ar_diff:]
    z1 = x[k_ar_diff:-1]
    z2 = np.column_stack([dy[k_ar_diff - i: len(dy) - i] for i in range(1, k_ar_diff + 1)]) if k_ar_diff else np.empty((n_obs, 0))
    if deterministic == "co":
        z2 = np.column_stack([z2, np.ones(n_obs)])
    elif deterministic == "ci":
        z1 = np.column_stack([z1, np.ones(n_obs)])
    if seasons:
        from statsmodels.tsa.vector_ar.util import seasonal_dummies  # heavy: statsmodels loads on first use (lessons 06-07)

        dummies = seasonal_dummies(seasons, len(x), first_season, centered=True)[k_ar_diff + 1:]
        z2 = np.column_stack([z2, dummies])
    r0, r1 = _residuals(z0, z2), _residuals(z1, z2)
    s00, s01, s11 = r0.T @ r0 / n_obs, r0.T @ r1 / n_obs, r1.T @ r1 / n_obs
    eig = np.linalg.eigvals(np.linalg.solve(s11, s01.T @ np.linalg.solve(s00, s01))).real
    eig = np.sort(eig)[::-1][:k]
    trace = np.array([-n_obs * np.sum(np.log(1 - eig[r:])) for r in range(k)])
    if deterministic == "ci":
        cv = np.array([RESTRICTED_CONSTANT_TRACE_CV.get(k - r, np.nan) for r in range(k)])
    else:
        cv = coint_johansen(x, {"n": -1, "co": 0}[deterministic], k_ar_diff).cvt[:, 1]
    table = pd.DataFrame({"eigenvalue": eig, "trace": trace, "5% crit": cv},
                         index=pd.Index([f"rank <= {r}" for r in range(k)], name="H0"))
    rejected = table["trace"] > table["5% crit"]
    table.attrs["rank"] = int(np.argmin(rejected.to_numpy())) if not rejected.all() else k
    table.attrs["deterministic"] = deterministic
    table.attrs["seasons"] = seasons
    return table


def toda_yamamoto(levels: pd.DataFrame, p: int, d_max: int, causing: str, caused: Sequence[str]) -> dict[str, float]:
    """Toda-Yamamoto (1995) Wald test that ``causing`` does not Granger-cause ``caused``.

    Fit a VAR(p + d_max) with a constant to the *levels* and test only the first ``p`` lags of
    ``causing`` in the ``caused`` equations; the extra ``d_max`` lags (the highest order of
    integration) make the Wald statistic asymptotically chi^2(p * len(caused)) even when the
    series are I(1) or cointegrated. With d_max = 0 it is statsmodels' Wald causality test."""
    import statsmodels.api as sm  # heavy: statsmodels loads on first use (lessons 06-07)
    from scipy import stats  # heavy: scipy.stats loads on first use

    if not isinstance(levels, pd.DataFrame):
        raise TypeError("levels must be a pandas DataFrame of the series in levels")
    names = list(levels.columns)
    caused = [caused] if isinstance(caused, str) else list(caused)
    bad = [c for c in [causing, *caused] if c not in names]
    if bad or causing in caused:
        raise ValueError(f"causing={causing!r}, caused={caused!r}: must be distinct columns of {names}")
    if not isinstance(p, int) or p < 1 or not isinstance(d_max, int) or d_max < 0:
        raise ValueError(f"p={p!r} must be an int >= 1 and d_max={d_max!r} an int >= 0")
    fit = sm.tsa.VAR(levels).fit(p + d_max, trend="c")
    k = len(names)
    j = names.index(causing)
    # params has rows [const, lag1 var1..varK, lag2 ...] and one column per equation;
    # cov_params is that of vec(params.T): regressor by regressor, all equations within each
    idx = [(1 + lag * k + j) * k + names.index(c) for c in caused for lag in range(p)]
    beta = fit.params.to_numpy().ravel(order="C")[idx]
    cov = np.asarray(fit.cov_params())[np.ix_(idx, idx)]
    wald = float(beta @ np.linalg.solve(cov, beta))
    df = len(idx)
    return {"wald": wald, "df": df, "pvalue": float(stats.chi2.sf(wald, df)), "lags": p + d_max}


def forecast_scores(actual: pd.DataFrame, forecasts: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """RMSE per variable (columns) and forecaster (rows), plus each RMSE relative to the first
    forecaster's (the baseline) as ``rel. to <name>``."""
    if not isinstance(forecasts, Mapping) or not forecasts:
        raise TypeError("forecasts must be a non-empty mapping name -> DataFrame")
    rows = {}
    for name, fc in forecasts.items():
        fc = pd.DataFrame(fc)
        if fc.shape != actual.shape or list(fc.columns) != list(actual.columns):
            raise ValueError(f"forecast {name!r} has shape {fc.shape} / columns {list(fc.columns)}; "
                             f"actual has {actual.shape} / {list(actual.columns)}")
        rows[name] = np.sqrt(((fc.to_numpy() - actual.to_numpy()) ** 2).mean(axis=0))
    table = pd.DataFrame(rows, index=actual.columns).T
    base = next(iter(forecasts))
    for c in actual.columns:
        table[f"{c} rel. to {base}"] = table[c] / table.loc[base, c]
    return table


def _future_index(index: pd.Index, h: int) -> pd.Index:
    if isinstance(index, pd.PeriodIndex):
        return pd.period_range(index[-1] + 1, periods=h, freq=index.freq)
    return pd.RangeIndex(len(index), len(index) + h)


def growth_var_forecast(levels: pd.DataFrame, h: int, p: int) -> pd.DataFrame:
    """Forecast ``levels`` h steps ahead with a VAR(p) (constant) fitted to their first
    differences, then cumulate: the level forecast is the last level plus the summed forecast
    differences (for log levels: cumulated growth)."""
    import statsmodels.api as sm  # heavy: statsmodels loads on first use (lessons 06-07)

    if not isinstance(levels, pd.DataFrame):
        raise TypeError("levels must be a pandas DataFrame")
    if not isinstance(h, int) or h < 1 or not isinstance(p, int) or p < 1:
        raise ValueError(f"h={h!r} and p={p!r} must be positive ints")
    diffs = levels.diff().dropna()
    fit = sm.tsa.VAR(diffs).fit(p, trend="c")
    steps = fit.forecast(diffs.to_numpy()[-p:], h)
    return pd.DataFrame(levels.to_numpy()[-1] + np.cumsum(steps, axis=0),
                        index=_future_index(levels.index, h), columns=levels.columns)


def random_walk(levels: pd.DataFrame, h: int, drift: bool = False) -> pd.DataFrame:
    """The naive baseline: the last value (``drift=False``) or the last value plus h times the
    mean historical change (random walk with drift, fpp3 §5.2)."""
    if not isinstance(levels, pd.DataFrame):
        raise TypeError("levels must be a pandas DataFrame")
    if not isinstance(h, int) or h < 1:
        raise ValueError(f"h={h!r}: must be a positive int")
    step = levels.diff().mean().to_numpy() if drift else np.zeros(levels.shape[1])
    values = levels.to_numpy()[-1] + np.outer(np.arange(1, h + 1), step)
    return pd.DataFrame(values, index=_future_index(levels.index, h), columns=levels.columns)
