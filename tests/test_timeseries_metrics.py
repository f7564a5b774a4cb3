"""Competition metrics against sktime and scoringrules (helpers.timeseries.metrics)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scoringrules as sr
from sktime.performance_metrics.forecasting import (
    mean_absolute_percentage_error,
    mean_absolute_scaled_error,
)

from helpers.timeseries import metrics

RNG = np.random.default_rng(3)
TRAIN = 100 + np.cumsum(RNG.normal(size=60)) + 10 * np.sin(np.arange(60) * 2 * np.pi / 12)
Y = TRAIN[-18:] + RNG.normal(size=18)
F = Y + RNG.normal(scale=3, size=18)


def test_smape_matches_sktime_times_100() -> None:
    want = 100 * mean_absolute_percentage_error(pd.Series(Y), pd.Series(F), symmetric=True)
    assert metrics.smape(Y, F) == pytest.approx(want, rel=1e-12)


def test_smape_hand_value_and_zero_pair() -> None:
    assert metrics.smape([100.0], [50.0]) == pytest.approx(200 * 50 / 150)
    assert metrics.smape([0.0, 1.0], [0.0, 1.0]) == 0.0


def test_mase_matches_sktime_seasonal() -> None:
    want = mean_absolute_scaled_error(pd.Series(Y), pd.Series(F), y_train=pd.Series(TRAIN), sp=12)
    assert metrics.mase(Y, F, TRAIN, 12) == pytest.approx(want, rel=1e-12)


def test_msis_matches_scoringrules_interval_score() -> None:
    lo, hi = F - 4, F + 4
    want = np.mean(sr.interval_score(Y, lo, hi, 0.05, backend="numpy")) / metrics.seasonal_scale(TRAIN, 12)
    assert metrics.msis(Y, lo, hi, TRAIN, 12) == pytest.approx(want, rel=1e-12)


def test_owa_of_naive2_is_one() -> None:
    assert metrics.owa(15.0, 1.2, 15.0, 1.2) == 1.0
    assert metrics.owa(12.0, 0.6, 15.0, 1.2) == pytest.approx(0.5 * (0.8 + 0.5))


def test_crps_from_dense_quantiles_approaches_normal_crps() -> None:
    from scipy import stats

    levels = np.arange(1, 400) / 400
    q = 2.0 + 1.5 * stats.norm.ppf(levels)
    got = metrics.crps_from_quantiles(np.array([3.0]), q[None, :], levels)[0]
    assert got == pytest.approx(float(sr.crps_normal(3.0, 2.0, 1.5, backend="numpy")), rel=0.02)


def test_pit_of_median_is_half() -> None:
    q = np.linspace(-1, 1, len(metrics.QUANTILE_LEVELS))
    assert metrics.pit_from_quantiles(np.array([0.0]), q[None, :])[0] == pytest.approx(0.5)


def test_quantile_grid_has_95_interval_and_median() -> None:
    lv = metrics.QUANTILE_LEVELS
    assert (lv[0], lv[19], lv[-1]) == (0.025, 0.5, 0.975) and len(lv) == 39


@pytest.mark.parametrize("call", [
    lambda: metrics.smape([1.0, 2.0], [1.0]),
    lambda: metrics.mase([1.0], [1.0], [1.0, 2.0], 12),
    lambda: metrics.seasonal_scale(np.ones(30), 12),
    lambda: metrics.msis([1.0], [2.0], [1.0], TRAIN, 12),
    lambda: metrics.msis([1.0], [0.0], [2.0], TRAIN, 12, alpha=1.5),
    lambda: metrics.mape([0.0], [1.0]),
    lambda: metrics.crps_from_quantiles(np.ones(2), np.ones((2, 3)), [0.5, 0.4, 0.6]),
])
def test_bad_input_raises_value_error(call) -> None:
    with pytest.raises(ValueError):
        call()
