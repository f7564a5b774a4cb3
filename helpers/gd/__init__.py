"""Gradient descent, SGD and mini-batch GD from scratch (lessons 01-02).

Pure NumPy, float64, vectorised over *runs*: every function takes parameters of shape
``(R, d)`` — one row per run — so a sweep over R learning rates is one batched computation.

- **Problems**: linear regression (MSE) and logistic regression on the real diabetes data
  (Efron et al. 2004), quadratics with a chosen condition number, and non-convex surfaces.
- **One loop**, :func:`optimize`: batch GD, SGD and mini-batch GD are the same loop with batch
  size N, 1 and B (reshuffled every epoch, the last batch of an epoch may be smaller).
- **Updates**: plain SGD, heavy-ball momentum, Nesterov (both in ``torch.optim.SGD``'s form),
  AdaGrad, RMSProp, Adam and AdamW (torch's forms); :func:`torch_reference` runs torch's
  optimisers on the same problem and batches so tests can compare step by step.
- **Stability with batch size** (:mod:`.stability`): per-example and mini-batch curvature, the
  mean-square stability limit of mini-batch SGD, the typical run's Lyapunov exponent, momentum's 2x2 linear dynamics.
- **Schedules**: constant, step, exponential, 1/t, cosine, linear warm-up (:class:`LRSchedule`, from
  :mod:`helpers.core.lr`).
- **Divergence** is detected every step and reported ("diverged at step k: loss exceeded ..."):
  a diverged run is frozen, its later entries are NaN, and no overflow warning escapes.
- **Theory**: contraction factors on quadratics, the heavy-ball optimum, the noise-ball
  variance, mini-batch gradient variance, the learning-rate range test.
"""

from __future__ import annotations

from helpers.core.lr import LR_SCHEDULES, LRSchedule, as_lr_schedule
from helpers.gd.loop import (
    DIVERGE_FACTOR,
    OPTIMIZERS,
    Runs,
    adagrad_step,
    adam_step,
    adamw_step,
    batch_order,
    momentum_step,
    optimize,
    rmsprop_step,
    sgd_step,
    steps_per_epoch,
    torch_reference,
)
from helpers.gd.problems import (
    DIABETES_FEATURES,
    DataProblem,
    LinearRegression,
    LogisticRegression,
    Problem,
    Quadratic,
    Surface,
    as_learning_rates,
    diabetes_classification,
    diabetes_regression,
    nonconvex_surface,
    numeric_hessian,
    quadratic,
    xcos_surface,
)
from helpers.gd.stability import (
    best_heavy_ball_step,
    finite_population_factor,
    heavy_ball_radius,
    lyapunov_exponent,
    mean_square_radius,
    minibatch_curvature,
    momentum_matrix,
    momentum_rate,
    per_example_curvature,
    second_moment_operator,
    sgd_stability_limit,
)
from helpers.gd.theory import (
    RangeTest,
    contraction_factor,
    error_ratios,
    gradient_noise_variance,
    heavy_ball_optimum,
    loglog_slope,
    lr_range_test,
    minibatch_variance_theory,
    noise_ball_variance,
    stability_limit,
)

__all__ = [
    "best_heavy_ball_step",
    "heavy_ball_radius",
    "finite_population_factor",
    "lyapunov_exponent",
    "sgd_stability_limit",
    "second_moment_operator",
    "per_example_curvature",
    "momentum_rate",
    "momentum_matrix",
    "minibatch_curvature",
    "mean_square_radius",
    "rmsprop_step",
    "adamw_step",
    "adagrad_step",
    "DIABETES_FEATURES",
    "DIVERGE_FACTOR",
    "DataProblem",
    "LRSchedule",
    "LR_SCHEDULES",
    "LinearRegression",
    "LogisticRegression",
    "OPTIMIZERS",
    "Problem",
    "Quadratic",
    "RangeTest",
    "Runs",
    "Surface",
    "adam_step",
    "as_learning_rates",
    "as_lr_schedule",
    "batch_order",
    "contraction_factor",
    "diabetes_classification",
    "diabetes_regression",
    "error_ratios",
    "gradient_noise_variance",
    "heavy_ball_optimum",
    "loglog_slope",
    "lr_range_test",
    "minibatch_variance_theory",
    "momentum_step",
    "noise_ball_variance",
    "nonconvex_surface",
    "numeric_hessian",
    "optimize",
    "quadratic",
    "sgd_step",
    "stability_limit",
    "steps_per_epoch",
    "torch_reference",
    "xcos_surface",
]
