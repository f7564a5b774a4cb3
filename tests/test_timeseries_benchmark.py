"""Contenders, the benchmark runner and the significance helpers (lesson 09)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.timeseries import benchmark, contenders, significance
from helpers.timeseries.datasets import m3_monthly

SEASON = np.array([0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7])


@pytest.fixture(scope="module")
def m3() -> pd.DataFrame:
    return m3_monthly()


def test_seasonality_test_finds_constructed_season_and_rejects_noise() -> None:
    rng = np.random.default_rng(0)
    seasonal = 100 * np.tile(SEASON, 6) * (1 + 0.01 * rng.normal(size=72))
    assert contenders.seasonality_test(seasonal, 12)
    assert not contenders.seasonality_test(100 + rng.normal(size=72), 12)
    assert not contenders.seasonality_test(seasonal[:30], 12)  # fewer than 3 seasons


def test_naive2_hand_example_reseasonalises_the_last_adjusted_value() -> None:
    y = 100 * np.tile(SEASON, 6)  # exactly seasonal, flat level: adjusted series is constant
    fc = contenders.naive2(y, 18, 12)
    idx = contenders.seasonal_indices(y, 12)
    np.testing.assert_allclose(fc.point, (y[-1] / idx[71]) * np.resize(idx[72:], 18), rtol=1e-12)
    np.testing.assert_allclose(fc.point[:12], y[-12:], rtol=1e-9)


def test_naive2_without_seasonality_is_naive() -> None:
    y = np.array([5.0, 6.0, 5.5, 7.0, 6.5, 8.0])
    np.testing.assert_array_equal(contenders.naive2(y, 4, 12).point, np.full(4, 8.0))


def test_seasonal_naive_point_and_fpp3_interval_growth() -> None:
    y = np.arange(1.0, 37.0)
    fc = contenders.seasonal_naive(y, 18, 12)
    np.testing.assert_array_equal(fc.point[:12], y[-12:])
    width = fc.upper - fc.lower
    assert width[12] == pytest.approx(width[0] * np.sqrt(2))


def test_theta_matches_statsmodels_exactly_on_one_series(m3: pd.DataFrame) -> None:
    from statsmodels.tsa.forecasting.theta import ThetaModel

    y = m3.train[0]
    want = ThetaModel(y, period=12).fit().forecast(18)
    np.testing.assert_allclose(contenders.theta(y, 18, 12).point, np.asarray(want), rtol=1e-12)


def test_runner_on_five_series(m3: pd.DataFrame) -> None:
    df = benchmark.systematic_subset(m3, 286)
    assert len(df) == 5
    res = benchmark.run_benchmark(df, ["SNaive", "Naive2", "Theta", "ETS", "ARIMA"], m=12)
    table = res.table()
    assert set(table.index) == {"SNaive", "Naive2", "Theta", "ETS", "ARIMA", "Comb"}
    assert table.loc["Naive2", "OWA"] == pytest.approx(1.0)
    assert ((table["coverage"] >= 0) & (table["coverage"] <= 1)).all()
    assert res.smape_by_horizon().shape == (18, 6)
    q = res.quantiles["ARIMA"]
    assert (np.diff(q, axis=-1) >= 0).all()


def test_theta_subset_close_to_published(m3: pd.DataFrame) -> None:
    """Every 28th series (51): Theta's mean sMAPE within 1.5 points of the full-set 13.85 (a sample)."""
    df = benchmark.systematic_subset(m3, 28)
    res = benchmark.run_benchmark(df, ["Theta"], m=12)
    assert abs(res.table().loc["Theta", "sMAPE"] - 13.85) < 1.5


def test_systematic_subset_is_proportional(m3: pd.DataFrame) -> None:
    sub = benchmark.systematic_subset(m3, 14)
    share = sub.category.value_counts(normalize=True)
    full = m3.category.value_counts(normalize=True)
    assert (abs(share - full[share.index]) < 0.03).all()


def test_demsar_q_table_and_worked_cd() -> None:
    # Demsar 2006, Table 5(a), two-tailed Nemenyi q_0.05
    for k, q in {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 10: 3.164}.items():
        assert significance.nemenyi_q(k) == pytest.approx(q, abs=1.5e-3)
    # §3.2.2: four classifiers on 14 data sets, CD = 2.569 sqrt(4 5 / (6 14)) = 1.25
    assert significance.nemenyi_cd(4, 14) == pytest.approx(1.25, abs=0.005)


def test_ranks_friedman_and_bootstrap_on_known_case() -> None:
    errors = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) + 1, "c": np.arange(20.0) + 2})
    assert significance.average_ranks(errors).to_dict() == {"a": 1.0, "b": 2.0, "c": 3.0}
    stat, p = significance.friedman(errors)
    assert stat == pytest.approx(40.0) and p < 1e-8  # 12N/(k(k+1)) sum R^2 - 3N(k+1)
    mean, lo, hi = significance.bootstrap_difference(errors.a, errors.b)
    assert mean == lo == hi == -1.0


@pytest.mark.parametrize("call", [
    lambda: benchmark.run_benchmark(pd.DataFrame({"series": ["x"], "train": [np.ones(30)],
                                                  "test": [np.ones(3)]}), ["Nope"], m=12),
    lambda: benchmark.systematic_subset(pd.DataFrame({"a": [1]}), 2),
    lambda: significance.nemenyi_q(1),
    lambda: significance.bootstrap_difference([1.0], [2.0]),
    lambda: contenders.arima(np.r_[-1.0, np.ones(40)], 3, 12),
    lambda: contenders.seasonal_naive(np.ones(10), 3, 12),
])
def test_bad_input_raises_value_error(call) -> None:
    with pytest.raises(ValueError):
        call()


def test_rank_table_wants_a_dataframe() -> None:
    with pytest.raises(TypeError):
        significance.rank_table(np.ones((3, 3)))


def test_lesson09_exercises_accept_reference_and_reject_wrong() -> None:
    from helpers.lessons import forecasting_exercises as fe

    ex = fe.lesson09()
    assert ex["metrics"].check(fe.smape_mase)
    assert not ex["metrics"].check(lambda y, f, tr, m: (0.0, 0.0))
    assert ex["wide"].check("B") and not ex["wide"].check("C")
