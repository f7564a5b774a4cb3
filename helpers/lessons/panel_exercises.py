"""The coding exercise of lesson 07: split-conformal quantiles for a point forecaster.

``conformal``: given a point forecast, the ratios ``actual / forecast`` from held-out windows and
a list of quantile levels, return the quantile forecasts, one row per level
(:class:`helpers.checks.CodeExercise` against :func:`conformal_reference`; the library version is
:func:`helpers.timeseries.probabilistic.conformal_quantiles`).
"""

from __future__ import annotations

import numpy as np

from helpers import checks


def conformal_reference(point: np.ndarray, ratios: np.ndarray, levels: list[float]) -> np.ndarray:
    """Quantile ``tau`` of the forecast = point x the ``tau`` empirical quantile of the ratios."""
    q = np.quantile(ratios, levels, method="higher")  # "higher": a value that really occurred
    return q[:, None] * point[None, :]


def _cases() -> list[tuple]:
    rng = np.random.default_rng(7)
    return [
        (np.array([100.0, 120.0, 90.0]), rng.lognormal(0, 0.2, 200), [0.1, 0.5, 0.9]),
        (np.array([5.0, 6.0]), rng.gamma(4.0, 0.25, 57), [0.05, 0.25, 0.5, 0.75, 0.95]),
        (np.linspace(10, 20, 14), np.concatenate([np.ones(30), 1.5 * np.ones(10)]), [0.2, 0.8]),
    ]


def conformal_exercise() -> checks.CodeExercise:
    """Lesson 07's exercise: write ``conformal(point, ratios, levels)``."""
    return checks.code(
        "conformal quantiles",
        conformal_reference,
        _cases(),
        hint="np.quantile(ratios, levels, method='higher') gives one factor per level; "
        "multiply each by the whole point forecast (shape: levels x horizon)",
    )
