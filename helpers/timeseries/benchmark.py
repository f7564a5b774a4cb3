"""A many-series forecasting benchmark in the M3/M4 style (lesson 09, ``make bench`` key 09).

Protocol: every contender of :mod:`~helpers.timeseries.contenders` sees only each series' training
part (the competition's own split, horizon ``h``), forecasts all ``h`` steps at once, and is scored
on the hidden test part with :mod:`~helpers.timeseries.metrics`: sMAPE (0-200), MASE and MSIS with
the seasonal period ``m``, 95 % coverage, and CRPS from the quantile grid divided by the same
in-sample seasonal-naive MAE as MASE ("scaled CRPS", so series of different size can be averaged).
OWA is relative to Naive2 on the same series. ``Comb`` is an equal-weight combination of the ETS,
ARIMA and Theta points (quantiles averaged level by level); M4's own "Comb" benchmark averages SES,
Holt and damped exponential smoothing instead.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers import validate
from helpers.timeseries import metrics
from helpers.timeseries.contenders import CONTENDERS, Forecast

__all__ = ["COMB_OF", "BenchmarkResult", "plot_error_by_horizon", "plot_pit", "plot_ranks", "run_benchmark",
           "systematic_subset"]

#: members of the combination ``Comb`` (not M4's SES/Holt/Damped "Comb")
COMB_OF = ("ETS", "ARIMA", "Theta")


def _id_number(name: str) -> int:
    digits = re.sub(r"\D", "", str(name))
    return int(digits) if digits else 0


def systematic_subset(df: pd.DataFrame, every: int, offset: int = 0) -> pd.DataFrame:
    """Every ``every``-th series after sorting by the number in its id (M3 ids are grouped by
    category, so this is a proportional, stratified systematic sample)."""
    validate.positive_int("every", every)
    validate.integer("offset", offset, 0, every - 1)
    if "series" not in df.columns:
        raise ValueError(f"df needs a 'series' column, got {list(df.columns)}")
    order = df["series"].map(_id_number).sort_values(kind="stable").index
    return df.loc[order].iloc[offset::every].reset_index(drop=True)


def _local_chunk(name: str, trains: list[np.ndarray], h: int, m: int, seed: int) -> list[Forecast]:
    from threadpoolctl import threadpool_limits  # small fits: one BLAS thread is ~7x faster here

    fn = CONTENDERS[name].fn
    with threadpool_limits(limits=1, user_api="blas"):
        return [fn(y, h, m, seed) for y in trains]


@dataclass
class BenchmarkResult:
    """Forecasts of every contender on the same series, and the scores computed from them."""

    series: list[str]
    train: list[np.ndarray]
    test: np.ndarray  # (n, h)
    m: int
    points: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, h)
    quantiles: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, h, Q)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.points)

    def add(self, name: str, forecasts: Sequence[Forecast], seconds: float = float("nan")) -> None:
        """Store one contender's forecasts (one per series, in order)."""
        if len(forecasts) != len(self.series):
            raise ValueError(f"{name}: {len(forecasts)} forecasts for {len(self.series)} series")
        self.points[name] = np.stack([f.point for f in forecasts])
        self.quantiles[name] = np.stack([f.quantiles for f in forecasts])
        self.seconds[name] = seconds

    def scores(self) -> pd.DataFrame:
        """One row per (series, method): sMAPE, MASE, MSIS, coverage, CRPS (scaled)."""
        scale = np.array([metrics.seasonal_scale(y, self.m) for y in self.train])
        y = self.test
        rows = []
        for name in self.names:
            f, q = self.points[name], self.quantiles[name]
            lo, hi = q[..., 0], q[..., -1]
            crps = metrics.crps_from_quantiles(y, q).mean(axis=1) / scale
            for i, sid in enumerate(self.series):
                rows.append({
                    "series": sid, "method": name,
                    "sMAPE": metrics.smape(y[i], f[i]),
                    "MASE": float(np.mean(np.abs(y[i] - f[i])) / scale[i]),
                    "MSIS": metrics.msis(y[i], lo[i], hi[i], self.train[i], self.m),
                    "coverage": metrics.interval_coverage(y[i], lo[i], hi[i]),
                    "CRPS": float(crps[i]),
                })
        return pd.DataFrame(rows)

    def errors(self, metric: str = "sMAPE") -> pd.DataFrame:
        """Series x methods table of one metric (input of the rank tests)."""
        s = self.scores()
        if metric not in s.columns[2:]:
            raise ValueError(f"metric={metric!r}; allowed: {list(s.columns[2:])}")
        return s.pivot(index="series", columns="method", values=metric)[self.names]

    def table(self) -> pd.DataFrame:
        """Mean of each metric over the series, OWA against Naive2 (if run), sorted by OWA/sMAPE."""
        t = self.scores().groupby("method")[["sMAPE", "MASE", "MSIS", "coverage", "CRPS"]].mean()
        t = t.loc[self.names]
        if "Naive2" in t.index:
            ref = t.loc["Naive2"]
            t.insert(2, "OWA", [metrics.owa(r.sMAPE, r.MASE, ref.sMAPE, ref.MASE) for r in t.itertuples()])
        return t.sort_values("OWA" if "OWA" in t.columns else "sMAPE")

    def smape_by_horizon(self) -> pd.DataFrame:
        """Mean sMAPE over series at each horizon 1..h (rows) for each method (columns)."""
        y = self.test
        out = {}
        for name in self.names:
            f = self.points[name]
            denom = np.abs(y) + np.abs(f)
            terms = np.divide(200 * np.abs(y - f), denom, out=np.zeros_like(y), where=denom > 0)
            out[name] = terms.mean(axis=0)
        return pd.DataFrame(out, index=pd.RangeIndex(1, y.shape[1] + 1, name="horizon"))

    def pit(self, name: str) -> np.ndarray:
        """PIT values of all test points of one method (interpolated on the quantile grid)."""
        if name not in self.quantiles:
            raise ValueError(f"name={name!r}; allowed: {self.names}")
        return metrics.pit_from_quantiles(self.test, self.quantiles[name]).ravel()


def run_benchmark(df: pd.DataFrame, names: Sequence[str], m: int, seed: int = 0, workers: int = 1,
                  comb: bool = True, deepar: dict | None = None) -> BenchmarkResult:
    """Run the contenders ``names`` (keys of :data:`CONTENDERS`) on every row of ``df`` (columns
    ``series``, ``train``, ``test``); local ones in ``workers`` processes; add ``Comb`` when all of
    :data:`COMB_OF` ran and ``comb``. ``deepar``: keyword arguments for the global DeepAR."""
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or not names:
        raise ValueError(f"names {list(names)}: unknown {unknown}; allowed: {list(CONTENDERS)}")
    validate.positive_int("workers", workers)
    if not {"series", "train", "test"} <= set(df.columns) or len(df) == 0:
        raise ValueError(f"df needs rows and columns series, train, test; got {list(df.columns)}")
    test = np.stack([np.asarray(t, dtype=float) for t in df["test"]])
    h = test.shape[1]
    trains = [np.asarray(t, dtype=float) for t in df["train"]]
    result = BenchmarkResult(list(df["series"]), trains, test, m)
    for name in names:
        t0 = time.perf_counter()
        if CONTENDERS[name].global_:
            fcs = CONTENDERS[name].fn(trains, h, m, seed, **(deepar or {}))
        elif workers == 1:
            fcs = _local_chunk(name, trains, h, m, seed)
        else:
            chunks = np.array_split(np.arange(len(trains)), workers * 4)
            with ProcessPoolExecutor(workers) as pool:
                parts = pool.map(_local_chunk, [name] * len(chunks), [[trains[i] for i in c] for c in chunks],
                                 [h] * len(chunks), [m] * len(chunks), [seed] * len(chunks))
                fcs = [f for part in parts for f in part]
        result.add(name, fcs, time.perf_counter() - t0)
    if comb and all(n in result.points for n in COMB_OF):
        result.points["Comb"] = np.mean([result.points[n] for n in COMB_OF], axis=0)
        result.quantiles["Comb"] = np.mean([result.quantiles[n] for n in COMB_OF], axis=0)
        result.seconds["Comb"] = sum(result.seconds[n] for n in COMB_OF)
    return result


# ----------------------------------------------------------------------------- figures
def plot_ranks(ranks: pd.DataFrame, ax=None, title: str = "per-series rank (sMAPE)"):  # noqa: ANN001, ANN201
    """Box plot of each method's per-series ranks, ordered by mean rank (mean marked)."""
    import matplotlib.pyplot as plt  # heavy: matplotlib loads only when a figure is drawn

    order = ranks.mean().sort_values().index
    ax = ax or plt.subplots(figsize=(7, 3.2), dpi=90)[1]
    ax.boxplot([ranks[c] for c in order], tick_labels=list(order), showmeans=True, widths=0.6)
    ax.set_ylabel("rank (1 = best)")
    ax.set_title(title)
    return ax


def plot_error_by_horizon(by_h: pd.DataFrame, ax=None):  # noqa: ANN001, ANN201
    """sMAPE at each horizon for each method."""
    import matplotlib.pyplot as plt  # heavy: matplotlib loads only when a figure is drawn

    ax = ax or plt.subplots(figsize=(7, 3.2), dpi=90)[1]
    for name in by_h.columns:
        ax.plot(by_h.index, by_h[name], marker=".", label=name, lw=1.2)
    ax.set_xlabel("horizon (months ahead)")
    ax.set_ylabel("mean sMAPE (%)")
    ax.legend(ncol=3, fontsize=8)
    return ax


def plot_pit(result: BenchmarkResult, names: Sequence[str], bins: int = 10):  # noqa: ANN201
    """PIT histograms (flat = calibrated; U = too narrow; hump = too wide)."""
    import matplotlib.pyplot as plt  # heavy: matplotlib loads only when a figure is drawn

    fig, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names), 2.4), dpi=90, sharey=True)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        ax.hist(result.pit(name), bins=bins, range=(0, 1), density=True, color="tab:blue", alpha=0.7)
        ax.axhline(1, color="k", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([0, 0.5, 1])
    fig.tight_layout()
    return fig
