"""Forecast pictures: history, truth, point forecasts and interval / quantile fans."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["plot_fan", "plot_forecasts"]


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
