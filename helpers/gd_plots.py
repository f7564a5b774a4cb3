"""Figures and widgets for lessons 01-02 (gradient descent, SGD, mini-batch GD).

Every widget is a thin wrapper around pure functions ``settings -> runs -> figure`` that the
notebooks also call directly (so the headless tests exercise them):

- :func:`lr_comparison_runs` / :func:`lr_comparison_figure` / :func:`learning_rate_widget`
  (lesson 01: up to four learning rates, in units of 2/L, side by side);
- :func:`lr_batch_runs` / :func:`lr_batch_figure` / :func:`lr_batch_widget`
  (lesson 02: (learning rate, batch size) pairs).

A diverged run is drawn up to the step where it diverged, marked with an ``x`` and labelled
"diverged at step k" in the legend; the figure title says how many runs diverged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from helpers import gd, seeds
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


@cache
def widget_problem(name: str = "diabetes") -> gd.Problem:
    """The problems the widgets use, built once: 'diabetes', 'quadratic', 'nonconvex', 'diabetes10'.

    Each 2-D one carries a start point ``start`` and a curvature ``L`` for the 2/L units.
    """
    gd._check_choice("problem", name, ("diabetes", "quadratic", "nonconvex", "diabetes10"))
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
def _grid(problem: gd.Problem, extent: tuple[float, float, float, float], n: int = 90):
    xs = np.linspace(extent[0], extent[1], n)
    ys = np.linspace(extent[2], extent[3], n)
    X, Y = np.meshgrid(xs, ys)
    Z = problem.loss(np.column_stack([X.ravel(), Y.ravel()])).reshape(X.shape)  # one batched call
    return X, Y, Z


def _offset(problem: gd.Problem) -> float:
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
    gap = Z - _offset(problem)
    low = max(np.percentile(gap, 0.5), 1e-4 * gap.max(), 1e-12)
    lv = np.geomspace(low, gap.max(), levels)
    ax.contourf(X, Y, np.maximum(gap, low), levels=lv, norm=LogNorm(), cmap="Greys_r", alpha=0.55)
    ax.contour(X, Y, np.maximum(gap, low), levels=lv, colors="0.4", linewidths=0.5)
    if isinstance(problem, gd.Surface) and problem.minima:
        for i, (m, _) in enumerate(problem.minima):
            ax.plot(*m, marker="*" if i == 0 else "o", ms=11 if i == 0 else 6, color="k", ls="none")
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
    fig = plt.figure(figsize=(9.0, 3.8))
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    ax3.plot_surface(X, Y, Z, cmap="viridis", linewidth=0, antialiased=False, rcount=45, ccount=45)
    ax3.set(xlabel="w1", ylabel="w2", zlabel="loss", title=problem.name)
    ax = fig.add_subplot(1, 2, 2)
    draw_contour(ax, problem)
    ax.set_title("contours of loss - min (log-spaced)")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------- trajectories
def _label(runs: gd.Runs, r: int, label: str) -> str:
    return f"{label} (diverged at step {runs.diverged_at[r]})" if runs.diverged[r] else label


def trajectory_figure(runs: gd.Runs, problem: gd.Problem, labels: Sequence[str] | None = None,
                      title: str | None = None, x: str = "step") -> Figure:
    """Left: paths on the contour map. Right: loss - min on a log scale against ``x``
    ('step', 'epoch' or 'grad_evals'). Diverged runs stop where they diverged, marked x."""
    labels = list(labels) if labels is not None else [f"lr {lr:.3g}" for lr in runs.lrs]
    if len(labels) != runs.n_runs:
        raise ValueError(f"labels must have one entry per run ({runs.n_runs}), got {len(labels)}")
    gd._check_choice("x", x, ("step", "epoch", "grad_evals"))
    if runs.params is None:
        raise ValueError("runs must be recorded with record_params=True to draw paths")
    fig, (ax_c, ax_l) = plt.subplots(1, 2, figsize=(9.5, 4.3), gridspec_kw={"width_ratios": [1, 1.25]})
    draw_contour(ax_c, problem)
    xs = {"step": np.arange(runs.steps + 1), "epoch": runs.epochs, "grad_evals": runs.grad_evals}[x]
    offset = _offset(problem)
    for r in range(runs.n_runs):
        color = PALETTE[r % len(PALETTE)]
        k = runs.valid(r)
        path = runs.params[:k, r]
        lab = _label(runs, r, labels[r])
        if runs.diverged[r]:  # draw until the path first leaves the window, mark it there
            path = _clip_path(path, problem.extent)
            ax_c.plot(*path[-1], "x", color=DIVERGED_COLOR, ms=11, mew=2.5, clip_on=False)
        ax_c.plot(path[:, 0], path[:, 1], "-", color=color, lw=1.2, marker=".", ms=3)
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
    fig.legend(*ax_l.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8)
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
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 2.8), squeeze=False)
    for ax, (label, xs) in zip(axes[0], results.items(), strict=True):
        n = max(abs(xs.min()), abs(xs.max()), 1.0)
        grid = np.linspace(-n, n, 400)
        ax.plot(grid, f(grid), color="0.5")
        ax.plot(xs, f(xs), "-o", color=PALETTE[1], ms=4)
        ax.set(title=label, xlabel="x", ylabel="f(x)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ widget plumbing
def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes and close it (widgets show it in an ``ipywidgets.Image``, which
    works in any front end and never leaks a figure into a cell's output)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _bind(controls: dict, redraw) -> None:  # noqa: ANN001
    """Call ``redraw(**values)`` now and whenever any control's value changes."""

    def update(_change: object = None) -> None:
        redraw(**{name: c.value for name, c in controls.items()})

    for control in controls.values():
        control.observe(update, names="value")
    update()


# ------------------------------------------------------ lesson 01: the widget's core
@dataclass(frozen=True)
class LRSettings:
    """What the learning-rate widget shows: rates in units of 2/L, optimiser, batch, steps."""

    rates: tuple[float, ...] = (0.05, 0.25, 0.5, 0.9)
    optimizer: str = "sgd"
    batch_size: int | None = None
    steps: int = 200
    problem: str = "diabetes"
    momentum: float = 0.9
    seed: int = field(default_factory=lambda: seeds.derive(0))  # COURSE_SEED's family
    #: a name per rate for labels (default "rate 1", "rate 2", ...); the widget passes its controls' names
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.names is not None and len(self.names) != len(self.rates):
            raise ValueError(f"names must have one entry per rate ({len(self.rates)}), got {self.names!r}")
        if not 1 <= len(self.rates) <= 4:
            raise ValueError(f"rates must hold 1 to 4 learning rates (units of 2/L), got {self.rates!r}")
        gd.as_learning_rates(self.rates)
        gd._check_choice("optimizer", self.optimizer, gd.OPTIMIZERS)
        gd._check_int("steps", self.steps, 1, 5000)


def lr_comparison_runs(settings: LRSettings) -> tuple[gd.Runs, gd.Problem]:
    """All the chosen rates as ONE vectorised :func:`gd.optimize` call."""
    problem = widget_problem(settings.problem)
    lrs = np.asarray(settings.rates) * 2 / curvature(problem)
    runs = gd.optimize(problem, lrs, steps=settings.steps, batch_size=settings.batch_size,
                       optimizer=settings.optimizer, momentum=settings.momentum, w0=problem.start,
                       seed=settings.seed)
    return runs, problem


def lr_labels(settings: LRSettings, runs: gd.Runs) -> list[str]:
    names = settings.names or tuple(f"rate {i + 1}" for i in range(len(settings.rates)))
    return [f"{name} = {u:.3g} × 2/L (η = {lr:.3g})" for name, u, lr in zip(names, settings.rates, runs.lrs, strict=True)]


def lr_report(settings: LRSettings, runs: gd.Runs) -> list[str]:
    """One line per rate: units of 2/L, the rate, and the outcome (incl. 'diverged at step k: ...')."""
    return [f"{lab}: {runs.message(r)}" for r, lab in enumerate(lr_labels(settings, runs))]


def _html_lines(lines: Sequence[str]) -> str:
    """Report lines as HTML; lines about a diverged run in the divergence colour."""
    import html

    return "<br>".join(f'<span style="color:{DIVERGED_COLOR}"><b>{html.escape(t)}</b></span>' if "diverged" in t
                       else html.escape(t) for t in lines)


def lr_comparison_figure(settings: LRSettings, runs: gd.Runs, problem: gd.Problem) -> Figure:
    batch = "full batch" if runs.batch_size == runs.n_examples else f"batch {runs.batch_size}"
    title = f"{problem.name} · {settings.optimizer}, {batch}"
    return trajectory_figure(runs, problem, labels=lr_labels(settings, runs), title=title)


def compare_learning_rates(settings: LRSettings | None = None, **kwargs) -> tuple[gd.Runs, Figure, list[str]]:  # noqa: ANN003
    """settings -> runs -> (runs, figure, report lines): what one widget redraw does."""
    settings = settings or LRSettings(**kwargs)
    runs, problem = lr_comparison_runs(settings)
    return runs, lr_comparison_figure(settings, runs, problem), lr_report(settings, runs)


def measure_redraw(settings: LRSettings | None = None, repeats: int = 20, draw_repeats: int = 3) -> dict[str, float]:
    """Median milliseconds of one redraw's compute (all runs: one vectorised optimize call) and,
    separately, of building and rendering its figure with Agg. Defaults: 4 rates x 200 steps."""
    settings = settings or LRSettings(rates=(0.05, 0.5, 0.95, 1.05), steps=200)
    repeats = gd._check_int("repeats", repeats, 1)
    draw_repeats = gd._check_int("draw_repeats", draw_repeats, 1)
    widget_problem(settings.problem)  # build the data once, as the widget does
    compute = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runs, problem = lr_comparison_runs(settings)
        compute.append(time.perf_counter() - t0)
    draw = []
    for _ in range(draw_repeats):
        t0 = time.perf_counter()
        fig = lr_comparison_figure(settings, runs, problem)
        fig.canvas.draw()
        draw.append(time.perf_counter() - t0)
        plt.close(fig)
    return {"compute_ms": 1e3 * float(np.median(compute)), "draw_ms": 1e3 * float(np.median(draw)),
            "rates": len(settings.rates), "steps": settings.steps}


def learning_rate_widget(settings: LRSettings | None = None):  # noqa: ANN201 - ipywidgets.VBox
    """The lesson-01 widget: four rates (units of 2/L, each with a 'use' box), optimiser,
    batch size, steps and problem. Controls carry stable descriptions ("rate 1".."rate 4",
    "use 1".."use 4", "optimizer", "batch size", "steps", "problem"). The figure is an
    ``ipywidgets.Image`` (CSS class ``gd-figure``), redrawn on every change; the report below it
    (CSS class ``gd-report``) says 'diverged at step k: ...' for a diverged run.
    """
    import ipywidgets as w

    s = settings or LRSettings()
    style = {"description_width": "70px"}
    rates = [w.FloatLogSlider(value=v, base=10, min=-3, max=math.log10(2.0), step=0.01, readout_format=".3g",
                              description=f"rate {i + 1}", continuous_update=False, style=style)
             for i, v in enumerate(s.rates)]
    rates += [w.FloatLogSlider(value=1.05, base=10, min=-3, max=math.log10(2.0), step=0.01, readout_format=".3g",
                               description=f"rate {i + 1}", continuous_update=False, style=style)
              for i in range(len(rates), 4)]
    uses = [w.Checkbox(value=i < len(s.rates), description=f"use {i + 1}", indent=False,
                       layout=w.Layout(width="80px")) for i in range(4)]
    optimizer = w.Dropdown(options=list(gd.OPTIMIZERS), value=s.optimizer, description="optimizer", style=style)
    # ipywidgets treats value=None as "nothing selected", so "full" is the sentinel FULL (0) here
    batch = w.Dropdown(options=[("full", FULL)] + [(str(b), b) for b in WIDGET_BATCHES if b],
                       value=s.batch_size or FULL, description="batch size", style=style)
    steps = w.IntSlider(value=s.steps, min=10, max=500, step=10, description="steps", continuous_update=False,
                        style=style)
    problem = w.Dropdown(options=[(k, v) for k, v in WIDGET_PROBLEMS.items()], value=s.problem,
                         description="problem", style=style, layout=w.Layout(width="330px"))
    report = w.HTML(layout=w.Layout(min_height="90px"))
    report.add_class("gd-report")
    image = w.Image(format="png", layout=w.Layout(width="760px"))
    image.add_class("gd-figure")

    def redraw(**values: object) -> None:
        used = [i for i in range(4) if values[f"use{i}"]] or [0]
        chosen, names = tuple(values[f"rate{i}"] for i in used), tuple(f"rate {i + 1}" for i in used)
        prob = widget_problem(values["problem"])
        b = (values["batch"] or None) if prob.n_examples > 1 else None
        batch.disabled = prob.n_examples == 1
        cfg = LRSettings(rates=chosen, optimizer=values["optimizer"], batch_size=b, steps=values["steps"],
                         problem=values["problem"], momentum=s.momentum, seed=s.seed, names=names)
        runs, fig, lines = compare_learning_rates(cfg)
        limit = gd.stability_limit(cfg.optimizer, cfg.momentum)
        cliff = f"stability limit on a quadratic for {cfg.optimizer}: {limit:.3g} × 2/L" if limit else \
            "adam: no fixed limit in units of 2/L (its step is about η per coordinate)"
        image.value = figure_png(fig)
        report.value = _html_lines(lines) + f"<br><i>{cliff}</i>"

    controls = {f"rate{i}": r for i, r in enumerate(rates)} | {f"use{i}": u for i, u in enumerate(uses)}
    controls |= {"optimizer": optimizer, "batch": batch, "steps": steps, "problem": problem}
    _bind(controls, redraw)
    rows = [w.HBox([rates[i], uses[i]]) for i in range(4)]
    ui = w.VBox([w.HBox([w.VBox(rows), w.VBox([problem, optimizer, batch, steps])]), image, report])
    ui.add_class("gd-lr-widget")
    return ui


# ------------------------------------------------------------- lesson 02 figures
def variants_figure(results: dict[str, gd.Runs], problem: gd.Problem) -> Figure:
    """Loss - min against epochs, gradient evaluations and compute seconds for several variants;
    diverged runs stop where they diverged, marked x."""
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.6), sharey=True)
    offset = _offset(problem)
    n_lines = 0
    for i, (label, runs) in enumerate(results.items()):
        for r in range(runs.n_runs):
            color = PALETTE[(i + r) % len(PALETTE)]
            k = runs.valid(r)
            gap = np.maximum(runs.loss[:k, r] - offset, FLOOR)
            lab = _label(runs, r, label if runs.n_runs == 1 else f"{label}, lr {runs.lrs[r]:.3g}")
            n_lines += 1
            for ax, xs in zip(axes, (runs.epochs, runs.grad_evals, runs.seconds), strict=True):
                ax.plot(xs[:k], gap, color=color, lw=1.2, label=lab if ax is axes[0] else None)
                if runs.diverged[r]:
                    ax.plot(xs[k - 1], gap[-1], "x", color=DIVERGED_COLOR, ms=9, mew=2.2)
    axes[0].set(yscale="log", xlabel="epoch", ylabel="loss - min")
    axes[1].set(xscale="log", xlabel="gradient evaluations (examples)")
    axes[2].set(xlabel="compute seconds (this machine)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.07 * math.ceil(n_lines / 2), 1, 1))
    return fig


def noise_variance_figure(batch_sizes: np.ndarray, measured: dict[str, np.ndarray],
                          theory: dict[str, np.ndarray]) -> Figure:
    """Mini-batch gradient variance against batch size on log-log axes, measured (dots) vs theory (lines)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for i, (label, values) in enumerate(measured.items()):
        ax.plot(batch_sizes, values, "o", color=PALETTE[i], label=f"measured, {label}")
        ax.plot(batch_sizes, theory[label], "-", color=PALETTE[i], lw=1, label=f"theory, {label}")
    ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="E||g_B - g||²",
           title="gradient noise falls like 1/B")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def noise_ball_figure(lrs: np.ndarray, measured: np.ndarray, theory: np.ndarray,
                      paths: dict[str, np.ndarray]) -> Figure:
    """Left: stationary variance against the learning rate (measured vs closed form).
    Right: sample paths, constant rates vs a decreasing schedule."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.3))
    a.plot(lrs, measured, "o", label="measured (many chains)")
    a.plot(lrs, theory, "-", lw=1, label="η²σ² / (1 - (1 - ηa)²)")
    a.set(xscale="log", yscale="log", xlabel="learning rate η", ylabel="stationary Var[x]", title="noise ball")
    a.legend(fontsize=8)
    for i, (label, xs) in enumerate(paths.items()):
        b.plot(np.abs(xs), color=PALETTE[i], lw=0.8, label=label)
    b.set(yscale="log", xlabel="step", ylabel="|x - x*|", title="one chain each")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def range_test_figure(rt: gd.RangeTest, cliff: float | None = None) -> Figure:
    """Loss against learning rate in a range test; the suggestion and (optionally) 2/L marked."""
    fig, ax = plt.subplots(figsize=(5.6, 3.3))
    k = int(np.isfinite(rt.loss).sum())
    ax.plot(rt.lrs[:k], rt.loss[:k], color="0.6", lw=1, label="loss")
    ax.plot(rt.lrs[:k], rt.smoothed[:k], color=PALETTE[0], lw=1.8, label="smoothed")
    ax.axvline(rt.suggestion, color=PALETTE[2], ls="--", label=f"suggestion {rt.suggestion:.3g}")
    if cliff:
        ax.axvline(cliff, color=DIVERGED_COLOR, ls=":", label=f"2/L = {cliff:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="learning rate (growing each step)", ylabel="loss",
           title="learning-rate range test")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def scaling_figure(batch_sizes: np.ndarray, final_gap: dict[str, np.ndarray], cliff_batch: float | None = None) -> Figure:
    """Loss - min after a fixed number of epochs against batch size, for several lr rules."""
    fig, ax = plt.subplots(figsize=(5.6, 3.3))
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
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------- lesson 02: the (lr, batch size) widget
@dataclass(frozen=True)
class PairSettings:
    """(learning rate, batch size) pairs trained for the same number of epochs."""

    pairs: tuple[tuple[float, int | None], ...] = ((0.01, 8), (0.04, 32), (0.16, 128))
    epochs: int = 10
    optimizer: str = "sgd"
    problem: str = "diabetes10"
    seed: int = field(default_factory=lambda: seeds.derive(0))  # COURSE_SEED's family

    def __post_init__(self) -> None:
        if not 1 <= len(self.pairs) <= 3:
            raise ValueError(f"pairs must hold 1 to 3 (lr, batch size) pairs, got {self.pairs!r}")
        for lr, _ in self.pairs:
            gd.as_learning_rates(lr)
        gd._check_choice("optimizer", self.optimizer, gd.OPTIMIZERS)
        gd._check_int("epochs", self.epochs, 1, 200)


def lr_batch_runs(settings: PairSettings) -> tuple[dict[str, gd.Runs], gd.Problem]:
    problem = widget_problem(settings.problem)
    out = {}
    for i, (lr, b) in enumerate(settings.pairs):
        label = f"pair {i + 1}: η = {lr:.3g}, B = {'full' if b is None else b}"
        out[label] = gd.optimize(problem, lr, epochs=settings.epochs, batch_size=b, optimizer=settings.optimizer,
                                 seed=settings.seed, record_params=False)
    return out, problem


def lr_batch_report(results: dict[str, gd.Runs], problem: gd.Problem) -> list[str]:
    lines = []
    for label, runs in results.items():
        if runs.diverged[0]:
            lines.append(f"{label}: {runs.message(0)}")
        else:
            gap = runs.loss[-1, 0] - _offset(problem)
            lines.append(f"{label}: loss - min {gap:.3g} after {runs.steps} steps")
    return lines


def lr_batch_figure(results: dict[str, gd.Runs], problem: gd.Problem) -> Figure:
    fig = variants_figure(results, problem)
    n_div = sum(int(r.diverged[0]) for r in results.values())
    fig.suptitle(f"{problem.name} — " + (f"{n_div} of {len(results)} runs diverged" if n_div else "no run diverged"),
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07 * math.ceil(len(results) / 2), 1, 1))
    return fig


def lr_batch_widget(settings: PairSettings | None = None):  # noqa: ANN201 - ipywidgets.VBox
    """The lesson-02 widget: up to three (rate, batch size) pairs ("rate 1"/"batch 1", ...) and epochs."""
    import ipywidgets as w

    s = settings or PairSettings()
    style = {"description_width": "60px"}
    pairs = list(s.pairs) + [(0.05, 32)] * (3 - len(s.pairs))
    rates = [w.FloatLogSlider(value=lr, base=10, min=-4, max=0, step=0.05, readout_format=".3g",
                              description=f"rate {i + 1}", continuous_update=False, style=style)
             for i, (lr, _) in enumerate(pairs[:3])]
    batches = [w.Dropdown(options=[("full", FULL)] + [(str(v), v) for v in (1, 2, 4, 8, 16, 32, 64, 128, 256)],
                          value=b or FULL, description=f"batch {i + 1}", style=style, layout=w.Layout(width="170px"))
               for i, (_, b) in enumerate(pairs[:3])]
    epochs = w.IntSlider(value=s.epochs, min=1, max=50, description="epochs", continuous_update=False, style=style)
    optimizer = w.Dropdown(options=list(gd.OPTIMIZERS), value=s.optimizer, description="optimizer", style=style)
    report = w.HTML()
    report.add_class("gd-report")
    image = w.Image(format="png", layout=w.Layout(width="840px"))
    image.add_class("gd-figure")

    def redraw(**v: object) -> None:
        cfg = PairSettings(pairs=tuple((v[f"rate{i}"], v[f"batch{i}"] or None) for i in range(3)), epochs=v["epochs"],
                           optimizer=v["optimizer"], problem=s.problem, seed=s.seed)
        results, problem = lr_batch_runs(cfg)
        image.value = figure_png(lr_batch_figure(results, problem))
        report.value = _html_lines(lr_batch_report(results, problem))

    controls = {f"rate{i}": r for i, r in enumerate(rates)} | {f"batch{i}": b for i, b in enumerate(batches)}
    controls |= {"epochs": epochs, "optimizer": optimizer}
    _bind(controls, redraw)
    rows = [w.HBox([rates[i], batches[i]]) for i in range(3)]
    ui = w.VBox([w.HBox([w.VBox(rows), w.VBox([epochs, optimizer])]), image, report])
    ui.add_class("gd-batch-widget")
    return ui
