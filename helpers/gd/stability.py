"""Why SGD's safe learning rate shrinks with the batch size (lesson 02), and the linear dynamics
of momentum on a quadratic (the heavy-ball eigen-analysis of Polyak 1964 and Goh 2017).

For least squares, ``loss = mean_i (x_i.w - y_i)^2``, example i has the Hessian
``h_i = 2 x_i x_i^T``, a rank-one matrix whose only non-zero eigenvalue is ``2 |x_i|^2`` (its
*curvature*). A mini-batch step multiplies the error by ``I - lr H_B`` with
``H_B = mean_{i in B} h_i``; it contracts along every direction only if ``lr < 2 / lmax(H_B)``,
and ``lmax(H_B)`` scatters more, and higher, the smaller the batch.

Whether the iterates stay bounded *on average* is the mean-square (second-moment) stability
of Wu, Ma & E (2018, NeurIPS, "How SGD selects the global minima...", sec. 3): the second moment
``M = E[e e^T]`` evolves by the linear map ``M -> E[(I - lr H_B) M (I - lr H_B)]``, and SGD is
stable while that map's spectral radius is below 1. With B of the n examples drawn without
replacement (as one epoch's batches are), the sample-mean covariance carries the finite-population
factor ``c = (n - B) / (B (n - 1))``: ``E[H_B (x) H_B] = H (x) H + c (E[h (x) h] - H (x) H)``
(c = 1 at B = 1; c = 0 at B = n, full-batch GD and its limit 2/L).

A *typical* run is decided instead by the top Lyapunov exponent ``lim (1/k) log |e_k|`` of the
random product of the ``I - lr H_B`` (almost-sure stability). By Jensen's inequality it is at most
half the log of the mean-square rate, so typical runs survive at least as far as the mean square:
:func:`lyapunov_exponent` estimates it by simulation.
"""

from __future__ import annotations

import numpy as np

from helpers import seeds, validate
from helpers.gd.problems import LinearRegression


def _linear(problem: LinearRegression) -> LinearRegression:
    if not isinstance(problem, LinearRegression):
        raise TypeError(f"problem must be a helpers.gd.LinearRegression, got {type(problem).__name__}")
    return problem


def per_example_curvature(problem: LinearRegression) -> np.ndarray:
    """The curvature of each example's loss: the only non-zero eigenvalue of 2 x_i x_i^T, 2 |x_i|^2."""
    X = _linear(problem).X
    return 2 * np.einsum("ij,ij->i", X, X)


def minibatch_curvature(problem: LinearRegression, batch_size: int, samples: int = 2000,
                        seed: int | None = None) -> np.ndarray:
    """lmax(H_B) for ``samples`` random mini-batches of ``batch_size`` examples (without
    replacement, as one epoch's batches are): the top eigenvalue of each mini-batch Hessian."""
    seed = seeds.resolve(seed, 0)
    X = _linear(problem).X
    n = X.shape[0]
    batch_size = validate.integer("batch_size", batch_size, 1, n)
    samples = validate.integer("samples", samples, 1)
    rng = np.random.default_rng(seed)
    idx = np.argsort(rng.random((samples, n)), axis=1)[:, :batch_size]
    Xb = X[idx]  # (samples, B, d)
    H = 2 / batch_size * np.einsum("sbi,sbj->sij", Xb, Xb)
    return np.linalg.eigvalsh(H)[:, -1]


def finite_population_factor(n: int, batch_size: int) -> float:
    """``(n - B) / (B (n - 1))``: the variance of a mean of B of n items drawn without replacement,
    relative to one item's variance (1 at B = 1, 0 at B = n)."""
    n = validate.integer("n", n, 1)
    batch_size = validate.integer("batch_size", batch_size, 1, n)
    return 1.0 if n == 1 else (n - batch_size) / (batch_size * (n - 1))


def second_moment_operator(problem: LinearRegression, lr: float, batch_size: int) -> np.ndarray:
    """The d^2 x d^2 matrix of M -> E[(I - lr H_B) M (I - lr H_B)] for batches of ``batch_size``
    examples drawn without replacement (Wu, Ma & E 2018, with the finite-population factor)."""
    X = _linear(problem).X
    n, d = X.shape
    c = finite_population_factor(n, batch_size)
    H = problem.hessian()
    outer = np.einsum("ni,nj->nij", X, X)  # x x^T per example
    E_hh = 4 * np.einsum("nij,nkl->ikjl", outer, outer).reshape(d * d, d * d) / n  # E[h (x) h]
    eye = np.eye(d)
    HH = np.kron(H, H)
    E_HH = HH + c * (E_hh - HH)
    return np.kron(eye, eye) - lr * (np.kron(H, eye) + np.kron(eye, H)) + lr**2 * E_HH


def mean_square_radius(problem: LinearRegression, lr: float, batch_size: int) -> float:
    """Spectral radius of :func:`second_moment_operator`: below 1, E|error|^2 shrinks."""
    lr = validate.positive_finite("lr", lr)
    return float(np.max(np.abs(np.linalg.eigvals(second_moment_operator(problem, lr, batch_size)))))


def sgd_stability_limit(problem: LinearRegression, batch_size: int, tol: float = 1e-4) -> float:
    """The largest constant rate at which mini-batch SGD is mean-square stable, by bisection on
    :func:`mean_square_radius` (it lies in (0, 2/L]; B -> infinity gives 2/L, full-batch GD)."""
    tol = validate.positive_finite("tol", tol)
    lo, hi = 0.0, 2 / _linear(problem).L
    while hi - lo > tol * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_square_radius(problem, mid, batch_size) < 1 else (lo, mid)
    return lo


def lyapunov_exponent(problem: LinearRegression, lr: float, batch_size: int, steps: int = 5000,
                      seed: int | None = None) -> float:
    """Monte-Carlo estimate of the top Lyapunov exponent (1/k) log |e_k| of the error under
    mini-batch SGD steps ``e <- (I - lr H_B) e`` (batches drawn without replacement, independently
    each step); below 0 a typical run converges, above 0 it blows up."""
    lr = validate.positive_finite("lr", lr)
    X = _linear(problem).X
    n, d = X.shape
    batch_size = validate.integer("batch_size", batch_size, 1, n)
    steps = validate.integer("steps", steps, 1)
    rng = np.random.default_rng(seeds.resolve(seed, 0))
    e, total = np.full(d, 1 / np.sqrt(d)), 0.0
    for _ in range(steps):
        Xb = X[rng.choice(n, batch_size, replace=False)]
        e = e - lr * (2 / batch_size) * (Xb.T @ (Xb @ e))
        norm = float(np.linalg.norm(e))
        total += np.log(norm)
        e /= norm
    return total / steps


# ---------------------------------------------------------- momentum's linear dynamics
def momentum_matrix(lr: float, momentum: float, curvature: float, nesterov: bool = False) -> np.ndarray:
    """The 2 x 2 map of (error w, buffer b) for one step of torch's heavy ball / Nesterov on
    f = curvature/2 * w^2: b' = beta b + lam w; heavy ball w' = w - lr b',
    Nesterov w' = w - lr (lam w + beta b')."""
    lam, beta = float(curvature), validate.unit_interval("momentum", momentum)
    if nesterov:
        return np.array([[1 - lr * lam - lr * beta * lam, -lr * beta * beta], [lam, beta]])
    return np.array([[1 - lr * lam, -lr * beta], [lam, beta]])


def momentum_rate(lr: float, momentum: float, curvatures: np.ndarray | float, nesterov: bool = False) -> float:
    """Asymptotic error factor per step: the largest spectral radius of :func:`momentum_matrix`
    over the eigenvalues ``curvatures`` of the Hessian (>= 1: no convergence)."""
    lams = np.atleast_1d(np.asarray(curvatures, dtype=float))
    return float(max(np.max(np.abs(np.linalg.eigvals(momentum_matrix(lr, momentum, lam, nesterov))))
                     for lam in lams))


def heavy_ball_radius(lr_curvature: np.ndarray | float, momentum: np.ndarray | float) -> np.ndarray:
    """Spectral radius of the heavy-ball map for step x curvature ``x = lr lam`` and momentum
    ``beta`` (vectorised): the larger |root| of z^2 - (1 + beta - x) z + beta. Complex roots
    ((1 - sqrt beta)^2 < x < (1 + sqrt beta)^2) all have modulus sqrt(beta); the map is stable
    exactly for 0 < x < 2 (1 + beta)."""
    x = np.asarray(lr_curvature, dtype=float)
    beta = np.asarray(momentum, dtype=float)
    if np.any((beta < 0) | (beta >= 1)):
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    tr = 1 + beta - x
    disc = tr**2 - 4 * beta
    root = np.sqrt(np.abs(disc))
    real = np.maximum(np.abs(tr + root), np.abs(tr - root)) / 2
    return np.where(disc < 0, np.sqrt(beta), real)


def best_heavy_ball_step(momentum: float, mu: float, L: float, tol: float = 1e-12) -> tuple[float, float]:
    """For a fixed momentum, the step minimising the worst rate over curvatures in [mu, L], and
    that rate: (lr, rate). The radius is quasi-convex in lr*lam, so the worst case sits at mu or
    L, and the best lr balances the two (bisection). beta = 0 gives GD's 2/(L+mu). For beta at or
    above Polyak's optimum every lr in [(1 - sqrt beta)^2/mu, (1 + sqrt beta)^2/L] gives the rate
    sqrt(beta); the midpoint of that interval is returned."""
    beta = validate.unit_interval("momentum", momentum)
    mu, L = validate.positive_finite("mu", mu), validate.positive_finite("L", L)
    if mu > L:
        raise ValueError(f"mu must be <= L, got mu={mu!r}, L={L!r}")
    lo, hi = 0.0, 2 * (1 + beta) / L
    while hi - lo > tol * hi:
        mid = (lo + hi) / 2
        gap = heavy_ball_radius(mid * mu, beta) - heavy_ball_radius(mid * L, beta)
        lo, hi = (mid, hi) if gap > 0 else (lo, mid)
    lr = (lo + hi) / 2
    edges = ((1 - np.sqrt(beta)) ** 2 / mu, (1 + np.sqrt(beta)) ** 2 / L)
    if edges[0] <= edges[1]:  # [mu, L] fits inside the complex region: every lr there gives sqrt(beta)
        lr = (edges[0] + edges[1]) / 2
    return lr, float(max(heavy_ball_radius(lr * mu, beta), heavy_ball_radius(lr * L, beta)))
