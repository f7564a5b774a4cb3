"""The course plot style and small plotting helpers."""

from __future__ import annotations

import io

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

#: a colour-blind-safe cycle (Okabe & Ito 2008)
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def apply_style() -> None:
    """Modest figure size and dpi (notebooks stay small), readable fonts, colour-blind palette."""
    mpl.rcParams.update(
        {
            "figure.figsize": (7.0, 3.6),
            "figure.dpi": 80,
            "savefig.dpi": 80,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": mpl.cycler(color=PALETTE),
            "font.size": 10,
            "legend.frameon": False,
            "legend.fontsize": 9,
            "image.cmap": "viridis",
        }
    )


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes and close it (widgets show it in an ``ipywidgets.Image``, which
    works in any front end and never leaks a figure into a cell's output)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
