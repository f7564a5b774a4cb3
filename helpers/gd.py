"""Gradient descent, SGD and mini-batch GD from scratch (lessons 01-02).

Pure NumPy, float64, vectorised over *runs*: every function takes parameters of shape
``(R, d)`` — one row per run — so a sweep over R learning rates is one batched computation.

- **Problems**: linear regression (MSE) and logistic regression on the real diabetes data
  (Efron et al. 2004), quadratics with a chosen condition number, and non-convex surfaces.
- **One loop**, :func:`optimize`: batch GD, SGD and mini-batch GD are the same loop with batch
  size N, 1 and B (reshuffled every epoch, the last batch of an epoch may be smaller).
- **Updates**: plain SGD, heavy-ball momentum, Nesterov (both in ``torch.optim.SGD``'s form) and
  Adam (``torch.optim.Adam``'s form); :func:`torch_reference` runs torch's optimisers on the same
  problem and batches so tests can compare step by step.
- **Schedules**: constant, step, exponential, 1/t, cosine, linear warm-up (:class:`~helpers.core.lr.LRSchedule`).
- **Divergence** is detected every step and reported ("diverged at step k: loss exceeded ..."):
  a diverged run is frozen, its later entries are NaN, and no overflow warning escapes.
- **Theory**: contraction factors on quadratics, the heavy-ball optimum, the noise-ball
  variance, mini-batch gradient variance, the learning-rate range test.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from helpers import seeds, validate
from helpers.core.lr import LRSchedule, as_lr_schedule

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")

#: a run has diverged once its loss exceeds this multiple of max(|starting loss|, 1)
DIVERGE_FACTOR = 1e6


# --------------------------------------------------------------------------- validation
def as_learning_rates(lr: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Learning rate(s) as a 1-D float array; each must be finite and > 0."""
    arr = np.atleast_1d(np.asarray(lr, dtype=float)) if not isinstance(lr, str) else None
    if arr is None or arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"lr must be a positive number or a non-empty 1-D sequence of them, got {lr!r}")
    for value in arr:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"lr must be finite and > 0, got {value!r} in lr={lr!r}")
    return arr


def _as_runs(w: np.ndarray, dim: int, name: str = "w") -> tuple[np.ndarray, bool]:
    """Parameters as (R, d); also say whether the caller passed a single vector."""
    arr = np.asarray(w, dtype=float)
    single = arr.ndim == 1
    arr2 = arr[None, :] if single else arr
    if arr2.ndim != 2 or arr2.shape[1] != dim:
        raise ValueError(f"{name} must have shape ({dim},) or (R, {dim}), got {arr.shape}")
    return arr2, single


# --------------------------------------------------------------------------- problems
class Problem(ABC):
    """An objective to minimise. Parameters come as ``(R, d)`` (R runs) or ``(d,)``.

    ``idx`` (an index array) restricts the loss/gradient to a mini-batch of examples; ``None``
    means the full objective. Deterministic functions have ``n_examples == 1``.
    """

    name: str
    dim: int
    n_examples: int

    @abstractmethod
    def _loss(self, w: np.ndarray, idx: np.ndarray | None) -> np.ndarray: ...

    @abstractmethod
    def _grad(self, w: np.ndarray, idx: np.ndarray | None) -> np.ndarray: ...

    def loss(self, w: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray | float:
        """Loss per run, shape (R,) (a float for a single parameter vector)."""
        arr, single = _as_runs(w, self.dim)
        out = self._loss(arr, self._check_idx(idx))
        return float(out[0]) if single else out

    def grad(self, w: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        """Gradient per run, shape (R, d) (or (d,) for a single parameter vector)."""
        arr, single = _as_runs(w, self.dim)
        out = self._grad(arr, self._check_idx(idx))
        return out[0] if single else out

    def _check_idx(self, idx: np.ndarray | None) -> np.ndarray | None:
        if idx is None:
            return None
        if self.n_examples == 1:
            raise ValueError(f"idx must be None for {self.name!r}: it is a function, not a data set")
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"idx must be a non-empty 1-D integer array, got shape {idx.shape}")
        return idx

    # optional pieces (quadratic-like problems define them)
    minimiser: np.ndarray | None = None
    min_loss: float | None = None
    #: a sensible plotting window (x0, x1, y0, y1) for 2-D problems
    extent: tuple[float, float, float, float] | None = None
    #: a demo starting point (figures and widgets use it; :func:`optimize` defaults to zeros)
    start: np.ndarray | None = None

    def torch_loss(self, w, idx: np.ndarray | None = None):  # noqa: ANN001, ANN201 - torch types
        """The same loss on a torch tensor ``w`` of shape (d,) (for autograd/torch.optim checks)."""
        raise NotImplementedError(f"{type(self).__name__} has no torch version")


def _check_data(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (examples x features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X is empty (shape {X.shape}): need at least one example and one feature")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must be 1-D with one entry per row of X ({X.shape[0]}), got shape {y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("X and y must be finite (no NaN/inf)")
    return X, y


@dataclass(eq=False)
class DataProblem(Problem):
    """A problem defined by examples: features ``X`` (n, d) and targets ``y`` (n,), validated."""

    X: np.ndarray
    y: np.ndarray
    name: str = "data problem"
    feature_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.X, self.y = _check_data(self.X, self.y)
        self.n_examples, self.dim = self.X.shape

    def _batch(self, idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return (self.X, self.y) if idx is None else (self.X[idx], self.y[idx])


@dataclass(eq=False)
class LinearRegression(DataProblem):
    """Mean squared error ``L(w) = mean((X w - y)^2)``; gradient ``2/n X^T (X w - y)``."""

    name: str = "linear regression"

    def _loss(self, w: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        X, y = self._batch(idx)
        r = w @ X.T - y
        return np.mean(r * r, axis=1)

    def _grad(self, w: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        X, y = self._batch(idx)
        return (2.0 / len(y)) * (w @ X.T - y) @ X

    def per_example_grad(self, w: np.ndarray) -> np.ndarray:
        """Gradient of each example's loss at one parameter vector ``w``: shape (n, d)."""
        w = np.asarray(w, dtype=float).reshape(self.dim)
        return 2.0 * (self.X @ w - self.y)[:, None] * self.X

    def hessian(self) -> np.ndarray:
        return 2.0 * self.X.T @ self.X / self.n_examples

    @cached_property
    def eigenvalues(self) -> np.ndarray:
        return np.linalg.eigvalsh(self.hessian())

    @property
    def L(self) -> float:  # noqa: N802 - the standard symbol
        """Smoothness: the largest Hessian eigenvalue."""
        return float(self.eigenvalues[-1])

    @property
    def mu(self) -> float:
        """Strong convexity: the smallest Hessian eigenvalue."""
        return float(self.eigenvalues[0])

    @property
    def kappa(self) -> float:
        return self.L / self.mu

    @cached_property
    def minimiser(self) -> np.ndarray:  # type: ignore[override]
        return np.linalg.lstsq(self.X, self.y, rcond=None)[0]

    @cached_property
    def min_loss(self) -> float:  # type: ignore[override]
        return float(self._loss(self.minimiser[None], None)[0])

    def torch_loss(self, w, idx=None):  # noqa: ANN001, ANN201
        import torch

        X, y = self._batch(idx)
        X_t, y_t = torch.as_tensor(X, dtype=w.dtype), torch.as_tensor(y, dtype=w.dtype)
        return ((X_t @ w - y_t) ** 2).mean()


def _expit(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(z)


@dataclass(eq=False)
class LogisticRegression(DataProblem):
    """Mean binary cross-entropy with logits ``z = X w``; gradient ``X^T (sigmoid(z) - y) / n``."""

    name: str = "logistic regression"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not np.isin(self.y, (0.0, 1.0)).all():
            raise ValueError("y must contain only 0 and 1 for logistic regression")

    def _loss(self, w: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        X, y = self._batch(idx)
        z = w @ X.T
        return np.mean(np.logaddexp(0.0, z) - y * z, axis=1)

    def _grad(self, w: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        X, y = self._batch(idx)
        return (_expit(w @ X.T) - y) @ X / len(y)

    def per_example_grad(self, w: np.ndarray) -> np.ndarray:
        w = np.asarray(w, dtype=float).reshape(self.dim)
        return (_expit(self.X @ w) - self.y)[:, None] * self.X

    @property
    def L(self) -> float:  # noqa: N802
        """Smoothness bound: the Hessian is at most X^T X / (4n)."""
        return float(np.linalg.eigvalsh(self.X.T @ self.X / (4 * self.n_examples))[-1])

    @cached_property
    def minimiser(self) -> np.ndarray:  # type: ignore[override]
        """Found by Newton's method (the data are not separable, so the minimum exists)."""
        w = np.zeros(self.dim)
        for _ in range(50):
            p = _expit(self.X @ w)
            H = (self.X * (p * (1 - p))[:, None]).T @ self.X / self.n_examples
            step = np.linalg.solve(H, self.X.T @ (p - self.y) / self.n_examples)
            w = w - step
            if np.linalg.norm(step) < 1e-13:
                break
        return w

    @cached_property
    def min_loss(self) -> float:  # type: ignore[override]
        return float(self._loss(self.minimiser[None], None)[0])

    def torch_loss(self, w, idx=None):  # noqa: ANN001, ANN201
        import torch

        X, y = self._batch(idx)
        z = torch.as_tensor(X, dtype=w.dtype) @ w
        return torch.nn.functional.binary_cross_entropy_with_logits(z, torch.as_tensor(y, dtype=w.dtype))


@dataclass(eq=False)
class Quadratic(Problem):
    """``f(w) = 1/2 (w - c)^T H (w - c)`` with H symmetric positive definite."""

    H: np.ndarray
    center: np.ndarray | None = None
    name: str = "quadratic"
    extent: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        H = np.atleast_2d(np.asarray(self.H, dtype=float))
        if H.ndim != 2 or H.shape[0] != H.shape[1] or H.size == 0:
            raise ValueError(f"H must be a square matrix, got shape {H.shape}")
        if not np.allclose(H, H.T):
            raise ValueError("H must be symmetric")
        if np.linalg.eigvalsh(H)[0] <= 0:
            raise ValueError("H must be positive definite (all eigenvalues > 0)")
        self.H = H
        self.dim, self.n_examples = H.shape[0], 1
        c = np.zeros(self.dim) if self.center is None else np.asarray(self.center, dtype=float)
        if c.shape != (self.dim,):
            raise ValueError(f"center must have shape ({self.dim},), got {c.shape}")
        self.center = c
        self.minimiser, self.min_loss = c, 0.0

    def _loss(self, w: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        e = w - self.center
        return 0.5 * np.einsum("ri,ij,rj->r", e, self.H, e)

    def _grad(self, w: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        return (w - self.center) @ self.H

    def hessian(self) -> np.ndarray:
        return self.H

    @property
    def L(self) -> float:  # noqa: N802
        return float(np.linalg.eigvalsh(self.H)[-1])

    @property
    def mu(self) -> float:
        return float(np.linalg.eigvalsh(self.H)[0])

    @property
    def kappa(self) -> float:
        return self.L / self.mu

    def torch_loss(self, w, idx=None):  # noqa: ANN001, ANN201
        import torch

        e = w - torch.as_tensor(self.center, dtype=w.dtype)
        return 0.5 * e @ torch.as_tensor(self.H, dtype=w.dtype) @ e


@dataclass(eq=False)
class Surface(Problem):
    """A deterministic function given by vectorised callables ``f(W) -> (R,)``, ``grad(W) -> (R, d)``."""

    f: Callable[[np.ndarray], np.ndarray]
    df: Callable[[np.ndarray], np.ndarray]
    dim: int
    name: str = "surface"
    extent: tuple[float, float, float, float] | None = None
    minima: list[tuple[np.ndarray, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.n_examples = 1
        if self.minima:
            best = min(self.minima, key=lambda m: m[1])
            self.minimiser, self.min_loss = best

    def _loss(self, w: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        return self.f(w)

    def _grad(self, w: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        return self.df(w)

    @cached_property
    def L(self) -> float:  # noqa: N802
        """The largest curvature over the listed minima: below 2/L GD can settle in any of them."""
        if not self.minima:
            raise ValueError(f"surface {self.name!r} lists no minima, so it has no curvature L")
        return max(float(np.linalg.eigvalsh(numeric_hessian(self, m))[-1]) for m, _ in self.minima)

    def nearest_minimum(self, w: np.ndarray, tol: float = 1e-2) -> int:
        """Index into ``minima`` of the minimum within ``tol`` of ``w`` (-1 if none)."""
        for i, (m, _) in enumerate(self.minima):
            if np.linalg.norm(np.asarray(w) - m) < tol:
                return i
        return -1


def numeric_hessian(problem: Problem, w: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Centred finite-difference Hessian of ``problem`` at ``w`` (from its gradient), symmetrised."""
    w = np.asarray(w, dtype=float).reshape(problem.dim)
    E = np.eye(problem.dim) * h
    rows = (problem.grad(w + E) - problem.grad(w - E)) / (2 * h)
    return (rows + rows.T) / 2


# ----------------------------------------------------------------- problem factories
def quadratic(kappa: float, L: float = 1.0, angle_deg: float = 0.0, center=(0.0, 0.0)) -> Quadratic:  # noqa: N803, ANN001
    """A 2-D quadratic with eigenvalues L and L/kappa, its axes rotated by ``angle_deg``."""
    kappa = validate.positive_finite("kappa", kappa)
    L = validate.positive_finite("L", L)
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, got {kappa!r}")
    a = math.radians(angle_deg)
    Q = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    H = Q @ np.diag([L, L / kappa]) @ Q.T
    H = (H + H.T) / 2
    c = np.asarray(center, dtype=float)
    r = 1.2 * max(1.0, math.sqrt(kappa) / 2)
    return Quadratic(H, c, name=f"quadratic, kappa={kappa:g}", extent=(c[0] - r, c[0] + r, c[1] - r, c[1] + r))


def _standardise(a: np.ndarray) -> np.ndarray:
    return (a - a.mean(axis=0)) / a.std(axis=0)


def _diabetes_xy(features: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    from helpers import data

    df = data.diabetes()
    allowed = [c for c in df.columns if c != "progression"]
    if isinstance(features, str) or len(features) == 0:
        raise ValueError(f"features must be a non-empty sequence of column names from {allowed}")
    for name in features:
        validate.choice("features", name, allowed)
    return df[list(features)].to_numpy(float), df["progression"].to_numpy(float)


#: the ten baseline variables of the diabetes data
DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def diabetes_regression(features: Sequence[str] = ("s1", "s2"), intercept: bool = False) -> LinearRegression:
    """Disease progression ~ features on the diabetes data (442 patients, Efron et al. 2004).

    Features and target are standardised (mean 0, sd 1), so with no intercept the optimum
    intercept is exactly 0 and the loss at w = 0 is 1 (the target's variance). The default
    pair s1 (total cholesterol) and s2 (LDL) is strongly correlated (r = 0.90): an elongated
    valley, condition number about 18.
    """
    X, y = _diabetes_xy(features)
    X, y = _standardise(X), _standardise(y[:, None])[:, 0]
    names = tuple(features)
    if intercept:
        X, names = np.column_stack([np.ones(len(X)), X]), ("intercept", *names)
    prob = LinearRegression(X, y, name="diabetes progression ~ " + " + ".join(features), feature_names=names)
    if prob.dim == 2:
        c, r = prob.minimiser, 1.6
        prob.extent = (c[0] - r, c[0] + r, c[1] - r, c[1] + r)
    return prob


def diabetes_classification(features: Sequence[str] = ("bmi", "s5"), intercept: bool = True) -> LogisticRegression:
    """Is disease progression above its median (y = 1)? Logistic regression on standardised features.

    The binary target is derived from the real diabetes data (221 of 442 patients are above
    the median), so the classes are balanced and not separable.
    """
    X, y = _diabetes_xy(features)
    X = _standardise(X)
    label = (y > np.median(y)).astype(float)
    names = tuple(features)
    if intercept:
        X, names = np.column_stack([np.ones(len(X)), X]), ("intercept", *names)
    return LogisticRegression(X, label, name="P(progression > median) ~ " + " + ".join(features), feature_names=names)


def _local_minima(prob_f: Callable, prob_df: Callable, starts: Sequence[Sequence[float]]) -> list:
    from scipy.optimize import minimize

    found: list[tuple[np.ndarray, float]] = []
    for s in starts:
        res = minimize(lambda w: float(prob_f(w[None])[0]), np.asarray(s, float),
                       jac=lambda w: prob_df(w[None])[0], method="BFGS", options={"gtol": 1e-12})
        if not any(np.linalg.norm(res.x - m) < 1e-4 for m, _ in found):
            found.append((res.x, float(res.fun)))
    return sorted(found, key=lambda m: m[1])


def nonconvex_surface(tilt: tuple[float, float] = (0.4, 0.2)) -> Surface:
    """``f(x, y) = (x^2 - 1)^2 + (y^2 - 1)^2 + a x + b y``: four minima near (+-1, +-1).

    The tilt ``(a, b)`` makes them unequal: the global minimum is near (-1, -1), three others
    are local. ``minima`` lists them (point, value), lowest first.
    """
    a, b = (float(t) for t in tilt)

    def f(W: np.ndarray) -> np.ndarray:  # noqa: N803
        x, y = W[:, 0], W[:, 1]
        return (x * x - 1) ** 2 + (y * y - 1) ** 2 + a * x + b * y

    def df(W: np.ndarray) -> np.ndarray:  # noqa: N803
        x, y = W[:, 0], W[:, 1]
        return np.stack([4 * x * (x * x - 1) + a, 4 * y * (y * y - 1) + b], axis=1)

    minima = _local_minima(f, df, [(sx, sy) for sx in (-1, 1) for sy in (-1, 1)])
    return Surface(f, df, 2, name="tilted double well", extent=(-2.0, 2.0, -2.0, 2.0), minima=minima)


def xcos_surface(c: float = 0.15 * math.pi) -> Surface:
    """d2l's 1-D non-convex example ``f(x) = x cos(c x)`` (many local minima)."""

    def f(W: np.ndarray) -> np.ndarray:  # noqa: N803
        return W[:, 0] * np.cos(c * W[:, 0])

    def df(W: np.ndarray) -> np.ndarray:  # noqa: N803
        x = W[:, 0]
        return (np.cos(c * x) - c * x * np.sin(c * x))[:, None]

    return Surface(f, df, 1, name="x cos(cx)")





# ------------------------------------------------------------------- update rules
def sgd_step(w: np.ndarray, g: np.ndarray, lr: np.ndarray | float) -> np.ndarray:
    """Plain (stochastic) gradient step: ``w - lr * g``."""
    return w - lr * g


def momentum_step(w: np.ndarray, g: np.ndarray, lr: np.ndarray | float, buf: np.ndarray,
                  momentum: float, nesterov: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-ball / Nesterov momentum in ``torch.optim.SGD``'s form (dampening 0).

    ``buf = momentum * buf + g`` (buf starts at 0, so the first buf is g); the step direction is
    ``buf`` (heavy ball) or ``g + momentum * buf`` (Nesterov); ``w - lr * direction``.
    """
    buf = momentum * buf + g
    direction = g + momentum * buf if nesterov else buf
    return w - lr * direction, buf


def adam_step(w: np.ndarray, g: np.ndarray, lr: np.ndarray | float, m: np.ndarray, v: np.ndarray,
              t: int, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adam (Kingma & Ba 2015) as in ``torch.optim.Adam``; ``t`` counts steps from 1.

    ``m, v`` are running means of g and g^2; the step is ``lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)``.
    """
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
    return w - (lr / (1 - b1**t)) * m / denom, m, v


# --------------------------------------------------------------------------- the loop
def batch_order(n: int, batch_size: int, steps: int, seed: int | None = None) -> list[np.ndarray | None]:
    """The mini-batch index arrays for ``steps`` steps: each epoch is a fresh permutation of the
    n examples cut into batches of ``batch_size`` (the last may be smaller). ``None`` = full batch.
    """
    seed = seeds.resolve(seed, 0)
    n = validate.integer("n", n, 1)
    batch_size = validate.integer("batch_size", batch_size, 1, n)
    steps = validate.integer("steps", steps, 1)
    if batch_size == n:
        return [None] * steps
    rng = np.random.default_rng(seed)
    out: list[np.ndarray | None] = []
    while len(out) < steps:
        perm = rng.permutation(n)
        out.extend(perm[i:i + batch_size] for i in range(0, n, batch_size))
    return out[:steps]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


@dataclass
class Runs:
    """The result of :func:`optimize`: R runs (one per learning rate), full trajectories.

    Arrays are indexed by step (0 = the start); entries after a run diverged are NaN.
    """

    lrs: np.ndarray
    optimizer: str
    batch_size: int
    n_examples: int
    schedule: LRSchedule
    loss: np.ndarray  # (steps+1, R), full objective after each step
    grad_norm: np.ndarray  # (steps, R), norm of the (mini-batch) gradient used at each step
    grad_evals: np.ndarray  # (steps+1,), cumulative per-example gradient evaluations
    seconds: np.ndarray  # (steps+1,), cumulative compute time (gradients + updates, not monitoring)
    diverged_at: np.ndarray  # (R,), step at which the loss exceeded the threshold, -1 if never
    threshold: np.ndarray  # (R,)
    params: np.ndarray | None = None  # (steps+1, R, d) when recorded

    @property
    def steps(self) -> int:
        return self.loss.shape[0] - 1

    @property
    def n_runs(self) -> int:
        return self.loss.shape[1]

    @property
    def diverged(self) -> np.ndarray:
        return self.diverged_at >= 0

    @property
    def epoch_ends(self) -> np.ndarray:
        """Step index at the end of each completed epoch (including 0, the start)."""
        return np.arange(0, self.steps + 1, steps_per_epoch(self.n_examples, self.batch_size))

    @property
    def epochs(self) -> np.ndarray:
        """Epochs elapsed at each step (fractional inside an epoch)."""
        return self.grad_evals / self.n_examples

    @property
    def loss_per_epoch(self) -> np.ndarray:
        return self.loss[self.epoch_ends]

    @property
    def final_loss(self) -> np.ndarray:
        """Loss after the last step; ``inf`` for a diverged run."""
        return np.where(self.diverged, np.inf, self.loss[-1])

    @property
    def final_params(self) -> np.ndarray:
        if self.params is None:
            raise ValueError("params were not recorded (record_params=False)")
        return self.params[-1]

    def valid(self, r: int) -> int:
        """Number of leading finite entries of run ``r`` (steps + 1 if it never diverged)."""
        return int(np.isfinite(self.loss[:, r]).sum()) if self.diverged[r] else self.steps + 1

    def message(self, r: int) -> str:
        if self.diverged[r]:
            return f"diverged at step {self.diverged_at[r]}: loss exceeded {self.threshold[r]:.3g}"
        return f"loss {self.loss[-1, r]:.4g} after {self.steps} steps"

    def report(self) -> list[str]:
        """One line per run: its learning rate and its final loss or divergence."""
        return [f"lr {lr:.4g}: {self.message(r)}" for r, lr in enumerate(self.lrs)]


def optimize(
    problem: Problem,
    lr: float | Sequence[float] | np.ndarray,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    schedule: str | LRSchedule | None = "constant",
    w0: np.ndarray | Sequence[float] | None = None,
    seed: int | None = None,
    grad_noise: float = 0.0,
    diverge_factor: float = DIVERGE_FACTOR,
    record_params: bool = True,
) -> Runs:
    """Minimise ``problem`` from ``w0`` with every learning rate in ``lr`` at once.

    ``w0`` is one start for all runs, or one row per run (R starts with one rate is fine too).
    Batch GD, SGD and mini-batch GD are this one loop with ``batch_size`` = N (default), 1 and B;
    all runs see the same batches (reshuffled each epoch from ``seed``). Give ``steps`` or
    ``epochs``. ``grad_noise`` > 0 adds independent N(0, grad_noise^2) noise to every gradient
    component (a model of mini-batch noise). A run whose loss exceeds ``diverge_factor`` times
    max(|starting loss|, 1) (or becomes non-finite) is stopped and reported as diverged.
    """
    seed = seeds.resolve(seed, 0)
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a helpers.gd.Problem, got {type(problem).__name__}")
    lrs = as_learning_rates(lr)
    R, d, n = lrs.size, problem.dim, problem.n_examples
    batch_size = n if batch_size is None else validate.integer("batch_size", batch_size, 1, n)
    validate.choice("optimizer", optimizer, OPTIMIZERS)
    momentum = validate.unit_interval("momentum", momentum)
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b1, b2 = (validate.unit_interval("betas", b) for b in betas)
    eps = validate.positive_finite("eps", eps)
    diverge_factor = validate.positive_finite("diverge_factor", diverge_factor)
    if isinstance(grad_noise, bool) or not (isinstance(grad_noise, (int, float)) and grad_noise >= 0
                                            and math.isfinite(grad_noise)):
        raise ValueError(f"grad_noise must be a finite number >= 0, got {grad_noise!r}")
    if (steps is None) == (epochs is None):
        raise ValueError(f"give exactly one of steps or epochs, got steps={steps!r}, epochs={epochs!r}")
    if steps is None:
        steps = validate.integer("epochs", epochs, 1) * steps_per_epoch(n, batch_size)
    steps = validate.integer("steps", steps, 1)
    seed = validate.integer("seed", seed, 0)
    sched = as_lr_schedule(schedule)
    factors = sched.factors(steps)
    W = np.zeros((R, d)) if w0 is None else _as_runs(w0, d, "w0")[0]
    if W.shape[0] != R:  # one start per rate, one rate for many starts, or one start for all
        if R != 1 and W.shape[0] != 1:
            raise ValueError(f"w0 has {W.shape[0]} rows but there are {R} learning rates: give one row or one per rate")
        R = max(R, W.shape[0])
        lrs = np.broadcast_to(lrs, (R,)).copy()
    W = np.broadcast_to(W, (R, d)).copy()
    if not np.isfinite(W).all():
        raise ValueError("w0 must be finite")

    batches = batch_order(n, batch_size, steps, seed)
    noise_rng = np.random.default_rng([seed, 1])
    loss = np.full((steps + 1, R), np.nan)
    gnorm = np.full((steps, R), np.nan)
    sizes = [n if idx is None else len(idx) for idx in batches]
    evals = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    seconds = np.zeros(steps + 1)
    params = np.full((steps + 1, R, d), np.nan) if record_params else None
    diverged_at = np.full(R, -1)
    active = np.ones(R, dtype=bool)

    state_a, state_b = np.zeros((R, d)), np.zeros((R, d))  # momentum buffer / Adam's m and v
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss[0] = problem._loss(W, None)
        threshold = diverge_factor * np.maximum(np.abs(loss[0]), 1.0)
        if params is not None:
            params[0] = W
        elapsed = 0.0
        for t in range(steps):
            idx = batches[t]
            tic = time.perf_counter()
            g = problem._grad(W, idx)
            if grad_noise:
                g = g + grad_noise * noise_rng.standard_normal(g.shape)
            step_lr = (lrs * factors[t])[:, None]
            if optimizer == "sgd":
                W_new = sgd_step(W, g, step_lr)
            elif optimizer == "adam":
                W_new, state_a, state_b = adam_step(W, g, step_lr, state_a, state_b, t + 1, (b1, b2), eps)
            else:
                W_new, state_a = momentum_step(W, g, step_lr, state_a, momentum, optimizer == "nesterov")
            W = np.where(active[:, None], W_new, W)  # diverged runs stay frozen
            elapsed += time.perf_counter() - tic
            seconds[t + 1] = elapsed

            current = problem._loss(W, None)
            gnorm[t, active] = np.linalg.norm(g[active], axis=1)
            bad = active & ~(np.abs(current) <= threshold)  # also catches NaN/inf
            keep = active.copy()
            keep[bad] = np.isfinite(current[bad]) & np.isfinite(W[bad]).all(axis=1)  # record the
            loss[t + 1, keep] = current[keep]  # finite overshoot; never store inf/NaN values
            if params is not None:
                params[t + 1, keep] = W[keep]
            diverged_at[bad] = t + 1
            active &= ~bad
            if not active.any():
                seconds[t + 1:] = elapsed
                break
    return Runs(lrs=lrs, optimizer=optimizer, batch_size=batch_size, n_examples=n, schedule=sched,
                loss=loss, grad_norm=gnorm, grad_evals=evals,
                seconds=seconds, diverged_at=diverged_at, threshold=threshold, params=params)


# --------------------------------------------------------------- torch reference
def torch_reference(
    problem: Problem,
    lr: float,
    *,
    steps: int,
    batch_size: int | None = None,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    schedule: str | LRSchedule | None = "constant",
    w0: np.ndarray | Sequence[float] | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Run ``torch.optim`` (SGD / SGD+momentum / Nesterov / Adam) in float64 on the same problem
    and the same batches as :func:`optimize`; return the parameters after each step, (steps+1, d).
    The schedule's factors are applied through ``torch.optim.lr_scheduler.LambdaLR``.
    """
    seed = seeds.resolve(seed, 0)
    import torch

    lr = float(as_learning_rates(lr)[0])
    validate.choice("optimizer", optimizer, OPTIMIZERS)
    n = problem.n_examples
    batch_size = n if batch_size is None else validate.integer("batch_size", batch_size, 1, n)
    schedule = as_lr_schedule(schedule)
    start = np.zeros(problem.dim) if w0 is None else np.asarray(w0, dtype=float).reshape(problem.dim)
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    if optimizer == "adam":
        opt = torch.optim.Adam([w], lr=lr, betas=betas, eps=eps)
    else:
        opt = torch.optim.SGD([w], lr=lr, momentum=0.0 if optimizer == "sgd" else momentum,
                              nesterov=optimizer == "nesterov")
    sched = schedule.to_torch(opt, steps)
    out = [start.copy()]
    for idx in batch_order(n, batch_size, steps, seed):
        opt.zero_grad()
        problem.torch_loss(w, idx).backward()
        opt.step()
        sched.step()
        out.append(w.detach().numpy().copy())
    return np.array(out)


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


def heavy_ball_optimum(L: float, mu: float) -> tuple[float, float, float]:  # noqa: N803
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
