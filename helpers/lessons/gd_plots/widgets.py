"""The widgets of lessons 01-02: settings -> runs -> figure, as pure functions the notebooks and
tests call directly, and thin ``ipywidgets`` wrappers around them (the figure is a plotly
``FigureWidget`` updated in place; see :mod:`helpers.lessons.gd_plots.live`)."""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from helpers import gd, seeds, validate

#: problems offered by the learning-rate widget (name -> factory); all have a 2-D parameter
from helpers.lessons.gd_plots import live
from helpers.lessons.gd_plots.figures import (
    DIVERGED_COLOR,
    FULL,
    WIDGET_BATCHES,
    WIDGET_PROBLEMS,
    curvature,
    loss_offset,
    trajectory_figure,
    variants_figure,
    widget_problem,
)


# ------------------------------------------------------------------ widget plumbing
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
        validate.choice("optimizer", self.optimizer, gd.OPTIMIZERS)
        validate.integer("steps", self.steps, 1, 5000)


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
    """Median milliseconds of the kernel's share of one redraw: the compute (all runs: one
    vectorised optimize call), the update of the live plotly figure, and (for comparison) a full
    matplotlib Agg render of the static figure. Defaults: 4 rates x 200 steps. The browser's
    share is measured by the browser test (tests/browser)."""
    settings = settings or LRSettings(rates=(0.05, 0.5, 0.95, 1.05), steps=200)
    repeats = validate.integer("repeats", repeats, 1)
    draw_repeats = validate.integer("draw_repeats", draw_repeats, 1)
    widget_problem(settings.problem)  # build the data once, as the widget does
    compute, update = [], []
    figure = live.lr_live_figure(len(settings.rates))
    for _ in range(repeats):
        t0 = time.perf_counter()
        runs, problem = lr_comparison_runs(settings)
        t1 = time.perf_counter()
        with figure.batch_update():
            live.set_lr_runs(figure, runs, problem, lr_labels(settings, runs))
        compute.append(t1 - t0)
        update.append(time.perf_counter() - t1)
    draw = []
    for _ in range(draw_repeats):
        t0 = time.perf_counter()
        fig = lr_comparison_figure(settings, runs, problem)
        fig.canvas.draw()
        draw.append(time.perf_counter() - t0)
        plt.close(fig)
    return {"compute_ms": 1e3 * float(np.median(compute)), "update_ms": 1e3 * float(np.median(update)),
            "draw_ms": 1e3 * float(np.median(draw)), "rates": len(settings.rates), "steps": settings.steps}


def stability_note(optimizer: str, batch_size: int | None, problem: gd.Problem, momentum: float = 0.9) -> str:
    """What limits the rate for this optimiser *and batch size*, in units of 2/L."""
    full = batch_size is None or batch_size >= problem.n_examples
    limit = gd.stability_limit(optimizer, momentum) if optimizer in ("sgd", "momentum", "nesterov") else None
    if limit is None:
        return (f"{optimizer}: no fixed limit in units of 2/L (its step is about η per coordinate, "
                "whatever the curvature)")
    if full and isinstance(problem, gd.Surface):  # non-convex: L is the sharpest minimum's curvature
        return (f"{optimizer}, full batch: settles at a minimum only below {limit:.3g} × 2/λ of that minimum; "
                "2/L here uses the sharpest one")
    if full:
        return f"{optimizer}, full batch: stable on a quadratic below {limit:.3g} × 2/L"
    if optimizer == "sgd" and isinstance(problem, gd.LinearRegression):
        ms = gd.sgd_stability_limit(problem, batch_size) * curvature(problem) / 2
        return (f"sgd, batch {batch_size}: mean-square stable below {ms:.2f} × 2/L (Wu, Ma & E 2018's criterion: a finite expected loss), "
                f"not 1 × 2/L: small batches have larger curvature (lesson 02, section 8)")
    return (f"{optimizer}: {limit:.3g} × 2/L is the full-batch limit; batch {batch_size} lowers it "
            "(small batches have larger curvature, lesson 02)")


def _busy_guard(busy, errors, work):  # noqa: ANN001, ANN202 - ipywidgets objects, a callable
    """Run ``work`` showing a busy mark, with any exception shown in the cell (``errors``)."""

    def run(**values: object) -> None:
        busy.value = "<i>computing…</i>"
        if errors.outputs:  # a previous error is gone once a setting works
            errors.clear_output()
        try:
            with errors:
                work(**values)
        finally:
            busy.value = ""

    return run


def learning_rate_widget(settings: LRSettings | None = None):  # noqa: ANN201 - ipywidgets.VBox
    """The lesson-01 widget: four rates (units of 2/L, each with a 'use' box), optimiser,
    batch size, steps and problem. Controls carry stable descriptions ("rate 1".."rate 4",
    "use 1".."use 4", "optimizer", "batch size", "steps", "problem"). The figure is a plotly
    ``FigureWidget`` (CSS class ``gd-figure``) updated in place, live while a slider is dragged;
    the report below it (CSS class ``gd-report``) says 'diverged at step k: ...' for a diverged
    run and what limits the rate for the chosen optimiser and batch size. Errors in a callback
    are shown in the cell.
    """
    import ipywidgets as w  # optional: only the widget needs ipywidgets

    s = settings or LRSettings()
    style = {"description_width": "70px"}
    defaults = list(s.rates) + [1.05] * (4 - len(s.rates))
    rates = [w.FloatLogSlider(value=v, base=10, min=-3, max=math.log10(2.0), step=0.001, readout_format=".3g",
                              description=f"rate {i + 1}", continuous_update=True, style=style)
             for i, v in enumerate(defaults)]
    uses = [w.Checkbox(value=i < len(s.rates), description=f"use {i + 1}", indent=False,
                       layout=w.Layout(width="80px")) for i in range(4)]
    optimizer = w.Dropdown(options=list(gd.OPTIMIZERS), value=s.optimizer, description="optimizer", style=style)
    # ipywidgets treats value=None as "nothing selected", so "full" is the sentinel FULL (0) here
    batch = w.Dropdown(options=[("full", FULL)] + [(str(b), b) for b in WIDGET_BATCHES if b],
                       value=s.batch_size or FULL, description="batch size", style=style)
    steps = w.IntSlider(value=s.steps, min=10, max=500, step=10, description="steps", continuous_update=True,
                        style=style)
    problem = w.Dropdown(options=[(k, v) for k, v in WIDGET_PROBLEMS.items()], value=s.problem,
                         description="problem", style=style, layout=w.Layout(width="330px"))
    report = w.HTML(layout=w.Layout(min_height="90px"))
    report.add_class("gd-report")
    busy, errors, heading = w.HTML(layout=w.Layout(height="22px")), w.Output(), w.HTML()
    heading.add_class("gd-heading")
    figure = live.lr_live_figure(4)
    figure.add_class("gd-figure")
    shown = {"problem": None}

    def redraw(**values: object) -> None:
        used = [i for i in range(4) if values[f"use{i}"]] or [0]
        chosen, names = tuple(values[f"rate{i}"] for i in used), tuple(f"rate {i + 1}" for i in used)
        prob = widget_problem(values["problem"])
        b = (values["batch"] or None) if prob.n_examples > 1 else None
        batch.disabled = prob.n_examples == 1
        cfg = LRSettings(rates=chosen, optimizer=values["optimizer"], batch_size=b, steps=values["steps"],
                         problem=values["problem"], momentum=s.momentum, seed=s.seed, names=names)
        runs, prob = lr_comparison_runs(cfg)
        n_div = int(runs.diverged.sum())
        batch_name = "full batch" if runs.batch_size == runs.n_examples else f"batch {runs.batch_size}"
        title = (f"{prob.name} · {cfg.optimizer}, {batch_name} — "
                 + (f"{n_div} of {runs.n_runs} runs diverged" if n_div else "no run diverged"))
        with figure.batch_update():
            if shown["problem"] != values["problem"]:
                live.set_lr_problem(figure, prob)
                shown["problem"] = values["problem"]
            live.set_lr_runs(figure, runs, prob, lr_labels(cfg, runs))
        heading.value = f"<b>{html.escape(title)}</b>"  # not the plot's title: a layout change redraws it all
        note = stability_note(cfg.optimizer, b, prob, cfg.momentum)
        report.value = _html_lines(lr_report(cfg, runs)) + f"<br><i>{note}</i>"

    controls = {f"rate{i}": r for i, r in enumerate(rates)} | {f"use{i}": u for i, u in enumerate(uses)}
    controls |= {"optimizer": optimizer, "batch": batch, "steps": steps, "problem": problem}
    _bind(controls, _busy_guard(busy, errors, redraw))
    rows = [w.HBox([rates[i], uses[i]]) for i in range(4)]
    ui = w.VBox([w.HBox([w.VBox(rows), w.VBox([problem, optimizer, batch, steps])]), w.HBox([heading, busy]),
                 figure, report, errors])
    ui.add_class("gd-lr-widget")
    return ui


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
        validate.choice("optimizer", self.optimizer, gd.OPTIMIZERS)
        validate.integer("epochs", self.epochs, 1, 200)


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
            gap = runs.loss[-1, 0] - loss_offset(problem)
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
    """The lesson-02 widget: up to three (rate, batch size) pairs ("rate 1"/"batch 1", ...) and
    epochs; a plotly ``FigureWidget`` (CSS class ``gd-figure``) updated in place."""
    import ipywidgets as w  # optional: only the widget needs ipywidgets

    s = settings or PairSettings()
    style = {"description_width": "60px"}
    pairs = list(s.pairs) + [(0.05, 32)] * (3 - len(s.pairs))
    rates = [w.FloatLogSlider(value=lr, base=10, min=-4, max=0, step=0.001, readout_format=".3g",
                              description=f"rate {i + 1}", continuous_update=True, style=style)
             for i, (lr, _) in enumerate(pairs[:3])]
    batches = [w.Dropdown(options=[("full", FULL)] + [(str(v), v) for v in (1, 2, 4, 8, 16, 32, 64, 128, 256)],
                          value=b or FULL, description=f"batch {i + 1}", style=style, layout=w.Layout(width="170px"))
               for i, (_, b) in enumerate(pairs[:3])]
    epochs = w.IntSlider(value=s.epochs, min=1, max=50, description="epochs", continuous_update=True, style=style)
    optimizer = w.Dropdown(options=list(gd.OPTIMIZERS), value=s.optimizer, description="optimizer", style=style)
    report = w.HTML()
    report.add_class("gd-report")
    busy, errors, heading = w.HTML(layout=w.Layout(height="22px")), w.Output(), w.HTML()
    heading.add_class("gd-heading")
    figure = live.batch_live_figure(3)
    figure.add_class("gd-figure")

    def redraw(**v: object) -> None:
        cfg = PairSettings(pairs=tuple((v[f"rate{i}"], v[f"batch{i}"] or None) for i in range(3)), epochs=v["epochs"],
                           optimizer=v["optimizer"], problem=s.problem, seed=s.seed)
        results, problem = lr_batch_runs(cfg)
        n_div = sum(int(r.diverged[0]) for r in results.values())
        title = f"{problem.name} — " + (f"{n_div} of {len(results)} runs diverged" if n_div else "no run diverged")
        with figure.batch_update():
            live.set_batch_runs(figure, results, problem)
        heading.value = f"<b>{html.escape(title)}</b>"
        report.value = _html_lines(lr_batch_report(results, problem))

    controls = {f"rate{i}": r for i, r in enumerate(rates)} | {f"batch{i}": b for i, b in enumerate(batches)}
    controls |= {"epochs": epochs, "optimizer": optimizer}
    _bind(controls, _busy_guard(busy, errors, redraw))
    rows = [w.HBox([rates[i], batches[i]]) for i in range(3)]
    ui = w.VBox([w.HBox([w.VBox(rows), w.VBox([epochs, optimizer])]), w.HBox([heading, busy]), figure, report,
                 errors])
    ui.add_class("gd-batch-widget")
    return ui
