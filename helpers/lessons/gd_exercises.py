"""The coding exercises of lessons 01-02: reference solutions and hidden cases.

Each lesson's exercises are :class:`helpers.checks.CodeExercise` objects: the learner writes a
function, ``exercise.check(their_function)`` runs it on the cases below against the reference,
and ``exercise.solution()`` prints the reference. The references are kept short and readable:
they are what ``solution()`` shows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from helpers import checks


# ------------------------------------------------------------------- lesson 01
def contraction(eigenvalues: np.ndarray, lr: float) -> float:
    """Per-step error factor of GD on a quadratic: the worst eigen-direction."""
    return float(np.max(np.abs(1 - lr * np.asarray(eigenvalues))))


def optimal_step(eigenvalues: np.ndarray) -> float:
    """The constant step that minimises max |1 - lr * lam| over the eigenvalues."""
    lam = np.asarray(eigenvalues)
    return 2 / (lam.max() + lam.min())


def hessian_condition_number(X: np.ndarray) -> float:
    """kappa = lmax / lmin of the MSE Hessian H = 2/n X^T X."""
    lam = np.linalg.eigvalsh(2 / len(X) * X.T @ X)
    return float(lam[-1] / lam[0])


def gradient_descent(grad: Callable, w0: np.ndarray, lr: float, steps: int) -> np.ndarray:
    """Plain gradient descent: return the parameters after ``steps`` steps."""
    w = np.array(w0, dtype=float)
    for _ in range(steps):
        w = w - lr * grad(w)
    return w


def _quadratic_grad(H: np.ndarray, c: np.ndarray) -> Callable:
    return lambda w: H @ (w - c)


def lesson01() -> dict[str, checks.CodeExercise]:
    """The four exercises of lesson 01, by name."""
    rng = np.random.default_rng(101)
    spectra = [np.array([0.2067, 3.7933]), np.array([1.0, 25.0]), np.array([0.5, 2.0, 3.0]), rng.uniform(0.1, 9, 6)]
    rates = [0.05, 0.5, 0.52, 0.9]
    X = [rng.normal(size=(50, 2)), rng.normal(size=(40, 3)) * [1, 10, 100], rng.normal(size=(30, 2)) + [5, -3]]
    H = np.array([[3.0, 1.0], [1.0, 2.0]])
    grads = [(_quadratic_grad(H, np.array([1.0, -2.0])), np.zeros(2), 0.1, 25),
             (_quadratic_grad(np.diag([1.0, 10.0]), np.zeros(2)), np.array([3.0, 1.0]), 0.15, 40),
             (lambda w: 4 * w**3 - 2 * w, np.array([1.3]), 0.05, 60)]
    return {
        "contraction": checks.code(
            "contraction", contraction, [(s, r) for s in spectra for r in rates],
            hint="every eigen-direction is multiplied by 1 - lr * lambda: take the largest |.|, not only lambda_max's"),
        "optimal step": checks.code(
            "optimal step", optimal_step, [(s,) for s in spectra],
            hint="balance the two extreme directions: |1 - lr * lmin| = |1 - lr * lmax|"),
        "condition number": checks.code(
            "condition number", hessian_condition_number, [(x,) for x in X],
            hint="eigenvalues of 2/n X^T X (np.linalg.cond(X) is the ratio of singular values: its square root)"),
        "gradient descent": checks.code(
            "gradient descent", gradient_descent, grads,
            hint="repeat w = w - lr * grad(w) exactly `steps` times and return w"),
    }


# ------------------------------------------------------------------- lesson 02
def nesterov_step(w: np.ndarray, g: np.ndarray, lr: float, buf: np.ndarray, beta: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """torch.optim.SGD(nesterov=True), dampening 0: returns (new w, new buffer)."""
    buf = beta * buf + g
    return w - lr * (g + beta * buf), buf


def adam_update(w: np.ndarray, g: np.ndarray, lr: float, m: np.ndarray, v: np.ndarray, t: int,
                b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch.optim.Adam's step t (counted from 1): returns (new w, m, v)."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    step = lr / (1 - b1**t) * m / (np.sqrt(v / (1 - b2**t)) + eps)
    return w - step, m, v


def batch_curvature(X: np.ndarray, idx: np.ndarray) -> float:
    """Top eigenvalue of the mini-batch Hessian H_B = 2/B X_B^T X_B."""
    Xb = X[idx]
    return float(np.linalg.eigvalsh(2 / len(idx) * Xb.T @ Xb)[-1])


def heavy_ball_rate(lr: float, beta: float, lam: float) -> float:
    """Spectral radius of the heavy ball's 2x2 map of (w_k, w_{k-1}) on f = lam/2 w^2."""
    A = np.array([[1 + beta - lr * lam, -beta], [1.0, 0.0]])
    return float(np.max(np.abs(np.linalg.eigvals(A))))


def lesson02() -> dict[str, checks.CodeExercise]:
    """The four exercises of lesson 02, by name."""
    rng = np.random.default_rng(202)
    w, g = rng.normal(size=5), rng.normal(size=5)
    nest = [(w, g, 0.1, np.zeros(5), 0.9), (w, g, 0.01, rng.normal(size=5), 0.5), (w, -g, 0.3, g, 0.99)]
    adam = [(w, g, 1e-3, np.zeros(5), np.zeros(5), 1), (w, g, 0.05, 0.1 * g, 0.2 * g**2, 7),
            (w, -g, 0.01, g, g**2, 3, 0.8, 0.99, 1e-6)]
    X = rng.normal(size=(60, 4)) * [1.0, 2.0, 0.5, 1.0]
    curv = [(X, np.array([3])), (X, np.arange(8)), (X, rng.permutation(60)[:20]), (X, np.arange(60))]
    hb = [(0.1, 0.9, 1.0), (0.45, 0.83, 0.2), (0.45, 0.83, 8.0), (1.0, 0.0, 1.5), (0.3, 0.5, 12.0)]
    return {
        "nesterov": checks.code(
            "nesterov", nesterov_step, nest,
            hint="update the buffer first (buf = beta*buf + g), then step along g + beta*buf (not along buf)"),
        "adam": checks.code(
            "adam", adam_update, adam,
            hint="update m and v, then divide each by its bias correction 1 - beta^t before the step"),
        "batch curvature": checks.code(
            "batch curvature", batch_curvature, curv,
            hint="the largest eigenvalue of 2/B X_B^T X_B (not the mean of the examples' curvatures)"),
        "heavy-ball rate": checks.code(
            "heavy-ball rate", heavy_ball_rate, hb,
            hint="w_{k+1} = (1 + beta - lr*lam) w_k - beta w_{k-1}: the largest |eigenvalue| of its 2x2 matrix"),
    }
