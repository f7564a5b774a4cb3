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

from helpers.lessons.gd_plots.figures import (
    DIVERGED_COLOR,
    DPI,
    FLOOR,
    FULL,
    WIDGET_BATCHES,
    WIDGET_PROBLEMS,
    curvature,
    draw_contour,
    loss_offset,
    noise_ball_figure,
    noise_variance_figure,
    range_test_figure,
    scaling_figure,
    stability_figure,
    surface_figure,
    trace_1d_figure,
    trajectory_figure,
    variants_figure,
    widget_problem,
)
from helpers.lessons.gd_plots.momentum import (
    ADAM_LR,
    draw_lookahead,
    lookahead_step,
    momentum_map_figure,
    momentum_paths,
    momentum_widget,
    paths_figure,
)
from helpers.lessons.gd_plots.widgets import (
    LRSettings,
    PairSettings,
    compare_learning_rates,
    learning_rate_widget,
    lr_batch_figure,
    lr_batch_report,
    lr_batch_runs,
    lr_batch_widget,
    lr_comparison_figure,
    lr_comparison_runs,
    lr_labels,
    lr_report,
    measure_redraw,
    stability_note,
)
from helpers.plots import figure_png

__all__ = [
    "ADAM_LR",
    "draw_lookahead",
    "lookahead_step",
    "momentum_map_figure",
    "momentum_paths",
    "momentum_widget",
    "paths_figure",
    "DPI",
    "DIVERGED_COLOR",
    "FLOOR",
    "FULL",
    "LRSettings",
    "PairSettings",
    "WIDGET_BATCHES",
    "WIDGET_PROBLEMS",
    "compare_learning_rates",
    "curvature",
    "draw_contour",
    "figure_png",
    "learning_rate_widget",
    "lr_batch_figure",
    "lr_batch_report",
    "lr_batch_runs",
    "lr_batch_widget",
    "lr_comparison_figure",
    "lr_comparison_runs",
    "lr_labels",
    "lr_report",
    "measure_redraw",
    "noise_ball_figure",
    "noise_variance_figure",
    "loss_offset",
    "range_test_figure",
    "scaling_figure",
    "stability_figure",
    "stability_note",
    "surface_figure",
    "trace_1d_figure",
    "trajectory_figure",
    "variants_figure",
    "widget_problem",
]
