"""Timeline pictures: one row per rank, forward boxes blue, backward boxes orange, weight-gradient
boxes (split backward) green -- darker for a rank's later model chunk -- and the micro-batch
number on each box when it fits."""

from __future__ import annotations

from collections import defaultdict

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.patches import Patch

from helpers.pipeline.schedules import FORWARD
from helpers.pipeline.simulate import Timeline
from helpers.plots import PALETTE

_COLORS = {"F": PALETTE[0], "B": PALETTE[1], "W": PALETTE[2]}


def _shade(color: str, chunk: int, chunks: int) -> tuple[float, float, float]:
    """Lighter for chunk 0, the base colour for the last chunk."""
    r, g, b = to_rgb(color)
    if chunks <= 1:
        return r, g, b
    mix = 0.45 * (1 - chunk / (chunks - 1))
    return r + (1 - r) * mix, g + (1 - g) * mix, b + (1 - b) * mix


def draw_timeline(tl: Timeline, ax: Axes | None = None, title: str | None = None,
                  scale: float = 1.0, unit: str = "cost units", labels: bool | None = None,
                  legend: bool = True) -> Axes:
    """Draw ``tl`` on ``ax`` (a new figure if None). ``scale`` multiplies times (1e3: s -> ms);
    ``labels``: micro-batch numbers on the boxes (default: when there are few)."""
    s = tl.schedule
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 0.45 * s.p + 1.2))
    events = tl.events()
    if labels is None:
        labels = len(events) <= 160
    groups: dict[tuple[int, str, int], list[tuple[float, float]]] = defaultdict(list)
    for e in events:
        groups[(e.rank, e.action.kind, s.chunk_of(e.action.stage))].append(
            (e.start * scale, (e.end - e.start) * scale))
    for (rank, kind, chunk), boxes in groups.items():
        ax.broken_barh(boxes, (rank - 0.4, 0.8), facecolors=_shade(_COLORS[kind], chunk, s.v),
                       edgecolors="white", linewidth=0.5)
    span = tl.makespan * scale
    if labels:
        for e in events:
            width = (e.end - e.start) * scale
            if width > span / 120:
                ax.text((e.start + e.end) / 2 * scale, e.rank, str(e.action.mb), ha="center",
                        va="center", fontsize=7, color="white" if e.action.kind == FORWARD else "black")
    ax.set_ylim(s.p - 0.5, -0.5)
    ax.set_yticks(range(s.p))
    ax.set_yticklabels([f"rank {r}" for r in range(s.p)])
    ax.set_xlim(0, span * 1.01 if span > 0 else 1)
    ax.set_xlabel(f"time ({unit})")
    ax.grid(False)
    if title is None:
        v = f", v={s.v}" if s.v > 1 else ""
        title = f"{s.name}, p={s.p}, m={s.m}{v}: bubble {tl.bubble:.2f}"
    ax.set_title(title, fontsize=10, loc="left")
    if legend:
        handles = [Patch(color=_COLORS["F"], label="forward"),
                   Patch(color=_COLORS["B"], label="backward (B: input grad)" if s.split_backward else "backward")]
        if s.split_backward:
            handles.append(Patch(color=_COLORS["W"], label="W: weight grad"))
        ax.legend(handles=handles, loc="lower right", fontsize=7, ncols=len(handles),
                  bbox_to_anchor=(1.0, 1.0), borderaxespad=0.1)
    return ax
