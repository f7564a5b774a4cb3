"""Tests for helpers.timeseries: loaders, stationarity, metrics, Kalman/EM, adapters, leaderboard."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import random
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from helpers import data, noise
from helpers import timeseries as ts

# sktime 1.2 announces a config change on every forecaster; pytest resets warning filters per test
pytestmark = pytest.mark.filterwarnings("ignore:.*remember_data:FutureWarning")


# --------------------------------------------------------------------------- datasets
def test_loaders_shapes_and_known_values():
    us = ts.uschange()
    assert us.shape == (187, 5) and str(us.index[0]) == "1970Q1" and str(us.index[-1]) == "2016Q3"
    e6 = ts.interest_inflation()
    assert e6.shape == (107, 2) and list(e6.columns) == ["Dp", "R"] and str(e6.index[0]) == "1972Q2"
    d = ts.daily_demand()
    assert len(d) == 1461 and list(d.columns) == ["ds", "y", "temperature", "event"]
    assert d["ds"].iloc[0] == pd.Timestamp("2019-01-01") and d["ds"].iloc[-1] == pd.Timestamp("2022-12-31")
    hol = ts.daily_demand_holidays(d)
    assert sorted(hol["holiday"].unique()) == ["black_friday", "christmas"] and len(hol) == 8
    assert pd.Timestamp("2022-11-25") in set(hol["ds"])  # the day after Thanksgiving 2022
    panel = ts.store_panel()
    assert panel.shape == (16 * 364, 4) and panel["series_id"].nunique() == 16
    y, X = ts.store_panel_multiindex()
    assert y.shape == (16 * 364, 1) and X.shape == (16 * 364, 1) and y.index.nlevels == 2


def test_truth_is_consistent():
    assert sum(ts.DAILY_DEMAND_TRUTH["weekly"]) == 0
    panel = ts.store_panel()
    rate = panel["promo"].mean()
    assert abs(rate - ts.STORE_PANEL_TRUTH["promo_rate"]) < 0.02


@pytest.mark.parametrize("name", ["daily_demand.csv", "store_panel.csv", "interest_inflation.csv"])
def test_generators_reproduce_the_shipped_files(tmp_path, name):
    spec = importlib.util.spec_from_file_location("make_data", data.DATA_DIR / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    out = tmp_path / name
    make_data.GENERATORS[name](out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == data.read_manifest()[name]


def test_holidays_rejects_bad_frame():
    with pytest.raises(ValueError, match="columns 'ds' and 'event'"):
        ts.daily_demand_holidays(pd.DataFrame({"ds": [1]}))


# --------------------------------------------------------------------------- stationarity
def test_stationarity_verdicts():
    rng = np.random.default_rng(0)
    walk = pd.Series(np.cumsum(rng.normal(size=300)))
    noise_ = pd.Series(rng.normal(size=300))
    table = ts.stationarity_table({"walk": walk, "noise": noise_})
    assert table.loc["walk", "verdict"] == "non-stationary"
    assert table.loc["noise", "verdict"] == "stationary"


def test_stationarity_bad_input():
    s = pd.Series(np.arange(50.0))
    with pytest.raises(ValueError, match="regression='x'"):
        ts.stationarity_table({"a": s}, regression="x")
    with pytest.raises(ValueError, match="alpha=2"):
        ts.stationarity_table({"a": s}, alpha=2)
    with pytest.raises(ValueError, match="'short' has 5 observations"):
        ts.stationarity_table({"short": s[:5]})
    with pytest.raises(TypeError, match="non-empty mapping"):
        ts.stationarity_table({})


# --------------------------------------------------------------------------- metrics
def test_point_metrics_match_definitions():
    y_train = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y_test = pd.Series([10.0, 20.0])
    y_pred = pd.Series([5.0, 30.0])
    m = ts.point_metrics(y_test, y_pred, y_train, sp=2)
    assert m["MAPE"] == pytest.approx(np.mean([5 / 10, 10 / 20]))
    assert m["sMAPE"] == pytest.approx(np.mean([2 * 5 / 15, 2 * 10 / 50]))
    assert m["MASE"] == pytest.approx(np.mean([5, 10]) / 2.0)  # seasonal-naive in-sample MAE with sp=2 is 2


def test_interval_coverage_and_errors():
    assert ts.interval_coverage([1, 2, 3, 4], [0, 0, 5, 0], [2, 2, 6, 3]) == 0.5
    with pytest.raises(ValueError, match="lengths differ"):
        ts.interval_coverage([1, 2], [0], [3, 3])
    with pytest.raises(ValueError, match="lower must not exceed upper"):
        ts.interval_coverage([1], [2], [1])
    with pytest.raises(ValueError, match="y_test has 1 points but y_pred has 2"):
        ts.point_metrics(pd.Series([1.0]), pd.Series([1.0, 2.0]), pd.Series(np.arange(10.0)))
    with pytest.raises(ValueError, match="sp=0"):
        ts.point_metrics(pd.Series([1.0]), pd.Series([1.0]), pd.Series(np.arange(10.0)), sp=0)
    with pytest.raises(ValueError, match="coverage=1.5"):
        ts.scorers(sp=12, coverage=1.5)
    assert [type(s).__name__ for s in ts.scorers(12)] == [
        "MeanAbsoluteScaledError",
        "MeanAbsolutePercentageError",
        "MeanAbsolutePercentageError",
        "EmpiricalCoverage",
    ]


# --------------------------------------------------------------------------- Kalman / EM
def test_structural_matrices():
    m = ts.structural(4, "local linear")
    assert m.k == 2 + 3 and m.noisy == (0, 1, 2) and m.names == ("level", "slope", "seasonal")
    # the seasonal states of a period-4 dummy seasonal sum to minus the next one
    assert np.array_equal(m.transition[2, 2:], [-1, -1, -1])
    assert m.observation.tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0]]
    q = m.Q([1.0, 2.0, 3.0])
    assert np.count_nonzero(q) == 3 and q[2, 2] == 3.0
    with pytest.raises(ValueError, match=r"sp \(the seasonal period\) must be >= 2, got 1"):
        ts.structural(1)
    with pytest.raises(ValueError, match="trend='cubic'"):
        ts.structural(12, "cubic")


def test_fit_em_equals_pykalman_em_for_local_level():
    from pykalman import KalmanFilter

    y = ts.nile().to_numpy()
    res = ts.fit_em(ts.local_level(), y, n_iter=3, state_variances=[1000.0], observation_variance=10000.0)
    kf = KalmanFilter(
        transition_matrices=[[1.0]],
        observation_matrices=[[1.0]],
        transition_covariance=[[1000.0]],
        observation_covariance=[[10000.0]],
        initial_state_mean=res.initial_state_mean,
        initial_state_covariance=res.initial_state_covariance,
        em_vars=["transition_covariance", "observation_covariance"],
    ).em(y, n_iter=3)
    assert res.state_variances[0] == pytest.approx(kf.transition_covariance[0, 0], rel=1e-10)
    assert res.observation_variance == pytest.approx(kf.observation_covariance[0, 0], rel=1e-10)
    # the vectorised log-likelihood equals pykalman's public loglikelihood()
    assert res.loglik[-1] == pytest.approx(ts.to_pykalman(res).loglikelihood(y), rel=1e-10)


def test_rts_smoother_equals_pykalman_smooth_with_missing_values():
    from pykalman import KalmanFilter

    from helpers.timeseries import kalman

    y = ts.airline().to_numpy(dtype=float).copy()
    y[[5, 40]] = np.nan
    model = ts.structural(12, "local linear")
    z = kalman._observations(np.log(y))
    x0, p0 = kalman.default_initial_state(model, np.log(y))
    q = model.Q(np.full(len(model.noisy), 1e-3))
    kf = KalmanFilter(transition_matrices=model.transition, observation_matrices=model.observation,
                      transition_covariance=q, observation_covariance=[[1e-3]],
                      initial_state_mean=x0, initial_state_covariance=p0)
    filt_m, filt_c = kf.filter(z)
    sm_m, sm_c, _ = kalman.rts_smoother(model.transition, filt_m, filt_c,
                                        *kalman._predicted(model.transition, q, x0, p0, filt_m, filt_c))
    ref_m, ref_c = kf.smooth(z)
    assert np.allclose(sm_m, ref_m, rtol=1e-8, atol=1e-10)
    assert np.allclose(sm_c, ref_c, rtol=1e-6, atol=1e-10)


def test_em_is_monotone_handles_missing_and_stops_early():
    rng = np.random.default_rng(1)
    n, sp = 96, 4
    season = np.tile([1.0, -0.5, 0.3, -0.8], n // sp)
    y = np.cumsum(rng.normal(0, 0.3, n)) + season + rng.normal(0, 0.5, n)
    y[[10, 11, 50]] = np.nan
    res = ts.fit_em(ts.structural(sp, "local level"), y, n_iter=15)
    assert np.all(np.diff(res.loglik) >= -1e-8)
    assert np.all(np.isfinite(res.path)) and res.path.shape == (16, 3)
    early = ts.fit_em(ts.structural(sp, "local level"), y, n_iter=60, tol=0.05)
    assert early.n_iter < 60


def test_forecast_variance_of_local_level():
    y = ts.nile().to_numpy()
    res = ts.fit_em(ts.local_level(), y, n_iter=2)
    mean, var = ts.forecast(res, y, 3)
    _, filt_cov = ts.to_pykalman(res).filter(y)
    q, r = res.state_variances[0], res.observation_variance
    expected = filt_cov[-1, 0, 0] + q * np.arange(1, 4) + r
    assert np.allclose(var, expected) and np.allclose(mean, mean[0])  # a random walk: flat forecast
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        ts.forecast(res, y, 0)


def test_fit_em_bad_input():
    with pytest.raises(ValueError, match="n_iter must be >= 0, got -1"):
        ts.fit_em(ts.local_level(), np.arange(10.0), n_iter=-1)
    with pytest.raises(ValueError, match="every observation is missing"):
        ts.fit_em(ts.local_level(), np.full(5, np.nan))
    with pytest.raises(ValueError, match="need at least 3 observations"):
        ts.fit_em(ts.local_level(), [1.0, 2.0])


def test_structural_forecaster_sktime_contract():
    y = ts.airline()
    f = ts.StructuralKalmanForecaster(sp=12, n_iter=5).fit(y.iloc[:-12])
    pred = f.predict(fh=np.arange(1, 13))
    iv = f.predict_interval(fh=np.arange(1, 13), coverage=0.9)
    assert pred.index.equals(y.index[-12:])
    assert np.all(iv.iloc[:, 0] < pred) and np.all(pred < iv.iloc[:, 1])
    q = f.predict_quantiles(fh=np.arange(1, 13), alpha=[0.1, 0.5, 0.9])
    assert np.allclose(q.iloc[:, 1], pred)  # log model: the median is the point forecast
    with pytest.raises(ValueError, match="strictly positive"):
        ts.StructuralKalmanForecaster(sp=12, n_iter=2).fit(y - 200)
    with pytest.raises(ValueError, match="n_iter must be a positive int, got 0"):  # sktime: parameters are checked in fit
        ts.StructuralKalmanForecaster(n_iter=0).fit(y)
    with pytest.raises(ValueError, match=r"sp \(the seasonal period\) must be >= 2, got 1"):
        ts.StructuralKalmanForecaster(sp=1).fit(y)


@pytest.mark.timeout(600)
def test_structural_forecaster_passes_sktime_check_estimator():
    from sktime.utils.estimator_checks import check_estimator

    results = check_estimator(ts.StructuralKalmanForecaster, raise_exceptions=True)
    assert results and all(v == "PASSED" for v in results.values())


# --------------------------------------------------------------------------- GluonTS
def test_lightning_sandbox_restores_threads_and_cleans_up():
    import torch

    torch.set_num_threads(2)
    with ts.lightning_sandbox() as kwargs:
        assert torch.get_num_threads() == 1
        root = kwargs["default_root_dir"]
        assert os.path.isdir(root) and kwargs["enable_progress_bar"] is False and kwargs["logger"] is False
    assert torch.get_num_threads() == 2 and not os.path.exists(root)
    with pytest.raises(ValueError, match="threads must be a positive int, got 0"), ts.lightning_sandbox(threads=0):
        pass


def test_seeded_restores_rng_state():
    import torch

    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    expected = (np.random.random(), random.random(), torch.rand(1).item())
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    with ts.seeded(7):
        inside = np.random.random()
    with ts.seeded(7):
        assert np.random.random() == inside
    assert (np.random.random(), random.random(), torch.rand(1).item()) == expected


def test_gluonts_forecaster_is_reproducible_and_quiet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Lightning must not write here (nor anywhere persistent)
    y = ts.airline().iloc[:60]
    kw = dict(model="feedforward", epochs=1, num_batches_per_epoch=2, hidden=4, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any unfiltered warning fails the test
        noise.quiet_third_party()
        ts.quiet_forecasting_libraries()
        f1 = ts.GluonTSForecaster(**kw).fit(y, fh=[1, 2, 3])
        f2 = ts.GluonTSForecaster(**kw).fit(y, fh=[1, 2, 3])
    p1, p2 = f1.predict(), f2.predict()
    assert np.allclose(p1, p2) and len(p1) == 3
    iv = f1.predict_interval(coverage=0.8)
    assert np.all(iv.iloc[:, 0] <= iv.iloc[:, 1])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="different forecasting horizon"):  # sktime guards fh
        f1.predict(fh=[4])


def test_gluonts_forecaster_bad_input():
    y = ts.airline().iloc[:40]
    with pytest.raises(ValueError, match="model='lstm'"):  # sktime: parameters are checked in fit
        ts.GluonTSForecaster(model="lstm").fit(y, fh=[1])
    with pytest.raises(ValueError, match="epochs must be a positive int, got 0"):
        ts.GluonTSForecaster(epochs=0).fit(y, fh=[1])
    irregular = pd.Series(np.arange(1.0, 40.0), index=pd.Index(np.arange(39) * 2))
    with pytest.raises(TypeError, match="PeriodIndex, a DatetimeIndex with a frequency or a consecutive"):
        ts.GluonTSForecaster(epochs=1).fit(irregular, fh=[1])


# --------------------------------------------------------------------------- leaderboard
def test_leaderboard_matches_direct_computation():
    from sktime.forecasting.naive import NaiveForecaster

    y = ts.airline()
    board = ts.run_leaderboard({"naive": NaiveForecaster(sp=12), "last": NaiveForecaster()}, y, test_size=24,
                               horizon=12, initial_window=84)
    assert list(board.holdout.columns) == ["MASE", "sMAPE", "MSIS", "coverage"]
    assert len(board.folds) == 2 * 3  # two models, three folds (cutoffs at 84, 96, 108), all before the hold-out
    assert board.folds["cutoff"].max() < str(y.index[-24])
    seasonal = pd.concat([y.iloc[-36:-24], y.iloc[-36:-24]]).set_axis(y.index[-24:])
    direct = ts.point_metrics(y.iloc[-24:], seasonal, y.iloc[:-24], sp=12)
    assert board.holdout.loc["naive", "MASE"] == pytest.approx(direct["MASE"])
    assert board.holdout.loc["naive", "sMAPE"] == pytest.approx(100 * direct["sMAPE"])  # the 0-200 scale
    fold0 = board.folds.query("model == 'naive'").iloc[0]
    manual = ts.point_metrics(y.iloc[84:96], y.iloc[72:84].set_axis(y.index[84:96]), y.iloc[:84], sp=12)
    assert fold0["MASE"] == pytest.approx(manual["MASE"])
    assert board.table().index[0] == "naive"
    # MSIS by hand (M4 guide) from the hold-out interval
    iv, yt, tr = board.intervals["naive"], y.iloc[-24:].to_numpy(), y.iloc[:-24].to_numpy()
    lo, hi, a = iv["lower"].to_numpy(), iv["upper"].to_numpy(), 0.05
    penalty = (hi - lo) + 2 / a * (lo - yt) * (yt < lo) + 2 / a * (yt - hi) * (yt > hi)
    assert board.holdout.loc["naive", "MSIS"] == pytest.approx(penalty.mean() / np.mean(np.abs(tr[12:] - tr[:-12])))
    # horizon errors: step 1's scaled error averaged over the three folds
    assert board.horizon_mase.shape == (12, 2)
    assert board.horizon_mase["naive"].mean() == pytest.approx(board.folds.query("model == 'naive'")["MASE"].mean())


def test_leaderboard_bad_input():
    from sktime.forecasting.naive import NaiveForecaster

    y = ts.airline()
    with pytest.raises(TypeError, match="not an sktime forecaster"):
        ts.run_leaderboard({"x": object()}, y)
    with pytest.raises(ValueError, match="test_size=140"):
        ts.run_leaderboard({"n": NaiveForecaster()}, y, test_size=140)
    with pytest.raises(ValueError, match="initial_window=200"):
        ts.run_leaderboard({"n": NaiveForecaster()}, y, initial_window=200)
    with pytest.raises(ValueError, match="never touches the hold-out"):
        ts.run_leaderboard({"n": NaiveForecaster()}, y, test_size=36, initial_window=100)
    with pytest.raises(TypeError, match="pd.Series"):
        ts.run_leaderboard({"n": NaiveForecaster()}, y.to_numpy())


# --------------------------------------------------------------------------- plots
def test_plots_draw_and_validate():
    import matplotlib.pyplot as plt

    y = ts.airline()
    iv = pd.DataFrame({"lower": y.iloc[-12:] - 10, "upper": y.iloc[-12:] + 10})
    ax = ts.plot_forecasts(y.iloc[:-12], y.iloc[-12:], {"m": y.iloc[-12:]}, {"m": iv}, history=24)
    assert len(ax.lines) == 3
    fan = pd.DataFrame({0.1: y.iloc[-12:] - 5, 0.5: y.iloc[-12:], 0.9: y.iloc[-12:] + 5})
    ax = ts.plot_fan(y.iloc[:-12], fan, actual=y.iloc[-12:])
    assert len(ax.collections) == 1
    with pytest.raises(ValueError, match="include the median"):
        ts.plot_fan(y, fan.drop(columns=[0.5]))
    with pytest.raises(TypeError, match="mapping"):
        ts.plot_forecasts(y, None, [y])
    plt.close("all")


# --------------------------------------------------------------------------- noise fixes
def test_sktime_context_manager_restores_filters():
    from sktime.utils.warnings import _SuppressWarningPattern

    ts.quiet_forecasting_libraries()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="keep me", category=FutureWarning)
        before = list(warnings.filters)
        with _SuppressWarningPattern(FutureWarning, "abc"):
            assert warnings.filters[0][0] == "ignore"
        assert warnings.filters == before  # sktime's own exit would prepend a "default" rule


def test_no_remember_data_warning_after_forecasting_horizon_checks():
    from sktime.forecasting.naive import NaiveForecaster

    y = ts.airline()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        noise.quiet_third_party()
        ts.quiet_forecasting_libraries()
        for _ in range(2):
            NaiveForecaster(sp=12).fit(y, fh=[1, 2]).predict()
    assert not [w for w in caught if "remember_data" in str(w.message)]


def test_prophet_and_cmdstanpy_loggers_are_quiet():
    ts.quiet_forecasting_libraries()
    stan = logging.getLogger("cmdstanpy")
    assert stan.level == logging.WARNING and any(isinstance(h, logging.NullHandler) for h in stan.handlers)
    prophet = logging.getLogger("prophet")
    record = logging.LogRecord("prophet", logging.INFO, __file__, 1, "chatter", None, None)
    assert not all(f.filter(record) for f in prophet.filters)
    assert logging.getLogger("prophet.plot").level == logging.CRITICAL


@pytest.mark.timeout(900)
def test_gluonts_forecaster_passes_sktime_check_estimator(tmp_path, monkeypatch):
    from sktime.utils.estimator_checks import check_estimator

    monkeypatch.chdir(tmp_path)  # Lightning must not write here (nor anywhere persistent)
    results = check_estimator(ts.GluonTSForecaster, raise_exceptions=True)
    assert results and all(v == "PASSED" for v in results.values())
