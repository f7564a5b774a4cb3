"""The schedule explorer: p, m, schedule and v -> the simulated timeline and its bubble.

:func:`schedule_view` is the pure function (settings -> timeline, numbers, figure) that the
notebook calls and asserts on; :func:`schedule_widget` wraps it in sliders whose descriptions
are exactly ``"p"``, ``"m"``, ``"schedule"`` and ``"v"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from helpers.pipeline.draw import draw_timeline
from helpers.pipeline.schedules import SCHEDULES, make_schedule
from helpers.pipeline.simulate import Timeline, simulate
from helpers.plots import figure_png


@dataclass
class ScheduleView:
    """What the widget shows for one setting."""

    timeline: Timeline
    bubble: float
    formula: float | None
    peak_in_flight: list[int]
    figure: Figure

    @property
    def text(self) -> str:
        s = self.timeline.schedule
        v = f", v={s.v}" if s.v > 1 else ""
        f = "no closed form" if self.formula is None else f"formula {self.formula:.3f}"
        return (f"{s.name}, p={s.p}, m={s.m}{v}: bubble {self.bubble:.3f} ({f}); peak in-flight "
                f"micro-batches per stage {self.peak_in_flight}")


def schedule_view(p: int = 4, m: int = 8, schedule: str = "1f1b", v: int = 2,
                  backward: float = 2.0) -> ScheduleView:
    """Simulate ``schedule`` (v is used only by 'interleaved'; 'zbv' has 2 chunks) with
    forward = 1 and backward = ``backward`` per full rank (a chunk costs 1/v of that; a split
    backward is half B, half W), and draw it. Raises ValueError on impossible settings."""
    sched = make_schedule(schedule, p, m, v if schedule == "interleaved" else 1)
    tl = simulate(sched, forward=1.0 / sched.v, backward=backward / sched.v)
    fig, ax = plt.subplots(figsize=(7.0, 0.4 * p + 1.3))
    draw_timeline(tl, ax, unit="forward passes of a full rank")
    fig.tight_layout()
    plt.close(fig)  # shown by whoever displays it, once
    return ScheduleView(tl, tl.bubble, tl.formula, tl.peak_in_flight(), fig)


def schedule_widget(p: int = 4, m: int = 8, schedule: str = "1f1b", v: int = 2):  # noqa: ANN201
    """Sliders p, m, v and a schedule menu above the simulated timeline (an image that is
    redrawn on every change) and its bubble."""
    import ipywidgets as w  # optional: only the widget needs ipywidgets

    controls = {
        "p": w.IntSlider(value=p, min=1, max=8, description="p"),
        "m": w.IntSlider(value=m, min=1, max=32, description="m"),
        "schedule": w.Dropdown(value=schedule, options=list(SCHEDULES), description="schedule"),
        "v": w.IntSlider(value=v, min=1, max=4, description="v"),
    }
    label = w.HTML()
    image = w.Image(format="png", layout=w.Layout(max_width="560px"))

    def redraw(_: object = None) -> None:
        kw = {k: c.value for k, c in controls.items()}
        controls["v"].disabled = kw["schedule"] != "interleaved"  # zbv: always 2
        try:
            view = schedule_view(**kw)
        except ValueError as exc:
            label.value = f"<b>not possible:</b> {exc}"
            return
        label.value = view.text
        image.value = figure_png(view.figure)

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([controls["p"], controls["m"]]),
                   w.HBox([controls["schedule"], controls["v"]]), label, image])
