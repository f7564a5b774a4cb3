"""Coding exercises of the forecasting lessons: reference solutions and hidden cases.

Same pattern as :mod:`helpers.lessons.gd_exercises`: ``exercise.check(fn)`` runs the learner's
function on hidden cases against the reference, ``exercise.solution()`` prints the reference.
Each lesson's part is self-contained (its own section below).
"""

from __future__ import annotations

import numpy as np

from helpers import checks


# ------------------------------------------------------------------- lesson 06
def identify_arma(x: np.ndarray, max_lag: int = 10) -> tuple[int, int]:
    """Box-Jenkins identification of a pure AR(p) or MA(q): (p, 0) or (0, q).

    Count the leading lags whose |ACF| (for q) and |PACF| (for p) exceed 1.96/sqrt(n); the
    function that *cuts off* (the shorter run) names the model, the other one decays."""
    from statsmodels.tsa.stattools import acf, pacf

    bound = 1.96 / np.sqrt(len(x))

    def run(values: np.ndarray) -> int:
        k = 0
        while k < len(values) and abs(values[k]) > bound:
            k += 1
        return k

    q = run(acf(x, nlags=max_lag)[1:])
    p = run(pacf(x, nlags=max_lag, method="ywm")[1:])
    return (p, 0) if p <= q else (0, q)


#: The hidden cases: (AR coefficients, MA coefficients, seed); n = 1000 each.
ARMA_CASES = (
    ((0.7,), (), 601),
    ((0.5, 0.3), (), 602),
    ((), (0.8,), 603),
    ((), (0.5, -0.4), 604),
    ((-0.6,), (), 605),
    ((), (-0.7,), 606),
)


def simulate_arma(ar: tuple[float, ...], ma: tuple[float, ...], seed: int, n: int = 1000) -> np.ndarray:
    """A Gaussian ARMA series x_t = sum ar_i x_{t-i} + e_t + sum ma_j e_{t-j} (500 burn-in)."""
    from statsmodels.tsa.arima_process import ArmaProcess

    proc = ArmaProcess(np.r_[1, -np.asarray(ar, dtype=float)], np.r_[1, np.asarray(ma, dtype=float)])
    return proc.generate_sample(n, distrvs=np.random.default_rng(seed).standard_normal, burnin=500)


def lesson06() -> dict[str, checks.CodeExercise]:
    """The coding exercise of lesson 06, by name."""
    cases = [(simulate_arma(ar, ma, seed),) for ar, ma, seed in ARMA_CASES]
    return {
        "arma orders": checks.code(
            "arma orders", identify_arma, cases,
            hint="an AR(p) has a PACF that cuts off after lag p and a decaying ACF; an MA(q) the other way "
                 "round: count the leading lags outside +-1.96/sqrt(n) in each and take the shorter run"),
    }
