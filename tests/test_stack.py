"""Guards for known dependency traps (COURSE_GUIDE section 5): if the lock regresses, fail here."""

import numpy as np


def test_pykalman_loglikelihood_works_with_locked_numpy():
    # pykalman 0.9.7's loglikelihood() breaks on numpy 2.4; the lock must keep a working pair.
    from pykalman import KalmanFilter

    kf = KalmanFilter(transition_matrices=[[1.0]], observation_matrices=[[1.0]],
                      transition_covariance=[[1.0]], observation_covariance=[[1.0]],
                      initial_state_mean=[0.0], initial_state_covariance=[[1.0]])
    ll = kf.loglikelihood(np.array([[0.1], [0.3], [-0.2], [0.4]]))
    assert np.isfinite(ll)
    # hand check for one observation: y ~ N(0, P0 + R) = N(0, 2)  (no transition before the first)
    ll1 = kf.loglikelihood(np.array([[0.5]]))
    assert np.isclose(ll1, -0.5 * (np.log(2 * np.pi * 2.0) + 0.25 / 2.0))


def test_torch_is_the_pinned_version():
    import torch

    assert torch.__version__.split("+")[0] == "2.13.0"


def test_gluonts_needs_pandas_below_3():
    import pandas as pd

    assert int(pd.__version__.split(".")[0]) < 3


def test_key_imports_are_quiet(capfd):
    import helpers

    helpers.setup(verbose=False)
    import prophet  # noqa: F401
    import sktime  # noqa: F401

    captured = capfd.readouterr()
    assert "plotly" not in captured.err
