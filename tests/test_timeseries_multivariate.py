"""helpers.timeseries.multivariate: Johansen cases against statsmodels and a Monte Carlo,
companion roots against statsmodels, Toda-Yamamoto against statsmodels' Wald test."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.tsa.vector_ar.vecm import VECM, coint_johansen

from helpers import timeseries as ts
from helpers.timeseries import multivariate as mv


@pytest.fixture(scope="module")
def e6():
    return ts.interest_inflation()


@pytest.fixture(scope="module")
def growth():
    return np.log(ts.macrodata()[["realgdp", "realcons", "realinv"]]).diff().dropna()


@pytest.mark.parametrize(("case", "det_order"), [("n", -1), ("co", 0)])
def test_trace_matches_coint_johansen(e6, case, det_order):
    table = mv.johansen_trace(e6, 3, case)
    ref = coint_johansen(e6.to_numpy(), det_order, 3)
    np.testing.assert_allclose(table["trace"], ref.lr1, rtol=1e-10)
    np.testing.assert_allclose(table["5% crit"], ref.cvt[:, 1])


def test_restricted_constant_trace_matches_vecm_likelihoods(e6):
    # the trace statistic for rank <= 1 is 2 (llf(rank 2) - llf(rank 1)) of the same-case VECM
    table = mv.johansen_trace(e6, 3, "ci")
    llf = {r: VECM(e6.to_numpy(), k_ar_diff=3, coint_rank=r, deterministic="ci").fit().llf for r in (1, 2)}
    assert table["trace"].iloc[1] == pytest.approx(2 * (llf[2] - llf[1]), rel=1e-8)
    assert round(table["trace"].iloc[0], 2) == 17.92 and table.attrs["rank"] == 0


def test_seasonal_dummies_trace_matches_vecm_likelihoods(e6):
    # JMulTi's e6 case: restricted constant + centred seasonal dummies (statsmodels VECM seasons=4)
    table = mv.johansen_trace(e6, 3, "ci", seasons=4)
    llf = {r: VECM(e6.to_numpy(), k_ar_diff=3, coint_rank=r, deterministic="ci", seasons=4).fit().llf for r in (1, 2)}
    assert table["trace"].iloc[1] == pytest.approx(2 * (llf[2] - llf[1]), rel=1e-8)
    assert round(table["trace"].iloc[0], 2) == 21.78 and table.attrs["rank"] == 1
    assert table.attrs["seasons"] == 4
    # centred dummies span the same space whatever the first season: the statistic is unchanged
    shifted = mv.johansen_trace(e6, 3, "ci", seasons=4, first_season=2)
    np.testing.assert_allclose(shifted["trace"], table["trace"], rtol=1e-10)


@pytest.mark.parametrize("kwargs", [{"seasons": 1}, {"seasons": -4}, {"seasons": 4.0}, {"first_season": -1}])
def test_johansen_trace_rejects_bad_seasons(e6, kwargs):
    with pytest.raises(ValueError, match="season"):
        mv.johansen_trace(e6, 3, "ci", **kwargs)


def test_restricted_constant_critical_values_by_monte_carlo():
    # independent random walks (rank 0): the 95% quantile of the "ci" trace statistic
    rng = np.random.default_rng(7)
    stats_ = [mv.johansen_trace(np.cumsum(rng.standard_normal((400, 2)), axis=0), 0, "ci")["trace"].iloc[0]
              for _ in range(1500)]
    assert np.quantile(stats_, 0.95) == pytest.approx(mv.RESTRICTED_CONSTANT_TRACE_CV[2], rel=0.04)  # MC: 20.5 for T = 400
    # three random walks (3 common trends) and one cointegrated pair tested at rank <= 1 (1 trend)
    three = [mv.johansen_trace(np.cumsum(rng.standard_normal((400, 3)), axis=0), 0, "ci")["trace"].iloc[0]
             for _ in range(1500)]
    assert np.quantile(three, 0.95) == pytest.approx(mv.RESTRICTED_CONSTANT_TRACE_CV[3], rel=0.04)  # MC: 35.3
    one = []
    for _ in range(1500):
        w = np.cumsum(rng.standard_normal(400))
        one.append(mv.johansen_trace(np.column_stack([w, w + rng.standard_normal(400)]), 0, "ci")["trace"].iloc[1])
    assert np.quantile(one, 0.95) == pytest.approx(mv.RESTRICTED_CONSTANT_TRACE_CV[1], rel=0.06)  # MC: 9.4


def test_companion_moduli_are_reciprocal_roots(growth):
    fit = sm.tsa.VAR(growth).fit(2)
    np.testing.assert_allclose(mv.companion_moduli(fit), np.sort(1 / np.abs(fit.roots))[::-1], rtol=1e-10)
    assert fit.is_stable() == bool(mv.companion_moduli(fit)[0] < 1)


def test_toda_yamamoto_without_extra_lag_is_statsmodels_wald(growth):
    for p in (1, 3):
        ref = sm.tsa.VAR(growth).fit(p).test_causality(["realcons", "realinv"], "realgdp", kind="wald")
        got = mv.toda_yamamoto(growth, p, 0, "realgdp", ["realcons", "realinv"])
        assert got["wald"] == pytest.approx(ref.test_statistic, rel=1e-9)
        assert got["df"] == 2 * p and got["pvalue"] == pytest.approx(ref.pvalue, rel=1e-8)


def test_lag_order_table_matches_select_order(growth):
    table = mv.lag_order_table(growth, 8)
    sel = sm.tsa.VAR(growth).select_order(8)
    assert table.attrs["chosen"] == {"AIC": sel.aic, "BIC": sel.bic, "HQIC": sel.hqic}
    assert int(table["BIC"].idxmin()) == sel.bic


def test_forecast_scores():
    idx = pd.RangeIndex(3)
    actual = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 0.0, 0.0]}, index=idx)
    t = mv.forecast_scores(actual, {"zero": actual * 0, "exact": actual})
    assert t.loc["exact", "a"] == 0 and t.loc["zero", "a rel. to zero"] == 1
    assert t.loc["zero", "a"] == pytest.approx(np.sqrt(14 / 3))


def test_bad_inputs(e6, growth):
    with pytest.raises(ValueError, match="deterministic"):
        mv.johansen_trace(e6, 3, "ct")
    with pytest.raises(ValueError, match="k_ar_diff"):
        mv.johansen_trace(e6, -1, "co")
    with pytest.raises(ValueError, match="causing"):
        mv.toda_yamamoto(growth, 1, 1, "realgdp", ["realgdp"])
    with pytest.raises(ValueError, match="maxlags"):
        mv.lag_order_table(growth, 0)
    with pytest.raises(TypeError, match="VARResults"):
        mv.companion_moduli(object())
    with pytest.raises(ValueError, match="shape"):
        mv.forecast_scores(growth.iloc[:3], {"x": growth.iloc[:2]})
