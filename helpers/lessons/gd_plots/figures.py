"""Figures of lessons 01-02: loss surfaces and contours, trajectories, 1-D traces, and the
lesson-02 pictures (variants, gradient-noise variance, noise ball, range test, batch scaling, stability)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from helpers import gd, validate
from helpers.plots import PALETTE

#: problems offered by the learning-rate widget (name -> factory); all have a 2-D parameter


WIDGET_PROBLEMS = {
    "diabetes: progression ~ s1 + s2": "diabetes",
    "quadratic, condition number 25": "quadratic",
    "non-convex: tilted double well": "nonconvex",
}
#: the widgets' dropdown value for "full batch" (ipywidgets cannot select a None value)
FULL = 0

#: batch sizes offered by the widgets (None = full batch)
WIDGET_BATCHES = (None, 1, 8, 32, 128)
DIVERGED_COLOR = "#D55E00"
#: run colours: the palette without the divergence colour, so a run is never drawn in it
RUN_COLORS = [c for c in PALETTE if c != DIVERGED_COLOR]
#: lessons 01-02 draw at 100 dpi (the course default stays 80: other lessons' stored outputs print it)
DPI = 100


def _subplots(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - plt.subplots' own signature
    return plt.subplots(*args, dpi=DPI, **kwargs)


@cache
def widget_problem(name: str = "diabetes") -> gd.Problem:
    """The problems the widgets use, built once: 'diabetes', 'quadratic', 'nonconvex', 'diabetes10'.

    Each 2-D one carries a start point ``start`` and a curvature ``L`` for the 2/L units.
    """
    validate.choice("problem", name, ("diabetes", "quadratic", "nonconvex", "diabetes10"))
    if name == "diabetes":
        p = gd.diabetes_regression(("s1", "s2"))
        p.start = np.array([-1.0, 0.0])
    elif name == "diabetes10":
        p = gd.diabetes_regression(gd.DIABETES_FEATURES)
        p.start = np.zeros(p.dim)
    elif name == "quadratic":
        p = gd.quadratic(25.0, L=1.0, angle_deg=-30.0)
        p.extent = (-3.0, 3.0, -3.0, 3.0)
        p.start = np.array([-2.5, -1.0])
    else:
        p = gd.nonconvex_surface()
        p.start = np.array([1.6, 1.6])
    return p


def curvature(problem: gd.Problem) -> float:
    """L for the 2/L units: the largest Hessian eigenvalue (for a non-convex surface the largest
    curvature over its minima, so below 2/L every minimum can hold GD)."""
    if not hasattr(problem, "L"):
        raise ValueError(f"problem {problem.name!r} has no curvature L")
    return float(problem.L)


# --------------------------------------------------------------------- contours
@cache
def _grid(problem: gd.Problem, extent: tuple[float, float, float, float], n: int = 90
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs = np.linspace(extent[0], extent[1], n)
    ys = np.linspace(extent[2], extent[3], n)
    X, Y = np.meshgrid(xs, ys)
    Z = problem.loss(np.column_stack([X.ravel(), Y.ravel()])).reshape(X.shape)  # one batched call
    return X, Y, Z


def loss_offset(problem: gd.Problem) -> float:
    return float(problem.min_loss) if problem.min_loss is not None else 0.0


def draw_contour(ax: plt.Axes, problem: gd.Problem, extent: tuple[float, float, float, float] | None = None,
                 levels: int = 18) -> None:
    """Contours of ``loss - min_loss`` (log-spaced levels) of a 2-D problem; the minimiser starred."""
    if problem.dim != 2:
        raise ValueError(f"draw_contour needs a 2-D problem, {problem.name!r} has dim={problem.dim}")
    extent = extent or problem.extent
    if extent is None:
        raise ValueError(f"problem {problem.name!r} has no extent; pass extent=(x0, x1, y0, y1)")
    X, Y, Z = _grid(problem, tuple(extent))
    gap = Z - loss_offset(problem)
    low = max(np.percentile(gap, 0.5), 1e-4 * gap.max(), 1e-12)
    lv = np.geomspace(low, gap.max(), levels)
    ax.contourf(X, Y, np.maximum(gap, low), levels=lv, norm=LogNorm(), cmap="Greys_r", alpha=0.55)
    ax.contour(X, Y, np.maximum(gap, low), levels=lv, colors="0.4", linewidths=0.5)
    if isinstance(problem, gd.Surface) and problem.minima:
        for i, (m, _) in enumerate(problem.minima):  # numbered as in Surface.minima (0: global)
            ax.plot(*m, marker="*" if i == 0 else "o", ms=11 if i == 0 else 6, color="k", ls="none")
            ax.annotate(str(i), m, xytext=(6, 6), textcoords="offset points", fontsize=10, fontweight="bold",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85}, zorder=5)
    elif problem.minimiser is not None:
        ax.plot(*problem.minimiser, marker="*", ms=11, color="k", ls="none")
    ax.set(xlim=extent[:2], ylim=extent[2:], aspect="equal")
    names = getattr(problem, "feature_names", ()) or ("w1", "w2")
    ax.set_xlabel(f"w[{names[0]}]" if names[0] != "w1" else "w1")
    ax.set_ylabel(f"w[{names[1]}]" if names[1] != "w2" else "w2")
    ax.grid(False)


def surface_figure(problem: gd.Problem) -> Figure:
    """The loss surface of a 2-D problem: 3-D view and contour map side by side."""
    X, Y, Z = _grid(problem, tuple(problem.extent))
    fig = plt.figure(figsize=(9.0, 3.8), dpi=DPI)
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    ax3.plot_surface(X, Y, Z, cmap="viridis", linewidth=0, antialiased=False, rcount=45, ccount=45)
    names = getattr(problem, "feature_names", ())
    labels = (f"w[{names[0]}]", f"w[{names[1]}]") if names else ("w1", "w2")  # as draw_contour labels them
    ax3.set(xlabel=labels[0], ylabel=labels[1], zlabel="loss", title=problem.name)
    ax = fig.add_subplot(1, 2, 2)
    draw_contour(ax, problem)
    ax.set_title("contours of loss - min (log-spaced)")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------- trajectories
def _label(runs: gd.Runs, r: int, label: str) -> str:
    return f"{label} (diverged at step {runs.diverged_at[r]})" if runs.diverged[r] else label


def trajectory_figure(runs: gd.Runs, problem: gd.Problem, labels: Sequence[str] | None = None,
                      title: str | None = None, x: str = "step", path_steps: int | None = None) -> Figure:
    """Left: paths on the contour map (the first ``path_steps`` steps, default all). Right:
    loss - min on a log scale against ``x`` ('step', 'epoch' or 'grad_evals'). Diverged runs
    stop where they diverged, marked x."""
    labels = list(labels) if labels is not None else [f"lr {lr:.3g}" for lr in runs.lrs]
    if len(labels) != runs.n_runs:
        raise ValueError(f"labels must have one entry per run ({runs.n_runs}), got {len(labels)}")
    validate.choice("x", x, ("step", "epoch", "grad_evals"))
    if path_steps is not None:
        path_steps = validate.integer("path_steps", path_steps, 1, 10**7)
    if runs.params is None:
        raise ValueError("runs must be recorded with record_params=True to draw paths")
    fig, (ax_c, ax_l) = _subplots(1, 2, figsize=(9.5, 4.3), gridspec_kw={"width_ratios": [1, 1.25]})
    draw_contour(ax_c, problem)
    xs = {"step": np.arange(runs.steps + 1), "epoch": runs.epochs, "grad_evals": runs.grad_evals}[x]
    offset = loss_offset(problem)
    for r in range(runs.n_runs):
        color = RUN_COLORS[r % len(RUN_COLORS)]
        k = runs.valid(r)
        path = runs.params[:k if path_steps is None else min(k, path_steps + 1), r]
        lab = _label(runs, r, labels[r])
        if runs.diverged[r] and len(path) == k:  # draw until the path first leaves the window, mark it there
            path = _clip_path(path, problem.extent)
            ax_c.plot(*path[-1], "x", color=DIVERGED_COLOR, ms=11, mew=2.5, clip_on=False)
        ax_c.plot(path[:, 0], path[:, 1], "-", color=color, lw=1.2, marker=".", ms=3,
                  zorder=2 + (runs.n_runs - r) / 10)  # the first runs on top: small steps stay visible
        ax_c.plot(*path[0], "o", color=color, ms=5)
        gap = np.maximum(runs.loss[:k, r] - offset, FLOOR)
        ax_l.plot(xs[:k], gap, color=color, lw=1.5, label=lab)
        if runs.diverged[r]:
            ax_l.plot(xs[k - 1], gap[-1], "x", color=DIVERGED_COLOR, ms=10, mew=2.5)
    ax_l.set_yscale("log")
    ax_l.set(xlabel={"step": "step", "epoch": "epoch", "grad_evals": "gradient evaluations"}[x],
             ylabel="loss - min" if problem.min_loss is not None else "loss")
    n_div = int(runs.diverged.sum())
    status = f"{n_div} of {runs.n_runs} runs diverged" if n_div else "no run diverged"
    fig.suptitle(f"{title or problem.name} — {status}", fontsize=10)
    fig.legend(*ax_l.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=9)
    fig.tight_layout(rect=(0, 0.06 * math.ceil(runs.n_runs / 2), 1, 1))
    return fig


#: loss gaps below this are float64 round-off of the loss itself; drawn at this floor
FLOOR = 1e-13


def _clip_path(path: np.ndarray, extent: tuple[float, float, float, float] | None) -> np.ndarray:
    """The path up to where it first leaves the window, ending exactly on the window's edge."""
    if extent is None:
        return path
    lo, hi = np.array([extent[0], extent[2]]), np.array([extent[1], extent[3]])
    outside = np.flatnonzero(((path < lo) | (path > hi)).any(axis=1))
    if outside.size == 0:
        return path
    e = int(outside[0])
    if e == 0:
        return path[:1]
    a, b = path[e - 1], path[e]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_hi = np.where(b > hi, (hi - a) / (b - a), 1.0)
        t_lo = np.where(b < lo, (lo - a) / (b - a), 1.0)
    t = float(np.clip(np.min(np.concatenate([t_hi, t_lo])), 0.0, 1.0))
    return np.vstack([path[:e], a + t * (b - a)])


def trace_1d_figure(results: dict[str, np.ndarray], f, title: str = "") -> Figure:  # noqa: ANN001
    """d2l-style 1-D traces: f(x) and the iterates of each run (label -> iterates)."""
    fig, axes = _subplots(1, len(results), figsize=(3.2 * len(results), 2.8), squeeze=False)
    for ax, (label, xs) in zip(axes[0], results.items(), strict=True):
        n = max(abs(xs.min()), abs(xs.max()), 1.0)
        grid = np.linspace(-n, n, 400)
        ax.plot(grid, f(grid), color="0.5")
        ax.plot(xs, f(xs), "-o", color=PALETTE[1], ms=4)
        ax.set(title=label, xlabel="x", ylabel="f(x)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------- lesson 02 figures
def variants_figure(results: dict[str, gd.Runs], problem: gd.Problem) -> Figure:
    """Loss - min against epochs (= gradient evaluations / n), updates and compute seconds;
    diverged runs stop where they diverged, marked x."""
    fig, axes = _subplots(1, 3, figsize=(10.5, 3.6), sharey=True)
    offset = loss_offset(problem)
    n_lines = 0
    for i, (label, runs) in enumerate(results.items()):
        for r in range(runs.n_runs):
            color = RUN_COLORS[(i + r) % len(RUN_COLORS)]
            k = runs.valid(r)
            gap = np.maximum(runs.loss[:k, r] - offset, FLOOR)
            lab = _label(runs, r, label if runs.n_runs == 1 else f"{label}, lr {runs.lrs[r]:.3g}")
            n_lines += 1
            steps = np.arange(runs.steps + 1)
            for ax, xs in zip(axes, (runs.epochs, steps, runs.seconds), strict=True):
                ax.plot(xs[:k], gap, color=color, lw=1.2, label=lab if ax is axes[0] else None)
                if runs.diverged[r]:
                    ax.plot(xs[k - 1], gap[-1], "x", color=DIVERGED_COLOR, ms=9, mew=2.2)
    axes[0].set(yscale="log", xlabel="epoch", ylabel="loss - min")
    axes[1].set_xscale("symlog", linthresh=1.0)  # step 0 (the start) stays on the axis
    axes[1].set(xlabel="updates (steps), symlog")
    axes[1].set_xlim(left=0)  # no negative step counts on the symlog axis
    axes[2].set(xlabel="compute seconds (this machine)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=9)
    fig.tight_layout(rect=(0, 0.07 * math.ceil(n_lines / 2), 1, 1))
    return fig


def noise_variance_figure(batch_sizes: np.ndarray, measured: dict[str, np.ndarray],
                          theory: dict[str, np.ndarray]) -> Figure:
    """Mini-batch gradient variance against batch size on log-log axes, measured (dots) vs theory (lines)."""
    fig, ax = _subplots(figsize=(5.2, 3.4))
    for i, (label, values) in enumerate(measured.items()):
        ax.plot(batch_sizes, values, "o", color=PALETTE[i], label=f"measured, {label}")
        ax.plot(batch_sizes, theory[label], "-", color=PALETTE[i], lw=1, label=f"theory, {label}")
    ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="E||g_B - g||²",
           title="gradient noise falls like 1/B")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def noise_ball_figure(lrs: np.ndarray, measured: np.ndarray, theory: np.ndarray,
                      paths: dict[str, np.ndarray]) -> Figure:
    """Left: stationary variance against the learning rate (measured vs closed form).
    Right: sample paths, constant rates vs a decreasing schedule."""
    fig, (a, b) = _subplots(1, 2, figsize=(10, 3.3))
    a.plot(lrs, measured, "o", label="measured (many chains)")
    a.plot(lrs, theory, "-", lw=1, label="η²σ² / (1 - (1 - ηa)²)")
    a.set(xscale="log", yscale="log", xlabel="learning rate η", ylabel="stationary Var[x]", title="noise ball")
    a.legend(fontsize=9)
    for i, (label, xs) in enumerate(paths.items()):
        b.plot(np.abs(xs), color=PALETTE[i], lw=0.8, label=label)
    b.set(yscale="log", xlabel="step", ylabel="|x - x*|", title="one chain each")
    b.legend(fontsize=9)
    fig.tight_layout()
    return fig


def range_test_figure(rt: gd.RangeTest, cliff: float | None = None) -> Figure:
    """Loss against learning rate in a range test; the suggestion and (optionally) 2/L marked."""
    fig, ax = _subplots(figsize=(5.6, 3.3))
    k = int(np.isfinite(rt.loss).sum())
    ax.plot(rt.lrs[:k], rt.loss[:k], color="0.6", lw=1, label="loss")
    ax.plot(rt.lrs[:k], rt.smoothed[:k], color=PALETTE[0], lw=1.8, label="smoothed")
    ax.axvline(rt.suggestion, color=PALETTE[2], ls="--", label=f"suggestion {rt.suggestion:.3g}")
    if cliff:
        ax.axvline(cliff, color=DIVERGED_COLOR, ls=":", label=f"2/L = {cliff:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="learning rate (growing each step)", ylabel="loss",
           title="learning-rate range test")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def scaling_figure(batch_sizes: np.ndarray, final_gap: dict[str, np.ndarray], cliff_batch: float | None = None) -> Figure:
    """Loss - min after a fixed number of epochs against batch size, for several lr rules."""
    fig, ax = _subplots(figsize=(5.6, 3.3))
    for i, (label, gap) in enumerate(final_gap.items()):
        ok = np.isfinite(gap)
        ax.plot(batch_sizes[ok], gap[ok], "o-", color=PALETTE[i], label=label)
        if (~ok).any():  # diverged: marked along the top edge
            ax.plot(batch_sizes[~ok], np.full((~ok).sum(), 0.95), "x", color=DIVERGED_COLOR, ms=9, mew=2,
                    transform=ax.get_xaxis_transform(), label=f"{label}: diverged")
    if cliff_batch:
        ax.axvline(cliff_batch, color=DIVERGED_COLOR, ls=":", lw=1, label="scaled lr reaches 2/L")
    ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="loss - min after the epochs",
           title="linear scaling rule")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def stability_figure(units: np.ndarray, grows: dict[int, np.ndarray], mean_square: dict[int, float],
                     lyapunov: dict[int, float] | None = None) -> Figure:
    """Fraction of runs whose error grew against the rate (in units of 2/L), one line (colour and
    marker) per batch size, with each batch size's mean-square limit as a dotted line of the same
    colour and, if given, its simulated typical-run (Lyapunov) limit as a triangle at 0.5."""
    fig, ax = _subplots(figsize=(7.0, 3.8))
    markers = ("o", "s", "D", "v", "P", "X")
    for i, (b, frac) in enumerate(grows.items()):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        ax.plot(units, frac, "-", color=color, lw=1.6, marker=markers[i % len(markers)], ms=4,
                markevery=max(1, len(units) // 12), label=f"B = {b}")
        ax.axvline(mean_square[b], color=color, ls=":", lw=1.2)
        if lyapunov is not None:
            ax.plot(lyapunov[b], 0.5, "^", color=color, ms=10, mec="k", mew=0.8, zorder=5)
    ax.axvline(1.0, color="0.3", lw=0.8)
    ax.text(1.0, 0.5, " 2/L", color="0.3", fontsize=9, va="center")
    ax.set(xlabel="learning rate / (2/L)", ylabel="fraction of runs whose error grew",
           title="measured cliff (lines), mean-square limit (dotted), Lyapunov limit (▲)", ylim=(-0.03, 1.03))
    keys = [Line2D([], [], color="0.4", ls=":", lw=1.2, label="mean-square limit")]
    if lyapunov is not None:
        keys.append(Line2D([], [], color="0.6", marker="^", mec="k", ls="none", ms=9, label="Lyapunov limit"))
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + keys, fontsize=9, loc="upper left")
    fig.tight_layout()
    return fig
