"""Tests for helpers.timeseries.probabilistic: quantiles for point models, calibration, leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.timeseries import probabilistic as pr

LEVELS = [0.1, 0.5, 0.9]


def test_seasonal_naive_quantiles_follow_fpp3_table_5_2():
    y = np.array([1.0, 2, 3, 2, 3, 4, 3, 5, 5])  # m = 3, residuals y_t - y_{t-3}: 1,1,1,1,2,1
    q = pr.seasonal_naive_quantiles(y, horizon=4, m=3, levels=LEVELS)
    sigma = np.sqrt(np.mean(np.array([1, 1, 1, 1, 2, 1.0]) ** 2))
    assert q.shape == (3, 4)
    np.testing.assert_allclose(q[1], [3, 5, 5, 3])  # the median repeats the last season
    z = stats.norm.ppf(0.9)
    np.testing.assert_allclose(q[2] - q[1], z * sigma * np.sqrt([1, 1, 1, 2]))  # k = floor((h-1)/m)
    with pytest.raises(ValueError, match="m=9"):
        pr.seasonal_naive_quantiles(y, horizon=4, m=9, levels=LEVELS)
    with pytest.raises(ValueError, match="levels"):
        pr.seasonal_naive_quantiles(y, horizon=4, m=3, levels=[0.5, 0.1])


def test_conformal_quantiles_and_calibration():
    rng = np.random.default_rng(0)
    ratios = rng.lognormal(0, 0.2, size=4000)
    point = np.full((50, 7), 100.0)
    q = pr.conformal_quantiles(point, ratios, LEVELS)
    assert q.shape == (3, 50, 7)
    actual = 100 * rng.lognormal(0, 0.2, size=(50, 7))  # same distribution: calibrated
    cal = pr.quantile_calibration(actual, q.transpose(1, 0, 2), LEVELS)
    np.testing.assert_allclose(cal.to_numpy(), LEVELS, atol=0.04)
    with pytest.raises(ValueError, match="at least 10"):
        pr.conformal_quantiles(point, ratios[:5], LEVELS)
    with pytest.raises(ValueError, match="do not match"):
        pr.quantile_calibration(actual, q, LEVELS)


def test_to_gluonts_quantile_forecasts():
    q = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    out = pr.to_gluonts(q, LEVELS, [pd.Period("2024-01-01", freq="D")] * 2, ["a", "b"])
    assert [f.item_id for f in out] == ["a", "b"]
    np.testing.assert_allclose(out[1].quantile(0.9), q[1, 2])
    with_mean = pr.to_gluonts(q, LEVELS, [pd.Period("2024-01-01", freq="D")] * 2, ["a", "b"], mean=q[:, 1] + 0.5)
    np.testing.assert_allclose(with_mean[0].mean, q[0, 1] + 0.5)
    with pytest.raises(ValueError, match="shape"):
        pr.to_gluonts(q[:, :2], LEVELS, [pd.Period("2024-01-01", freq="D")] * 2, ["a", "b"])


def test_future_dependence_catches_a_leak_and_clears_an_honest_forecast():
    y = pd.Series(np.linspace(10, 40, 60) + np.sin(np.arange(60)))

    def honest(s: pd.Series) -> np.ndarray:
        return np.full(12, s.iloc[:-12].mean())

    def leaky(s: pd.Series) -> np.ndarray:  # "normalises" with the mean of the whole series
        return np.full(12, s.iloc[:-12].mean()) * s.mean() / s.iloc[:-12].mean()

    assert pr.future_dependence(honest, y, 12) == 0.0
    assert pr.future_dependence(leaky, y, 12) > 0.05
    with pytest.raises(ValueError, match="test_size"):
        pr.future_dependence(honest, y, 0)
    with pytest.raises(TypeError, match="pd.Series"):
        pr.future_dependence(honest, y.to_numpy(), 12)


def test_lesson07_conformal_exercise_matches_the_library():
    from helpers.lessons.panel_exercises import conformal_exercise, conformal_reference

    ex = conformal_exercise()
    assert ex.check(conformal_reference)
    assert not ex.check(lambda point, ratios, levels: np.quantile(ratios, levels)[:, None] * point[None, :] + 1)
    for point, ratios, levels in ex.cases:
        np.testing.assert_allclose(conformal_reference(point, ratios, levels), pr.conformal_quantiles(point, ratios, levels))
