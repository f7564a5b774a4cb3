import contextlib
import io
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from helpers import gd
from helpers.lessons import gd_plots
from helpers.lessons.gd_plots import figures as gd_figures


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _all_lines(fig):
    return [line for ax in fig.axes for line in ax.get_lines()]


def _widgets(root, pred):
    found, stack = [], [root]
    while stack:
        w = stack.pop()
        if pred(w):
            found.append(w)
        stack.extend(getattr(w, "children", ()))
    return found


def test_comparison_runs_all_rates_in_one_call_and_marks_divergence():
    settings = gd_plots.LRSettings(rates=(0.05, 0.5, 0.95, 1.05), steps=200)
    runs, fig, lines = gd_plots.compare_learning_rates(settings)
    problem = gd_plots.widget_problem("diabetes")
    np.testing.assert_allclose(runs.lrs, np.array(settings.rates) * 2 / problem.L)
    assert runs.diverged.tolist() == [False, False, False, True]
    assert "1 of 4 runs diverged" in fig._suptitle.get_text()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert sum("diverged at step" in t for t in legend) == 1
    assert lines[3].startswith("rate 4 = 1.05 × 2/L") and "diverged at step" in lines[3]
    assert "loss exceeded" in lines[3]
    for line in _all_lines(fig):  # nothing NaN is handed to matplotlib
        assert np.isfinite(np.asarray(line.get_xydata(), float)).all()


@pytest.mark.parametrize("problem", ["quadratic", "nonconvex"])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_every_problem_and_optimizer_draws(problem, optimizer):
    runs, fig, lines = gd_plots.compare_learning_rates(problem=problem, optimizer=optimizer, rates=(0.1, 1.5), steps=50)
    assert len(lines) == 2 and runs.steps == 50
    assert "runs diverged" in fig._suptitle.get_text() or "no run diverged" in fig._suptitle.get_text()


def test_diverged_path_ends_on_the_window_edge():
    path = np.array([[0.0, 0.0], [0.5, 0.5], [3.0, 0.5]])
    clipped = gd_figures._clip_path(path, (-1.0, 1.0, -1.0, 1.0))
    np.testing.assert_allclose(clipped, [[0, 0], [0.5, 0.5], [1.0, 0.5]])


def test_widget_controls_redraw_and_report_divergence():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ui = gd_plots.learning_rate_widget()
        assert plt.get_fignums() == []  # the figure lives in the widget, not in pyplot
        descriptions = {w.description for w in _widgets(ui, lambda w: hasattr(w, "description"))}
        assert {"rate 1", "rate 2", "rate 3", "rate 4", "use 1", "optimizer", "batch size", "steps", "problem"} <= descriptions
        report = _widgets(ui, lambda w: "gd-report" in getattr(w, "_dom_classes", ()))[0]
        assert "diverged" not in report.value
        figure = _widgets(ui, lambda w: "gd-figure" in getattr(w, "_dom_classes", ()))[0]
        assert len(figure.data[0].z) == 90  # the contours of the chosen problem
        before = list(figure.data[2].x)
        assert len(before) == 201  # rate 1's path: start + 200 steps
        rate1 = _widgets(ui, lambda w: getattr(w, "description", None) == "rate 1")[0]
        rate1.value = 1.5  # past the cliff at 1.0 (units of 2/L)
        assert list(figure.data[2].x) != before  # redrawn in place
        assert len(figure.data[-2].x) == 1  # the divergence mark on the contour panel
        assert "rate 1 = 1.5 × 2/L" in report.value and "diverged at step" in report.value
        _widgets(ui, lambda w: getattr(w, "description", None) == "use 2")[0].value = False
        assert "rate 2" not in report.value and "rate 3 = 0.5 × 2/L" in report.value
        assert "sgd, full batch: stable on a quadratic below 1 × 2/L" in report.value
        _widgets(ui, lambda w: getattr(w, "description", None) == "batch size")[0].value = 1
        assert re.search(r"sgd, batch 1: mean-square stable below 0\.\d\d × 2/L", report.value)
        _widgets(ui, lambda w: getattr(w, "description", None) == "problem")[0].value = "nonconvex"
        assert _widgets(ui, lambda w: getattr(w, "description", None) == "batch size")[0].disabled
        errors = _widgets(ui, lambda w: type(w).__name__ == "Output")[0]
        assert not errors.outputs


def test_stability_note_depends_on_batch_size():
    p = gd_plots.widget_problem("diabetes")
    full = gd_plots.stability_note("sgd", None, p)
    b1 = gd_plots.stability_note("sgd", 1, p)
    b32 = gd_plots.stability_note("sgd", 32, p)
    limits = [float(re.search(r"below ([0-9.]+) ×", t).group(1)) for t in (b1, b32, full)]
    assert limits[0] < limits[1] < limits[2] == 1.0
    assert "no fixed limit" in gd_plots.stability_note("adam", 8, p)
    assert "full-batch limit" in gd_plots.stability_note("momentum", 8, p)
    surface_note = gd_plots.stability_note("sgd", None, gd_plots.widget_problem("nonconvex"))
    assert "of that minimum" in surface_note and "sharpest" in surface_note


def test_measure_redraw_reports_both_parts():
    t = gd_plots.measure_redraw(repeats=2)
    assert t["rates"] == 4 and t["steps"] == 200
    assert t["compute_ms"] > 0 and t["draw_ms"] > 0


def test_lr_batch_pairs_and_widget():
    settings = gd_plots.PairSettings(pairs=((0.02, 8), (0.4, None)), epochs=20)
    results, problem = gd_plots.lr_batch_runs(settings)
    lines = gd_plots.lr_batch_report(results, problem)
    assert lines[0].startswith("pair 1: η = 0.02, B = 8: loss - min")
    assert "diverged at step" in lines[1]  # 0.4 > 2/L for the 10-feature regression
    fig = gd_plots.lr_batch_figure(results, problem)
    assert "1 of 2 runs diverged" in fig.get_suptitle()
    with contextlib.redirect_stdout(io.StringIO()):
        ui = gd_plots.lr_batch_widget()
        report = _widgets(ui, lambda w: "gd-report" in getattr(w, "_dom_classes", ()))[0]
        _widgets(ui, lambda w: getattr(w, "description", None) == "batch 1")[0].value = None
        assert "pair 1: η = 0.01, B = full" in report.value


def test_static_figures_draw():
    p = gd_plots.widget_problem("diabetes")
    gd_plots.surface_figure(p)
    gd_plots.trace_1d_figure({"a": np.array([10.0, 6.0, 3.6])}, lambda x: x**2)
    rt = gd.lr_range_test(p, steps=30)
    gd_plots.range_test_figure(rt, cliff=2 / p.L)
    gd_plots.noise_variance_figure(np.array([1, 2, 4]), {"x": np.array([1, 0.5, 0.25])}, {"x": np.array([1, 0.5, 0.25])})
    gd_plots.scaling_figure(np.array([1.0, 2.0, 4.0]), {"linear": np.array([1.0, 0.5, np.inf])}, cliff_batch=3.0)
    gd_plots.noise_ball_figure(np.array([0.1, 0.2]), np.array([1.0, 2.0]), np.array([1.0, 2.0]), {"c": np.ones(5)})


def test_bad_settings():
    with pytest.raises(ValueError, match="rates must hold 1 to 4"):
        gd_plots.LRSettings(rates=(0.1,) * 5)
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        gd_plots.LRSettings(rates=(0.1, -1.0))
    with pytest.raises(ValueError, match="optimizer must be one of .*got 'lbfgs'"):
        gd_plots.LRSettings(optimizer="lbfgs")
    with pytest.raises(ValueError, match="problem must be one of .*got 'rosenbrock'"):
        gd_plots.widget_problem("rosenbrock")
    with pytest.raises(ValueError, match="pairs must hold 1 to 3"):
        gd_plots.PairSettings(pairs=())
    runs = gd.optimize(gd_plots.widget_problem("diabetes"), [0.1, 0.2], steps=3)
    with pytest.raises(ValueError, match="labels must have one entry per run"):
        gd_plots.trajectory_figure(runs, gd_plots.widget_problem("diabetes"), labels=["a"])
    with pytest.raises(ValueError, match="2-D problem"):
        gd_plots.draw_contour(plt.gca(), gd_plots.widget_problem("diabetes10"))


def test_momentum_paths_lookahead_and_figures():
    p = gd_plots.widget_problem("diabetes")
    runs = gd_plots.momentum_paths(p, 0.5, steps=30)
    assert [k.split(",")[0] for k in runs] == ["GD", "heavy ball", "Nesterov", "Adam"]
    assert all(r.params.shape == (31, 1, 2) for r in runs.values())
    zero = gd_plots.momentum_paths(p, 0.0, steps=10)  # beta = 0: both momentum methods are GD at 1/L
    plain = gd.optimize(p, 1 / p.L, steps=10, w0=p.start).params
    assert np.allclose(zero["heavy ball, η = 1/L"].params, plain) and np.allclose(zero["Nesterov, η = 1/L"].params, plain)
    hb = runs["heavy ball, η = 1/L"].params[:, 0]
    nes = runs["Nesterov, η = 1/L"].params[:, 0]
    step = gd_plots.lookahead_step(p, hb[4], hb[4] - hb[3], 1 / p.L, 0.5)
    assert np.allclose(step["heavy ball"], hb[5])
    step_n = gd_plots.lookahead_step(p, nes[4], nes[4] - nes[3], 1 / p.L, 0.5)
    assert np.allclose(step_n["Nesterov"], nes[5])  # Sutskever's velocity form is torch's Nesterov
    fig = gd_plots.paths_figure(p, {"a": {k: r.params[:, 0] for k, r in runs.items()}, "b": {"hb": hb[:5]}})
    gd_plots.draw_lookahead(fig.axes[1], step)
    assert len(fig.axes) == 2 and fig.dpi == gd_plots.DPI
    betas = np.linspace(0, 0.9, 10)
    fig2 = gd_plots.momentum_map_figure(p.kappa, betas, [gd.best_heavy_ball_step(b, p.mu, p.L)[1] for b in betas])
    assert len(fig2.axes) == 3  # two panels and a colour bar
    with pytest.raises(ValueError, match="momentum"):
        gd_plots.momentum_paths(p, 1.0)


def test_momentum_widget_slider_redraws():
    with contextlib.redirect_stdout(io.StringIO()):
        ui = gd_plots.momentum_widget(momentum=0.9, steps=40)
        report = _widgets(ui, lambda w: "gd-report" in getattr(w, "_dom_classes", ()))[0]
        figure = _widgets(ui, lambda w: "gd-figure" in getattr(w, "_dom_classes", ()))[0]
        before, x_before = report.value, figure.data[3].x
        assert before.count("|w - w*|") == 4
        _widgets(ui, lambda w: getattr(w, "description", None) == "beta")[0].value = 0.4
        assert report.value != before and figure.data[3].x != x_before
        errors = _widgets(ui, lambda w: type(w).__name__ == "Output")[0]
        assert errors.outputs == ()


def test_trajectory_figure_can_shorten_the_paths():
    p = gd_plots.widget_problem("diabetes")
    runs = gd.optimize(p, [0.1, 1.02 * 2 / p.L], steps=200, w0=p.start)
    fig = gd_plots.trajectory_figure(runs, p, labels=["a", "b"], path_steps=30)
    path_lines = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) > 1]
    assert max(len(ln.get_xdata()) for ln in path_lines) == 31
    assert max(len(ln.get_xdata()) for ln in fig.axes[1].get_lines()) > 150  # the loss panel is complete
    with pytest.raises(ValueError, match="path_steps"):
        gd_plots.trajectory_figure(runs, p, labels=["a", "b"], path_steps=0)


def test_stability_figure_draws_every_limit():
    units = np.linspace(0.2, 1.2, 11)
    grows = {1: (units > 0.35).astype(float), 16: (units > 1.05).astype(float)}
    fig = gd_plots.stability_figure(units, grows, {1: 0.29, 16: 0.92}, {1: 0.34, 16: 1.04})
    ax = fig.axes[0]
    triangles = [ln for ln in ax.get_lines() if ln.get_marker() == "^"]
    assert [float(ln.get_xdata()[0]) for ln in triangles] == [0.34, 1.04]
    assert {"B = 1", "B = 16", "mean-square limit", "Lyapunov limit"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    assert fig.dpi == gd_plots.DPI
