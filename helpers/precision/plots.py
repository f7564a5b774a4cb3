"""The spacing picture of the number formats."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from helpers.precision.formats import representable_values, short_name, spacing_curve


# ----------------------------------------------------------------------------- pictures
def plot_spacing(dtypes: Sequence[torch.dtype] | None = None, figsize: tuple[float, float] = (9.0, 3.4)):  # noqa: ANN201
    """Two panels: the relative spacing of representable numbers against their magnitude (range
    and precision at a glance), and every float8 number between 1 and 8."""
    import matplotlib.pyplot as plt  # heavy: only the drawing needs matplotlib

    dtypes = list(dtypes) if dtypes is not None else [torch.float32, torch.bfloat16, torch.float16] + [
        getattr(torch, n) for n in ("float8_e5m2", "float8_e4m3fn") if hasattr(torch, n)]
    colors = {dt: f"C{i}" for i, dt in enumerate(dtypes)}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=figsize, gridspec_kw={"width_ratios": [3, 2]})
    for dt in dtypes:
        x, gap = spacing_curve(dt)
        ax1.loglog(x.numpy(), (gap / x).numpy(), lw=1.2, color=colors[dt], label=short_name(dt))
    ax1.set(xlabel="magnitude |x|", ylabel="gap to next number / |x|",
            title="relative spacing: width = range, height = precision")
    ax1.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 0.12), ncol=2)
    narrow = [dt for dt in dtypes if dt.itemsize == 1]
    for i, dt in enumerate(narrow):
        vals = representable_values(dt)
        vals = vals[(vals >= 1) & (vals <= 8)].numpy()
        ax2.plot(vals, [i] * len(vals), "|", ms=14, mew=1.5, color=colors[dt])
    ax2.set(yticks=range(len(narrow)), yticklabels=[short_name(d) for d in narrow], xlabel="x",
            title="every float8 number in [1, 8]", ylim=(-0.6, len(narrow) - 0.4), xticks=[1, 2, 4, 8])
    ax2.grid(False)
    fig.tight_layout()
    return fig
