"""The objectives of lessons 01-02, vectorised over runs (parameters ``(R, d)``): linear and
logistic regression on the real diabetes data (Efron et al. 2004), quadratics with a chosen
condition number, and non-convex surfaces."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from helpers import data, validate


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
    """Mean squared error ``J(w) = mean((X w - y)^2)``; gradient ``2/n X^T (X w - y)``."""

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
    def L(self) -> float:
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
        import torch  # heavy: this part of the course runs on NumPy alone

        X, y = self._batch(idx)
        X_t, y_t = torch.as_tensor(X, dtype=w.dtype), torch.as_tensor(y, dtype=w.dtype)
        return ((X_t @ w - y_t) ** 2).mean()


def _expit(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit  # heavy: only this computation needs scipy

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
    def L(self) -> float:
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
        import torch  # heavy: this part of the course runs on NumPy alone

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
    def L(self) -> float:
        return float(np.linalg.eigvalsh(self.H)[-1])

    @property
    def mu(self) -> float:
        return float(np.linalg.eigvalsh(self.H)[0])

    @property
    def kappa(self) -> float:
        return self.L / self.mu

    def torch_loss(self, w, idx=None):  # noqa: ANN001, ANN201
        import torch  # heavy: this part of the course runs on NumPy alone

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
    def L(self) -> float:
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
def quadratic(kappa: float, L: float = 1.0, angle_deg: float = 0.0, center=(0.0, 0.0)) -> Quadratic:  # noqa: ANN001
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
    df = data.diabetes()
    allowed = [c for c in df.columns if c != "progression"]
    if isinstance(features, str) or len(features) == 0:
        raise ValueError(f"features must be a non-empty sequence of column names from {allowed}")
    for name in features:
        validate.choice("features", name, allowed)
    return df[list(features)].to_numpy(float), df["progression"].to_numpy(float)


#: the ten baseline variables of the diabetes data
DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def diabetes_regression(features: Sequence[str] = ("s1", "s2"), intercept: bool = False,
                        standardise: bool = True) -> LinearRegression:
    """Disease progression ~ features on the diabetes data (442 patients, Efron et al. 2004).

    Features and target are standardised (mean 0, sd 1), so with no intercept the optimum
    intercept is exactly 0 and the loss at w = 0 is 1 (the target's variance). The default
    pair s1 (total cholesterol) and s2 (LDL) is strongly correlated (r = 0.90): an elongated
    valley, condition number about 18. ``standardise=False`` keeps the features in their
    recorded units (years, mg/dl, ...; the target is still standardised): the preconditioning
    example of lesson 02 (it needs ``intercept=True``, as the features are not centred).
    """
    X, y = _diabetes_xy(features)
    X = _standardise(X) if validate.boolean("standardise", standardise) else X
    y = _standardise(y[:, None])[:, 0]
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
    from scipy.optimize import minimize  # heavy: only this computation needs scipy

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

    def f(W: np.ndarray) -> np.ndarray:
        x, y = W[:, 0], W[:, 1]
        return (x * x - 1) ** 2 + (y * y - 1) ** 2 + a * x + b * y

    def df(W: np.ndarray) -> np.ndarray:
        x, y = W[:, 0], W[:, 1]
        return np.stack([4 * x * (x * x - 1) + a, 4 * y * (y * y - 1) + b], axis=1)

    minima = _local_minima(f, df, [(sx, sy) for sx in (-1, 1) for sy in (-1, 1)])
    return Surface(f, df, 2, name="tilted double well", extent=(-2.0, 2.0, -2.0, 2.0), minima=minima)


def xcos_surface(c: float = 0.15 * math.pi) -> Surface:
    """d2l's 1-D non-convex example ``f(x) = x cos(c x)`` (many local minima)."""

    def f(W: np.ndarray) -> np.ndarray:
        return W[:, 0] * np.cos(c * W[:, 0])

    def df(W: np.ndarray) -> np.ndarray:
        x = W[:, 0]
        return (np.cos(c * x) - c * x * np.sin(c * x))[:, None]

    return Surface(f, df, 1, name="x cos(cx)")
