"""Lesson 02's pictures of optimiser dynamics: the heavy-ball (step x curvature, beta) map and
its best beta, 2-D paths of GD / heavy ball / Nesterov / Adam with a beta slider, Nesterov's
look-ahead drawn for one step, and generic path panels on a contour map.

The maths lives in :mod:`helpers.gd.stability` (``heavy_ball_radius``, ``best_heavy_ball_step``);
this module only runs :func:`helpers.gd.optimize` and draws.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from helpers import gd, validate
from helpers.lessons.gd_plots.figures import RUN_COLORS, _subplots, draw_contour, widget_problem
from helpers.lessons.gd_plots.live import _contour_trace, _l, _minima_trace

#: Adam's step in lesson 02's path pictures (parameter units: Adam's steps are about lr long)
ADAM_LR = 0.2


def momentum_paths(problem: gd.Problem, momentum: float, steps: int = 60) -> dict[str, gd.Runs]:
    """GD at its best step 2/(L+mu); heavy ball and Nesterov at lr = 1/L (stable for both at any
    beta in [0, 1): their edges are 2(1 + beta)/L and 2(1 + beta)/((1 + 2 beta) L)); Adam with
    beta1 = ``momentum`` and lr :data:`ADAM_LR`; all from ``problem.start``."""
    beta = validate.unit_interval("momentum", momentum)
    if beta >= 1:
        raise ValueError(f"momentum must be < 1, got {momentum!r}")
    steps = validate.integer("steps", steps, 1, 5000)
    L, mu = float(problem.L), float(problem.mu)
    kw = dict(steps=steps, w0=problem.start)
    return {
        "GD, η = 2/(L+μ)": gd.optimize(problem, 2 / (L + mu), **kw),
        "heavy ball, η = 1/L": gd.optimize(problem, 1 / L, optimizer="momentum", momentum=beta, **kw),
        "Nesterov, η = 1/L": gd.optimize(problem, 1 / L, optimizer="nesterov", momentum=beta, **kw),
        f"Adam, η = {ADAM_LR}, β1 = β": gd.optimize(problem, ADAM_LR, optimizer="adam", betas=(beta, 0.999), **kw),
    }


def paths_figure(problem: gd.Problem, panels: Mapping[str, Mapping[str, np.ndarray]],
                 problems: Mapping[str, gd.Problem] | None = None) -> Figure:
    """One contour panel per entry of ``panels`` (title -> {label: (k, 2) path}); ``problems``
    may give each panel its own problem (default: ``problem`` for all)."""
    fig, axes = _subplots(1, len(panels), figsize=(4.3 * len(panels), 4.0), squeeze=False)
    for ax, (title, paths) in zip(axes[0], panels.items(), strict=True):
        prob = (problems or {}).get(title, problem)
        draw_contour(ax, prob)
        for i, (label, path) in enumerate(paths.items()):
            path = np.asarray(path, dtype=float)
            ax.plot(path[:, 0], path[:, 1], "-", color=RUN_COLORS[i % len(RUN_COLORS)], lw=1.1, marker=".", ms=2.5,
                    label=label)
        ax.plot(*np.asarray(next(iter(paths.values())))[0], "o", color="k", ms=4)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    return fig


def momentum_map_figure(kappa: float, betas: np.ndarray, rates: np.ndarray) -> Figure:
    """Left: the heavy-ball spectral radius over (lr x curvature, beta), with its real/complex
    boundaries (1 -+ sqrt beta)^2 and the stability edge 2(1 + beta). Right: the best worst-case
    rate on [mu, L] for each beta (``rates``) against Polyak's optimum for this ``kappa``."""
    fig, (a, b) = _subplots(1, 2, figsize=(10.5, 3.8))
    x = np.linspace(0, 4.2, 300)
    bg = np.linspace(0, 0.99, 200)
    X, Bm = np.meshgrid(x, bg)
    rho = gd.heavy_ball_radius(X, Bm)
    mesh = a.pcolormesh(X, Bm, np.minimum(rho, 1.0), cmap="viridis", vmin=0, vmax=1, shading="auto")
    a.contourf(X, Bm, rho, levels=[1.0, np.inf], colors=["#bbbbbb"])
    a.plot((1 - np.sqrt(bg)) ** 2, bg, "w--", lw=1.2, label="(1 - √β)²: roots turn complex")
    a.plot((1 + np.sqrt(bg)) ** 2, bg, "w:", lw=1.5, label="(1 + √β)²: real again")
    a.plot(2 * (1 + bg), bg, "-", color="#D55E00", lw=1.5, label="2(1 + β): stability edge")
    a.set(xlim=(0, 4.2), ylim=(0, 0.99), xlabel="η λ (step × curvature)", ylabel="momentum β",
          title="heavy-ball rate per direction (grey: diverges)")
    a.legend(fontsize=9, loc="upper left")
    fig.colorbar(mesh, ax=a, label="spectral radius")
    r = (np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)
    b.plot(betas, rates, "-", color=RUN_COLORS[0], lw=1.8, label="best η for each β")
    b.plot(betas, np.sqrt(betas), ":", color="0.4", lw=1.2, label="√β (complex roots)")
    b.plot([r**2], [r], "*", color="k", ms=12, label=f"Polyak: β* = {r ** 2:.3f}, rate {r:.3f}")
    b.plot([0], [(kappa - 1) / (kappa + 1)], "o", color=RUN_COLORS[1], ms=7, label="β = 0: GD at 2/(L+μ)")
    b.set(xlabel="momentum β", ylabel="worst rate on [μ, L]", title=f"the best β, κ = {kappa:.0f}",
          ylim=(min(0.5, r - 0.05), 1.0))
    b.legend(fontsize=9, loc="lower left")
    fig.tight_layout()
    return fig


def lookahead_step(problem: gd.Problem, w: np.ndarray, velocity: np.ndarray, lr: float, momentum: float
                   ) -> dict[str, np.ndarray]:
    """One step in Sutskever et al.'s (2013) velocity form from (w, v): the momentum point
    w + beta v, then heavy ball adds -lr grad(w), Nesterov -lr grad(w + beta v)."""
    w, v = np.asarray(w, dtype=float), np.asarray(velocity, dtype=float)
    ahead = w + momentum * v
    return {"w": w, "ahead": ahead, "heavy ball": ahead - lr * problem.grad(w),
            "Nesterov": ahead - lr * problem.grad(ahead)}


def draw_lookahead(ax, step: Mapping[str, np.ndarray]) -> None:  # noqa: ANN001 - a matplotlib Axes
    """Arrows for :func:`lookahead_step`: momentum (grey), then each method's gradient step
    (heavy ball in the first run colour, Nesterov in the second, as in :func:`momentum_paths`
    without GD); the axes zoom on the step."""
    kw = dict(angles="xy", scale_units="xy", scale=1, width=0.006)
    w, ahead = step["w"], step["ahead"]
    ax.quiver(*w, *(ahead - w), color="0.35", label="momentum β v", **kw)
    for i, name in enumerate(("heavy ball", "Nesterov")):
        ax.quiver(*ahead, *(step[name] - ahead), color=RUN_COLORS[i],
                  label=f"{name}: -η ∇f at {'w' if name == 'heavy ball' else 'w + β v'}", **kw)
    ax.plot(*w, "ko", ms=4)
    pts = np.array([w, ahead, step["heavy ball"], step["Nesterov"]])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.35 * float(np.max(hi - lo))  # zoom on the step, keeping the axes' aspect
    mid, half = (lo + hi) / 2, float(np.max(hi - lo)) / 2 + pad
    ax.set(xlim=(mid[0] - half, mid[0] + half), ylim=(mid[1] - half, mid[1] + half))
    ax.legend(fontsize=9, loc="lower right")


def momentum_widget(problem: str = "diabetes", momentum: float = 0.9, steps: int = 60):  # noqa: ANN201
    """A beta slider ("beta") over :func:`momentum_paths`: the four paths on the contours (a
    plotly ``FigureWidget``, CSS class ``gd-figure``) and each method's distance to the minimum."""
    import ipywidgets as w  # optional: only the widget needs ipywidgets
    import plotly.graph_objects as go  # optional, as above

    prob = widget_problem(problem)
    labels = list(momentum_paths(prob, momentum, 2))
    fig = go.Figure([_contour_trace(go, prob), _minima_trace(go, prob)])
    for i in range(len(labels)):
        fig.add_trace(go.Scatter(mode="lines+markers", line={"color": RUN_COLORS[i], "width": 1.5},
                                 marker={"size": 3}, name=labels[i]))
    x0, x1, y0, y1 = prob.extent
    fig.update_xaxes(range=[x0, x1])
    fig.update_yaxes(range=[y0, y1], scaleanchor="x", scaleratio=1)
    fig.update_layout(width=620, height=520, template="simple_white", uirevision="keep", font={"size": 12},
                      margin={"l": 40, "r": 10, "t": 10, "b": 40}, legend={"orientation": "h", "y": -0.12})
    figure = go.FigureWidget(fig)
    figure.add_class("gd-figure")
    slider = w.FloatSlider(value=momentum, min=0.0, max=0.99, step=0.01, description="beta",
                           continuous_update=True, readout_format=".2f")
    report, errors = w.HTML(), w.Output()
    report.add_class("gd-report")

    def redraw(change: object = None) -> None:
        with errors:
            errors.clear_output()
            runs = momentum_paths(prob, slider.value, steps)
            lines = []
            with figure.batch_update():
                for i, (label, r) in enumerate(runs.items()):
                    p = r.params[: r.valid(0), 0]
                    figure.data[2 + i].update(x=_l(p[:, 0]), y=_l(p[:, 1]), name=label)
                    dist = float(np.linalg.norm(p[-1] - prob.minimiser))
                    lines.append(f"{html.escape(label)}: |w - w*| = {dist:.2e} after {r.steps} steps")
            report.value = "<br>".join(lines)

    slider.observe(redraw, names="value")
    redraw()
    return w.VBox([slider, figure, report, errors])
