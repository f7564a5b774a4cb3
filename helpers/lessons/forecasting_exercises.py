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
    from statsmodels.tsa.stattools import acf, pacf  # heavy: statsmodels loads on first use

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
    from statsmodels.tsa.arima_process import ArmaProcess  # heavy: statsmodels loads on first use

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


# ------------------------------------------------------------------- lesson 09 (M3 benchmark)
def smape_mase(y: np.ndarray, f: np.ndarray, y_train: np.ndarray, m: int) -> tuple[float, float]:
    """M3/M4 sMAPE (0-200) and MASE with seasonal period ``m`` of one series."""
    smape = float(np.mean(200 * np.abs(y - f) / (np.abs(y) + np.abs(f))))
    scale = np.mean(np.abs(y_train[m:] - y_train[:-m]))
    return smape, float(np.mean(np.abs(y - f)) / scale)


def _lesson09_cases() -> tuple[tuple, ...]:
    rng = np.random.default_rng(9)
    cases = []
    for n, m in ((48, 12), (60, 12), (20, 4), (30, 1)):
        train = 50 + np.cumsum(rng.normal(size=n)) + 5 * np.sin(2 * np.pi * np.arange(n) / max(m, 2))
        y = train[-6:] + rng.normal(size=6)
        cases.append((y, y + rng.normal(scale=2, size=6), train, m))
    return tuple(cases)


#: MSIS of three 95 % interval forecasts of one hidden series: which one is over-wide? (answer: "B")
INTERVAL_QUIZ_HASH = checks.hash_answer("B")


def lesson09() -> dict[str, checks.Exercise | checks.CodeExercise]:
    """Lesson 09's exercises: ``metrics`` (write sMAPE and MASE) and ``wide`` (read MSIS)."""
    return {
        "metrics": checks.code(
            "sMAPE and MASE", smape_mase, _lesson09_cases(),
            hint="sMAPE: 200|y-f|/(|y|+|f|) averaged over the horizon; MASE: MAE divided by the "
                 "in-sample mean of |y_t - y_{t-m}| (seasonal difference of the TRAINING data)."),
        "wide": checks.choice(
            "the over-wide interval", INTERVAL_QUIZ_HASH,
            hint="MSIS charges the width everywhere and 2/alpha = 40 times each miss: look for the "
                 "interval with full coverage whose MSIS is still several times the model's own."),
    }
