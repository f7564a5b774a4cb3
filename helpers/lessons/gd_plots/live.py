"""Live figures for the lesson 01-02 widgets: plotly ``FigureWidget``s updated in place.

Why plotly and not a re-rendered PNG: a matplotlib redraw of the lesson-01 figure (contours,
four paths, legend) took 0.3-0.6 s on the course machine, most of it Agg rendering and PNG
encoding, so a slider answered in about half a second whatever the computation cost (5-30 ms).
A ``FigureWidget`` is drawn by plotly.js in the browser: on a change the kernel sends only the
new trace data (a few kB) and the browser redraws the traces; the contour background is sent
once per problem. ``scripts/bench.py`` and the browser test measure slider-to-picture latency.

The builders here take runs computed by the pure functions of :mod:`.widgets` and write them
into the figure's traces; the widgets call them inside ``batch_update`` (one message per change).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from helpers import gd
from helpers.lessons.gd_plots.figures import (
    DIVERGED_COLOR,
    FLOOR,
    RUN_COLORS,
    _clip_path,
    _grid,
    loss_offset,
)

#: at most this many points per drawn curve (long SGD runs are thinned for the browser)
MAX_POINTS = 600


def _l(a: object) -> list:
    """Plain lists for trace data: plotly's FigureWidget compares the kernel's copy with the
    browser's deltas, which fails on numpy arrays ("truth value of an array is ambiguous")."""
    return np.asarray(a, dtype=float).tolist()


def _thin(k: int) -> np.ndarray:
    """Indices 0..k-1, thinned to at most MAX_POINTS, always keeping the last."""
    if k <= MAX_POINTS:
        return np.arange(k)
    return np.unique(np.append(np.linspace(0, k - 1, MAX_POINTS).astype(int), k - 1))


def _contour(problem: gd.Problem) -> dict:
    """Contour data of log10(loss - min) over the problem's window (log-spaced levels)."""
    X, Y, Z = _grid(problem, tuple(problem.extent))
    gap = Z - loss_offset(problem)
    low = max(np.percentile(gap, 0.5), 1e-4 * gap.max(), 1e-12)
    return {"x": X[0], "y": Y[:, 0], "z": np.log10(np.maximum(gap, low))}


def _minima(problem: gd.Problem) -> np.ndarray:
    if isinstance(problem, gd.Surface) and problem.minima:
        return np.array([m for m, _ in problem.minima])
    return np.atleast_2d(problem.minimiser) if problem.minimiser is not None else np.zeros((0, 2))


def _contour_trace(go, problem: gd.Problem | None = None):  # noqa: ANN001, ANN202 - plotly module and trace
    """The grey contour lines of every live figure (filled with ``problem``'s data if given)."""
    data = {}
    if problem is not None:
        c = _contour(problem)
        data = {"x": _l(c["x"]), "y": _l(c["y"]), "z": _l(c["z"])}
    return go.Contour(showscale=False, ncontours=18, colorscale="Greys", reversescale=True, opacity=0.55,
                      contours={"coloring": "lines"}, line={"width": 0.5, "color": "#666"},
                      hoverinfo="skip", name="contours", **data)


def _minima_trace(go, problem: gd.Problem | None = None):  # noqa: ANN001, ANN202 - plotly module and trace
    """The minima as black stars (placed at ``problem``'s minima if given)."""
    data = {}
    if problem is not None:
        m = _minima(problem)
        data = {"x": _l(m[:, 0]), "y": _l(m[:, 1])}
    return go.Scatter(mode="markers", marker={"symbol": "star", "size": 12, "color": "black"},
                      name="minima", showlegend=False, hoverinfo="skip", **data)


def lr_live_figure(n_runs: int = 4):  # noqa: ANN201 - plotly.graph_objects.FigureWidget
    """An empty lesson-01 figure: contours + ``n_runs`` paths (left), loss - min per step (right)."""
    import plotly.graph_objects as go  # optional: only the live widgets need plotly
    from plotly.subplots import make_subplots  # optional, as above

    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.1,
                        subplot_titles=("paths on the loss contours", "loss - min (log scale)"))
    fig.add_trace(_contour_trace(go), row=1, col=1)
    fig.add_trace(_minima_trace(go), row=1, col=1)
    for r in range(n_runs):
        color = RUN_COLORS[r % len(RUN_COLORS)]
        fig.add_trace(go.Scatter(mode="lines+markers", line={"color": color, "width": 1.5}, marker={"size": 3},
                                 showlegend=False, name=f"path {r + 1}"), row=1, col=1)
    for r in range(n_runs):
        color = RUN_COLORS[r % len(RUN_COLORS)]
        fig.add_trace(go.Scatter(mode="lines", line={"color": color, "width": 2}, name=f"rate {r + 1}"), row=1, col=2)
    fig.add_trace(go.Scatter(mode="markers", marker={"symbol": "x", "size": 12, "color": DIVERGED_COLOR},
                             name="diverged", showlegend=False), row=1, col=1)
    fig.add_trace(go.Scatter(mode="markers", marker={"symbol": "x", "size": 12, "color": DIVERGED_COLOR},
                             name="diverged here", showlegend=False), row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=2, exponentformat="power")
    fig.update_xaxes(title_text="step", row=1, col=2)
    fig.update_layout(width=900, height=430, margin={"l": 50, "r": 20, "t": 30, "b": 40}, font={"size": 12},
                      legend={"orientation": "h", "y": -0.18, "font": {"size": 12}}, template="simple_white",
                      uirevision="keep")
    return go.FigureWidget(fig)


def set_lr_problem(fig, problem: gd.Problem) -> None:  # noqa: ANN001 - plotly FigureWidget
    """Draw a problem's contours and minima, and fit the left panel to its window."""
    c = _contour(problem)
    fig.data[0].update(x=_l(c["x"]), y=_l(c["y"]), z=_l(c["z"]))
    m = _minima(problem)
    fig.data[1].update(x=_l(m[:, 0]), y=_l(m[:, 1]))
    x0, x1, y0, y1 = problem.extent
    names = getattr(problem, "feature_names", ()) or ("w1", "w2")
    fig.update_xaxes(range=[x0, x1], title_text=f"w[{names[0]}]" if names[0] != "w1" else "w1", row=1, col=1)
    fig.update_yaxes(range=[y0, y1], title_text=f"w[{names[1]}]" if names[1] != "w2" else "w2",
                     scaleanchor="x", scaleratio=1, row=1, col=1)


def set_lr_runs(fig, runs: gd.Runs, problem: gd.Problem, labels: Sequence[str]) -> None:  # noqa: ANN001
    """Write the runs' paths and loss curves into the figure; unused run slots are emptied."""
    n_slots = (len(fig.data) - 4) // 2
    offset = loss_offset(problem)
    steps = np.arange(runs.steps + 1)
    xs, ys, lx, ly = [], [], [], []
    for r in range(n_slots):
        path, loss = fig.data[2 + r], fig.data[2 + n_slots + r]
        if r >= runs.n_runs:
            path.update(x=[], y=[])
            loss.update(x=[], y=[], name=" ", showlegend=False)
            continue
        k = runs.valid(r)
        p = runs.params[:k, r]
        if runs.diverged[r]:
            p = _clip_path(p, problem.extent)
            xs.append(p[-1, 0])
            ys.append(p[-1, 1])
        keep = _thin(len(p))
        path.update(x=_l(p[keep, 0]), y=_l(p[keep, 1]))
        gap = np.maximum(runs.loss[:k, r] - offset, FLOOR)
        keep = _thin(k)
        name = labels[r] + (f" (diverged at step {runs.diverged_at[r]})" if runs.diverged[r] else "")
        loss.update(x=_l(steps[keep]), y=_l(gap[keep]), name=name, showlegend=True)
        if runs.diverged[r]:
            lx.append(steps[k - 1])
            ly.append(gap[-1])
    fig.data[-2].update(x=_l(xs), y=_l(ys))
    fig.data[-1].update(x=_l(lx), y=_l(ly))


def batch_live_figure(n_pairs: int = 3):  # noqa: ANN201 - plotly.graph_objects.FigureWidget
    """An empty lesson-02 figure: loss - min against epochs, updates and compute seconds."""
    import plotly.graph_objects as go  # optional: only the live widgets need plotly
    from plotly.subplots import make_subplots  # optional, as above

    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=("per epoch", "per update (step)", "per compute second"))
    for col in (1, 2, 3):
        for i in range(n_pairs):
            fig.add_trace(go.Scatter(mode="lines", line={"color": RUN_COLORS[i % len(RUN_COLORS)], "width": 1.6},
                                     name=f"pair {i + 1}", legendgroup=f"p{i}", showlegend=col == 1), row=1, col=col)
    for col in (1, 2, 3):
        fig.add_trace(go.Scatter(mode="markers", marker={"symbol": "x", "size": 11, "color": DIVERGED_COLOR},
                                 showlegend=False, name="diverged"), row=1, col=col)
    fig.update_yaxes(type="log", exponentformat="power", row=1, col=1)
    fig.update_yaxes(title_text="loss - min", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=1)
    fig.update_xaxes(title_text="1 + updates (log)", type="log", row=1, col=2)
    fig.update_xaxes(title_text="seconds (this machine)", row=1, col=3)
    fig.update_layout(width=950, height=400, margin={"l": 60, "r": 20, "t": 30, "b": 40}, font={"size": 12},
                      legend={"orientation": "h", "y": -0.2, "font": {"size": 12}}, template="simple_white",
                      uirevision="keep")
    return go.FigureWidget(fig)


def set_batch_runs(fig, results: dict[str, gd.Runs], problem: gd.Problem) -> None:  # noqa: ANN001
    """Write each (rate, batch) pair's loss curves into the figure's three panels."""
    n_pairs = (len(fig.data) - 3) // 3
    offset = loss_offset(problem)
    marks = [([], []), ([], []), ([], [])]
    items = list(results.items())
    for i in range(n_pairs):
        traces = [fig.data[c * n_pairs + i] for c in range(3)]
        if i >= len(items):
            for t in traces:
                t.update(x=[], y=[])
            continue
        label, runs = items[i]
        k = runs.valid(0)
        gap = np.maximum(runs.loss[:k, 0] - offset, FLOOR)
        keep = _thin(k)
        name = label + (f" (diverged at step {runs.diverged_at[0]})" if runs.diverged[0] else "")
        clocks = (runs.epochs, np.arange(runs.steps + 1) + 1.0, runs.seconds)  # updates + 1: log axis from 1
        for c, (t, xs) in enumerate(zip(traces, clocks, strict=True)):
            t.update(x=_l(xs[:k][keep]), y=_l(gap[keep]), name=name)
            if runs.diverged[0]:
                marks[c][0].append(xs[k - 1])
                marks[c][1].append(gap[-1])
    for c in range(3):
        fig.data[3 * n_pairs + c].update(x=_l(marks[c][0]), y=_l(marks[c][1]))
