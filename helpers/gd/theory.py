"""Theory of lessons 01-02, checked against the runs: contraction factors and stability limits
on quadratics, the heavy-ball optimum, the noise-ball variance, mini-batch gradient variance,
and the learning-rate range test."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from helpers import seeds, validate
from helpers.core.lr import LRSchedule
from helpers.gd.loop import OPTIMIZERS, optimize
from helpers.gd.problems import LinearRegression, LogisticRegression, Problem


# ------------------------------------------------------------------------ theory
def contraction_factor(hessian: np.ndarray, lr: float) -> float:
    """Worst-case factor by which one GD step shrinks the error on a quadratic: max |1 - lr * lambda|."""
    ev = np.linalg.eigvalsh(np.atleast_2d(hessian))
    return float(np.max(np.abs(1 - lr * ev)))


def stability_limit(optimizer: str, momentum: float = 0.9) -> float | None:
    """Largest stable constant step on a quadratic, in units of 2/L: GD 1, heavy ball 1 + beta,
    Nesterov (1 + beta) / (1 + 2 beta). Adam has no such limit in these units (None)."""
    validate.choice("optimizer", optimizer, OPTIMIZERS)
    momentum = validate.unit_interval("momentum", momentum)
    return {"sgd": 1.0, "momentum": 1 + momentum, "nesterov": (1 + momentum) / (1 + 2 * momentum)}.get(optimizer)


def error_ratios(params: np.ndarray, w_star: np.ndarray) -> np.ndarray:
    """Per-step ratios ||w_{k+1} - w*|| / ||w_k - w*|| for trajectories (steps+1, R, d): (steps, R)."""
    err = np.linalg.norm(np.asarray(params) - np.asarray(w_star), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return err[1:] / err[:-1]


def heavy_ball_optimum(L: float, mu: float) -> tuple[float, float, float]:
    """Polyak's optimal heavy-ball settings on a quadratic: (lr, momentum, rate).

    lr = 4 / (sqrt L + sqrt mu)^2, momentum = ((sqrt k - 1)/(sqrt k + 1))^2, rate = (sqrt k - 1)/(sqrt k + 1).
    """
    L, mu = validate.positive_finite("L", L), validate.positive_finite("mu", mu)
    rate = (math.sqrt(L) - math.sqrt(mu)) / (math.sqrt(L) + math.sqrt(mu))
    return 4 / (math.sqrt(L) + math.sqrt(mu)) ** 2, rate**2, rate


def noise_ball_variance(a: float, sigma: float, lr: float | np.ndarray) -> np.ndarray | float:
    """Stationary variance of x_{k+1} = (1 - lr a) x_k - lr xi_k, xi ~ N(0, sigma^2):
    lr^2 sigma^2 / (1 - (1 - lr a)^2) (finite only for 0 < lr a < 2)."""
    lr_arr = np.asarray(lr, dtype=float)
    if np.any(lr_arr <= 0) or np.any(lr_arr * a >= 2):
        raise ValueError(f"lr must satisfy 0 < lr * a < 2 for a stationary noise ball, got lr={lr!r}, a={a!r}")
    out = lr_arr**2 * sigma**2 / (1 - (1 - lr_arr * a) ** 2)
    return float(out) if out.ndim == 0 else out


def gradient_noise_variance(
    problem: LinearRegression | LogisticRegression,
    w: np.ndarray,
    batch_sizes: Sequence[int],
    samples: int = 2000,
    seed: int | None = None,
    replace: bool = True,
) -> tuple[np.ndarray, float]:
    """Measured E||g_B - g||^2 of the mini-batch gradient at ``w`` for each batch size B,
    and the per-example variance sigma^2 = mean_i ||g_i - g||^2.

    Theory: sigma^2 / B when sampling with replacement, times (n - B)/(n - 1) without.
    """
    seed = seeds.resolve(seed, 0)
    G = problem.per_example_grad(w)
    n = G.shape[0]
    full = G.mean(axis=0)
    sigma2 = float(np.mean(np.sum((G - full) ** 2, axis=1)))
    samples = validate.integer("samples", samples, 2)
    rng = np.random.default_rng(seed)
    out = []
    for B in batch_sizes:
        B = validate.integer("batch_sizes", B, 1, n if not replace else None)
        if replace:
            idx = rng.integers(0, n, size=(samples, B))
        else:
            idx = np.argsort(rng.random((samples, n)), axis=1)[:, :B]
        gb = G[idx].mean(axis=1)
        out.append(np.mean(np.sum((gb - full) ** 2, axis=1)))
    return np.array(out), sigma2


def minibatch_variance_theory(sigma2: float, n: int, batch_size: np.ndarray | int, replace: bool = True) -> np.ndarray:
    """sigma^2 / B (with replacement) or sigma^2 / B * (n - B) / (n - 1) (without)."""
    B = np.asarray(batch_size, dtype=float)
    return sigma2 / B if replace else sigma2 / B * (n - B) / (n - 1)


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


@dataclass
class RangeTest:
    """A learning-rate range test: loss against an exponentially growing learning rate."""

    lrs: np.ndarray
    loss: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    stopped_at: int  # step where the loss blew up (-1 if it never did)


def lr_range_test(
    problem: Problem,
    lr_min: float = 1e-4,
    lr_max: float = 10.0,
    steps: int = 100,
    batch_size: int | None = None,
    optimizer: str = "sgd",
    seed: int | None = None,
    smoothing: float = 0.5,
) -> RangeTest:
    """Smith's (2017) learning-rate range test, run by :func:`optimize` with an exponential schedule.

    The rate grows from ``lr_min`` to ``lr_max`` over ``steps`` steps; the loss is recorded (and
    smoothed with an exponential moving average) until it blows up. Suggestion: the rate at the
    smoothed minimum divided by 10, the usual rule of thumb.
    """
    seed = seeds.resolve(seed, 0)
    lr_min, lr_max = validate.positive_finite("lr_min", lr_min), validate.positive_finite("lr_max", lr_max)
    if lr_max <= lr_min:
        raise ValueError(f"lr_max must be > lr_min, got lr_min={lr_min!r}, lr_max={lr_max!r}")
    steps = validate.integer("steps", steps, 2)
    smoothing = validate.unit_interval("smoothing", smoothing)
    gamma = (lr_max / lr_min) ** (1 / (steps - 1))
    runs = optimize(problem, lr_min, steps=steps, batch_size=batch_size, optimizer=optimizer, seed=seed,
                    schedule=LRSchedule("exponential", gamma=gamma), record_params=False, diverge_factor=1e3)
    lrs = lr_min * gamma ** np.arange(steps)
    loss = runs.loss[1:, 0]  # loss after the step taken with lrs[t]
    valid = int(np.isfinite(loss).sum())
    smoothed = np.full(steps, np.nan)
    avg = loss[0]
    for t in range(valid):
        avg = smoothing * avg + (1 - smoothing) * loss[t]
        smoothed[t] = avg
    best = int(np.nanargmin(smoothed))
    return RangeTest(lrs, loss, smoothed, float(lrs[best] / 10), int(runs.diverged_at[0]) - 1 if runs.diverged[0] else -1)
