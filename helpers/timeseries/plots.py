"""Forecast pictures: history, truth, point forecasts and interval / quantile fans."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["plot_acf_pacf", "plot_fan", "plot_forecasts", "plot_residual_check"]


def _x(index: pd.Index) -> pd.Index:
    return index.to_timestamp() if isinstance(index, pd.PeriodIndex) else index


def plot_forecasts(
    y_train: pd.Series,
    y_test: pd.Series | None,
    forecasts: Mapping[str, pd.Series],
    intervals: Mapping[str, pd.DataFrame] | None = None,
    ax: plt.Axes | None = None,
    title: str = "",
    history: int | None = None,
) -> plt.Axes:
    """History (last ``history`` points), the truth and each named point forecast; shaded
    intervals where given (sktime ``predict_interval`` frames: one lower and one upper column)."""
    if not isinstance(forecasts, Mapping):
        raise TypeError(f"forecasts must be a mapping name -> pd.Series, got {type(forecasts).__name__}")
    ax = ax or plt.subplots()[1]
    hist = y_train if history is None else y_train.iloc[-history:]
    ax.plot(_x(hist.index), hist.to_numpy(), color="0.3", lw=1.2, label="history")
    if y_test is not None:
        ax.plot(_x(y_test.index), y_test.to_numpy(), color="k", lw=1.2, ls="--", label="actual")
    for i, (name, pred) in enumerate(forecasts.items()):
        color = f"C{i}"
        ax.plot(_x(pred.index), pred.to_numpy(), color=color, lw=1.5, label=name)
        if intervals and name in intervals:
            iv = intervals[name]
            if iv.shape[1] != 2:
                raise ValueError(f"interval for {name!r} must have 2 columns (lower, upper), got {iv.shape[1]}")
            ax.fill_between(_x(iv.index), iv.iloc[:, 0].to_numpy(), iv.iloc[:, 1].to_numpy(), color=color, alpha=0.15, lw=0)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    return ax


def plot_fan(
    history: pd.Series,
    quantiles: pd.DataFrame,
    actual: pd.Series | None = None,
    ax: plt.Axes | None = None,
    title: str = "",
) -> plt.Axes:
    """A quantile fan: ``quantiles`` has one column per probability (e.g. 0.05 ... 0.95), row index
    = forecast dates. Symmetric pairs are shaded, the median drawn as a line."""
    probs = np.asarray(quantiles.columns, dtype=float)
    if np.any((probs <= 0) | (probs >= 1)):
        raise ValueError(f"quantile columns must be probabilities in (0, 1), got {probs.tolist()}")
    if not np.isclose(probs, 0.5).any():
        raise ValueError("quantiles must include the median (0.5)")
    ax = ax or plt.subplots()[1]
    x = _x(quantiles.index)
    ax.plot(_x(history.index), history.to_numpy(), color="0.3", lw=1.2, label="history")
    lower = sorted(p for p in probs if p < 0.5)
    for p in lower:
        hi = 1 - p
        if np.isclose(probs, hi).any():
            col_lo = quantiles.columns[np.isclose(probs, p)][0]
            col_hi = quantiles.columns[np.isclose(probs, hi)][0]
            ax.fill_between(x, quantiles[col_lo], quantiles[col_hi], color="C0", alpha=0.18, lw=0,
                            label=f"{100 * (hi - p):.0f}% interval")
    ax.plot(x, quantiles[quantiles.columns[np.isclose(probs, 0.5)][0]], color="C0", lw=1.5, label="median")
    if actual is not None:
        ax.plot(_x(actual.index), actual.to_numpy(), color="k", ls="--", lw=1.2, label="actual")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def plot_acf_pacf(x: pd.Series | np.ndarray, lags: int, title: str = "", season: int | None = None) -> plt.Figure:
    """ACF and PACF side by side with statsmodels' 95 % bands (ACF: Bartlett's formula, widening
    with the lag; PACF: +-1.96/sqrt(n)); multiples of ``season`` get vertical grey lines."""
    from statsmodels.graphics.tsaplots import (  # heavy: statsmodels loads on first use (lessons 06-07)
        plot_acf,
        plot_pacf,
    )

    values = np.asarray(pd.Series(x).dropna(), dtype=float)
    if not isinstance(lags, int) or not 1 <= lags < len(values) // 2:
        raise ValueError(f"lags={lags!r}: must be an int in [1, n/2) with n={len(values)}")
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
    plot_acf(values, lags=lags, ax=axes[0], zero=False, title="ACF")
    plot_pacf(values, lags=lags, ax=axes[1], zero=False, method="ywm", title="PACF")
    for ax in axes:
        if season:
            for k in range(season, lags + 1, season):
                ax.axvline(k, color="0.7", lw=0.8, zorder=0)
        ax.set_xlabel("lag")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_residual_check(resid: pd.Series, lags: int, title: str = "") -> plt.Figure:
    """Residuals over time and their ACF (statsmodels' 95 % band, Bartlett's formula)."""
    from statsmodels.graphics.tsaplots import (
        plot_acf,  # heavy: statsmodels loads on first use (lessons 06-07)
    )

    if not isinstance(resid, pd.Series):
        raise TypeError(f"resid must be a pd.Series, got {type(resid).__name__}")
    if not isinstance(lags, int) or not 1 <= lags < len(resid) // 2:
        raise ValueError(f"lags={lags!r}: must be an int in [1, n/2) with n={len(resid)}")
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.6))
    axes[0].plot(_x(resid.index), resid.to_numpy(), lw=0.9)
    axes[0].axhline(0, color="0.5", lw=0.8)
    axes[0].set_title("residuals", fontsize=10)
    plot_acf(resid.to_numpy(), lags=lags, ax=axes[1], zero=False, title="residual ACF")
    axes[1].set_xlabel("lag")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
