"""helpers.timeseries.diagnostics: strengths, Ljung-Box degrees of freedom, AICc tables."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.diagnostic import acorr_ljungbox
from statsmodels.tsa.seasonal import STL
from threadpoolctl import threadpool_limits

from helpers import timeseries as ts
from helpers.timeseries import diagnostics as dg


@pytest.fixture(autouse=True)
def one_thread():
    with threadpool_limits(1):  # tiny matrices: BLAS threads only add overhead
        yield


@pytest.fixture(scope="module")
def log_air():
    return np.log(ts.airline())


def test_strengths_formula_and_extremes(log_air):
    stl = STL(log_air.to_timestamp(), period=12, robust=True).fit()
    got = dg.feature_strengths(stl)
    r = stl.resid
    assert got["seasonal"] == pytest.approx(max(0, 1 - r.var() / (stl.seasonal + r).var()))
    assert got["seasonal"] > dg.SEASONAL_STRENGTH_THRESHOLD
    rng = np.random.default_rng(0)
    noise = pd.Series(rng.standard_normal(240), index=pd.period_range("2000-01", periods=240, freq="M"))
    assert dg.feature_strengths(STL(noise.to_timestamp(), period=12).fit())["seasonal"] < 0.64


def test_ljung_box_degrees_of_freedom():
    x = np.random.default_rng(1).standard_normal(200)
    got = dg.ljung_box(x, 24, 2)
    ref = acorr_ljungbox(x, lags=[24], model_df=2)
    assert got["df"] == 22 and got["pvalue"] == pytest.approx(float(ref["lb_pvalue"].iloc[0]))
    with pytest.raises(ValueError, match="model_df"):
        dg.ljung_box(x, 5, 5)
    with pytest.raises(ValueError, match="lags"):
        dg.ljung_box(x, 0, 0)


def test_sarima_table_prefers_the_airline_model(log_air):
    table, fits = dg.sarima_table(log_air, {"airline": ((0, 1, 1), (0, 1, 1, 12)),
                                            "AR(1)": ((1, 1, 0), (0, 1, 1, 12))})
    assert table.index[0] == "airline" and set(fits) == {"airline", "AR(1)"}
    assert table.loc["airline", "LB df"] == 22
    with pytest.raises(ValueError, match="mix differencing"):
        dg.sarima_table(log_air, {"a": ((0, 1, 1), (0, 1, 1, 12)), "b": ((0, 0, 1), (0, 1, 1, 12))})
    with pytest.raises(ValueError, match="order"):
        dg.sarima_table(log_air, {"a": ((0, 1), (0, 1, 1, 12))})


def test_ets_table_and_bad_spec():
    air = ts.airline().iloc[:72]
    table, _ = dg.ets_table(air, {"ANA": {"error": "add", "seasonal": "add"},
                                  "MNM": {"error": "mul", "seasonal": "mul"}})
    assert list(table.columns) == ["params", "AICc"] and len(table) == 2
    with pytest.raises(ValueError, match="keys"):
        dg.ets_table(air, {"x": {"errors": "add"}})


def test_lognormal_mean_by_simulation():
    z = np.random.default_rng(2).normal(0.3, 0.4, 400_000)
    assert dg.lognormal_mean(0.3, 0.16) == pytest.approx(np.exp(z).mean(), rel=3e-3)
    with pytest.raises(ValueError, match="variance"):
        dg.lognormal_mean(0.0, -1.0)


def test_feature_strengths_type_error():
    with pytest.raises(TypeError, match="decomposition"):
        dg.feature_strengths(object())
