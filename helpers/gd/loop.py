"""The one loop of lessons 01-02: batch GD, SGD and mini-batch GD are :func:`optimize` with batch
size N, 1 and B; the update rules (SGD, heavy-ball, Nesterov, Adam in torch.optim's forms);
divergence detection; and :func:`torch_reference`, torch's optimisers on the same batches."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from helpers import seeds, validate
from helpers.core.lr import LRSchedule, as_lr_schedule
from helpers.gd.problems import Problem, _as_runs, as_learning_rates

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")

#: a run has diverged once its loss exceeds this multiple of max(|starting loss|, 1)
DIVERGE_FACTOR = 1e6


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


def adagrad_step(w: np.ndarray, g: np.ndarray, lr: np.ndarray | float, s: np.ndarray, eps: float = 1e-10
                 ) -> tuple[np.ndarray, np.ndarray]:
    """AdaGrad (Duchi, Hazan & Singer 2011) as in ``torch.optim.Adagrad`` (no lr decay):
    ``s += g^2``; ``w - lr * g / (sqrt(s) + eps)``."""
    s = s + g * g
    return w - lr * g / (np.sqrt(s) + eps), s


def rmsprop_step(w: np.ndarray, g: np.ndarray, lr: np.ndarray | float, v: np.ndarray, alpha: float = 0.99,
                 eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """RMSProp (Tieleman & Hinton 2012, lecture 6e) as in ``torch.optim.RMSprop``:
    ``v = alpha v + (1 - alpha) g^2``; ``w - lr * g / (sqrt(v) + eps)``."""
    v = alpha * v + (1 - alpha) * g * g
    return w - lr * g / (np.sqrt(v) + eps), v


def adamw_step(w: np.ndarray, g: np.ndarray, lr: np.ndarray | float, m: np.ndarray, v: np.ndarray, t: int,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AdamW (Loshchilov & Hutter 2019) as in ``torch.optim.AdamW``: decay the weights by
    ``lr * weight_decay`` (decoupled from the gradient), then take :func:`adam_step`."""
    return adam_step(w * (1 - lr * weight_decay), g, lr, m, v, t, betas, eps)


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


def _check_rule_settings(momentum: float, betas: tuple[float, float], eps: float
                         ) -> tuple[float, tuple[float, float], float]:
    momentum = validate.unit_interval("momentum", momentum)
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b1, b2 = (validate.unit_interval("betas", b) for b in betas)
    return momentum, (b1, b2), validate.positive_finite("eps", eps)


def _check_grad_noise(grad_noise: float) -> None:
    if isinstance(grad_noise, bool) or not (isinstance(grad_noise, (int, float)) and grad_noise >= 0
                                            and math.isfinite(grad_noise)):
        raise ValueError(f"grad_noise must be a finite number >= 0, got {grad_noise!r}")


def _starts(w0: np.ndarray | Sequence[float] | None, lrs: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Starting points (R, d) and rates (R,): one start per rate, one rate for many starts, or
    one start for all."""
    R = lrs.size
    W = np.zeros((R, d)) if w0 is None else _as_runs(w0, d, "w0")[0]
    if W.shape[0] != R:
        if R != 1 and W.shape[0] != 1:
            raise ValueError(f"w0 has {W.shape[0]} rows but there are {R} learning rates: give one row or one per rate")
        R = max(R, W.shape[0])
        lrs = np.broadcast_to(lrs, (R,)).copy()
    W = np.broadcast_to(W, (R, d)).copy()
    if not np.isfinite(W).all():
        raise ValueError("w0 must be finite")
    return W, lrs


def _update(optimizer: str, W: np.ndarray, g: np.ndarray, lr: np.ndarray, a: np.ndarray, b: np.ndarray,
            t: int, momentum: float, betas: tuple[float, float], eps: float, alpha: float, weight_decay: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One update of every run by ``optimizer``; returns (W, state a, state b)."""
    if optimizer == "sgd":
        return sgd_step(W, g, lr), a, b
    if optimizer == "adam":
        return adam_step(W, g, lr, a, b, t, betas, eps)
    if optimizer == "adamw":
        return adamw_step(W, g, lr, a, b, t, betas, eps, weight_decay)
    if optimizer == "adagrad":
        W_new, a = adagrad_step(W, g, lr, a, eps)
        return W_new, a, b
    if optimizer == "rmsprop":
        W_new, a = rmsprop_step(W, g, lr, a, alpha, eps)
        return W_new, a, b
    W_new, a = momentum_step(W, g, lr, a, momentum, optimizer == "nesterov")
    return W_new, a, b


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
    alpha: float = 0.99,
    weight_decay: float = 0.01,
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
    ``epochs``. ``optimizer`` is one of :data:`OPTIMIZERS`, each in ``torch.optim``'s form;
    ``momentum`` (heavy ball, Nesterov), ``betas``/``eps`` (Adam, AdamW; ``eps`` also AdaGrad and
    RMSProp), ``alpha`` (RMSProp) and ``weight_decay`` (AdamW) are their settings. ``grad_noise`` > 0 adds independent N(0, grad_noise^2) noise to every gradient
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
    momentum, (b1, b2), eps = _check_rule_settings(momentum, betas, eps)
    alpha = validate.unit_interval("alpha", alpha)
    weight_decay = validate.unit_interval("weight_decay", weight_decay)
    diverge_factor = validate.positive_finite("diverge_factor", diverge_factor)
    _check_grad_noise(grad_noise)
    if (steps is None) == (epochs is None):
        raise ValueError(f"give exactly one of steps or epochs, got steps={steps!r}, epochs={epochs!r}")
    if steps is None:
        steps = validate.integer("epochs", epochs, 1) * steps_per_epoch(n, batch_size)
    steps = validate.integer("steps", steps, 1)
    seed = validate.integer("seed", seed, 0)
    sched = as_lr_schedule(schedule)
    factors = sched.factors(steps)
    W, lrs = _starts(w0, lrs, d)
    R = lrs.size

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
            W_new, state_a, state_b = _update(optimizer, W, g, step_lr, state_a, state_b, t + 1,
                                              momentum, (b1, b2), eps, alpha, weight_decay)
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
    alpha: float = 0.99,
    weight_decay: float = 0.01,
    schedule: str | LRSchedule | None = "constant",
    w0: np.ndarray | Sequence[float] | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Run ``torch.optim`` (SGD / SGD+momentum / Nesterov / Adagrad / RMSprop / Adam / AdamW) in float64 on the same problem
    and the same batches as :func:`optimize`; return the parameters after each step, (steps+1, d).
    The schedule's factors are applied through ``torch.optim.lr_scheduler.LambdaLR``.
    """
    seed = seeds.resolve(seed, 0)
    import torch  # heavy: this part of the course runs on NumPy alone

    lr = float(as_learning_rates(lr)[0])
    validate.choice("optimizer", optimizer, OPTIMIZERS)
    n = problem.n_examples
    batch_size = n if batch_size is None else validate.integer("batch_size", batch_size, 1, n)
    schedule = as_lr_schedule(schedule)
    start = np.zeros(problem.dim) if w0 is None else np.asarray(w0, dtype=float).reshape(problem.dim)
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    if optimizer == "adam":
        opt = torch.optim.Adam([w], lr=lr, betas=betas, eps=eps)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW([w], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    elif optimizer == "adagrad":
        opt = torch.optim.Adagrad([w], lr=lr, eps=eps)
    elif optimizer == "rmsprop":
        opt = torch.optim.RMSprop([w], lr=lr, alpha=alpha, eps=eps)
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
