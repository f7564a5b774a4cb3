"""Tables and pictures of the capstone's runs and ledgers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from helpers import memory
from helpers.lessons.capstone.ledgers import stage_bounds
from helpers.lessons.capstone.runs import CurveRun, RunSpec, combination
from helpers.pipeline.split import layer_names


# --------------------------------------------------------------------------- tables
def ledger_rows(ledgers: Mapping[str, Sequence[memory.Ledger]], spec: RunSpec,
                saved: Mapping[str, Sequence[int]] | None = None) -> list[dict[str, object]]:
    """One row per (combination, process): layers and the ledger in MiB (deterministic).
    ``activations`` is the step's measured live peak; with ``saved`` (per combination, per
    process: :func:`~helpers.lessons.capstone.saved_activation_peaks`) a column shows what the
    forward *saved* at the schedule's peak, for comparison."""
    names = layer_names(spec.model.n_layer + 2)
    rows = []
    for name, leds in ledgers.items():
        combo = combination(name)
        for s, (a, b) in enumerate(stage_bounds(spec, combo)):
            mib = leds[s].as_mib()
            row: dict[str, object] = {"combination": combo.label, "process": s,
                                      "layers": f"{names[a]}..{names[b - 1]}" if b - a > 1 else names[a],
                                      "params MiB": mib["parameters"], "grads MiB": mib["gradients"],
                                      "Adam MiB": mib["optimizer_state"]}
            if saved is not None:
                row["saved MiB"] = round(saved[name][s] / memory.MiB, 3)
            row["activation peak MiB"] = mib["activations"]
            row["total MiB"] = mib["total"]
            if getattr(leds[s], "peak", 0):
                row["step peak MiB"] = round(leds[s].peak / memory.MiB, 3)
            rows.append(row)
    return rows


def speed_rows(runs: Mapping[str, CurveRun]) -> list[dict[str, object]]:
    """One row per combination: processes, median step time, tokens per second, relative to plain."""
    base = runs["plain"].step_s if "plain" in runs else None
    rows = []
    for run in runs.values():
        row: dict[str, object] = {"combination": run.combo.label, "processes": run.processes,
                                  "step ms": round(1e3 * run.step_s, 1),
                                  "tokens/s": round(run.tokens_per_s)}
        if base:
            row["time vs plain"] = round(run.step_s / base, 2)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- pictures
def plot_curves(runs: Mapping[str, CurveRun], reference: str = "plain", tol: float | None = None,
                figsize: tuple[float, float] = (10.0, 3.4)) -> Figure:
    """Left: every combination's training loss. Right: its difference from the reference."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=figsize)
    ref = runs[reference].losses
    styles = ["-", "--", ":", "-.", (0, (1, 2)), (0, (5, 2, 1, 2))]
    for k, (name, run) in enumerate(runs.items()):
        ax.plot(run.losses, lw=1.2, ls=styles[k % len(styles)], label=run.combo.label, color=f"C{k}")
        if name != reference:
            ax2.plot([a - b for a, b in zip(run.losses, ref[: len(run.losses)], strict=True)], lw=0.9,
                     ls=styles[k % len(styles)], color=f"C{k}")
    if tol is not None:
        for sign in (1, -1):
            ax2.axhline(sign * tol, color="0.4", lw=0.8, ls="--")
        ax2.text(len(ref) - 1, tol * 0.93, f"tolerance ±{tol:.2g}", fontsize=8, color="0.3", va="top",
                 ha="right")
        ax2.set_ylim(-1.25 * tol, 1.25 * tol)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"The same run, {len(runs)} ways", loc="left")
    ax.legend(fontsize=8)
    ax2.set_xlabel("step")
    ax2.set_ylabel(f"loss − {runs[reference].combo.label} loss")
    ax2.set_title("Difference from the reference (colours as on the left)", loc="left", fontsize=9)
    fig.tight_layout()
    return fig


LEDGER_KINDS = (("parameters", "parameters"), ("gradients", "gradients"),
                ("optimizer_state", "Adam state"), ("activations", "activation peak"))


def plot_ledgers(ledgers: Mapping[str, Sequence[memory.Ledger]],
                 figsize: tuple[float, float] = (9.0, 3.8)) -> Figure:
    """Stacked bars: what each process holds, per combination."""
    labels, parts = [], {k: [] for k, _ in LEDGER_KINDS}
    for name, leds in ledgers.items():
        combo = combination(name)
        for s, led in enumerate(leds):
            labels.append(f"{combo.label}" + (f"\nprocess {s}" if len(leds) > 1 else ""))
            for k, _ in LEDGER_KINDS:
                parts[k].append(getattr(led, k) / memory.MiB)
    fig, ax = plt.subplots(figsize=figsize)
    bottom = [0.0] * len(labels)
    for k, title in LEDGER_KINDS:
        ax.bar(range(len(labels)), parts[k], bottom=bottom, label=title, width=0.7)
        bottom = [b + v for b, v in zip(bottom, parts[k], strict=True)]
    ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=35, ha="right")
    if any(getattr(led, "peak", 0) for leds in ledgers.values() for led in leds):
        peaks = [getattr(led, "peak", 0) / memory.MiB for leds in ledgers.values() for led in leds]
        ax.scatter(range(len(labels)), peaks, marker="_", s=300, color="black", zorder=3,
                   label="step peak (measured)")
    ax.set_ylabel("MiB")
    ax.set_title("Memory per process in one training step", loc="left")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_speed(runs: Mapping[str, CurveRun], figsize: tuple[float, float] = (6.5, 2.8)):  # noqa: ANN201
    """Horizontal bars: tokens per second per combination."""
    fig, ax = plt.subplots(figsize=figsize)
    names = list(runs)
    ax.barh(range(len(names)), [runs[n].tokens_per_s for n in names],
            color=["#D55E00" if runs[n].combo.pipeline else "#0072B2" for n in names])
    ax.set_yticks(range(len(names)), [runs[n].combo.label for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("tokens per second (blue: 1 process, orange: pipeline)")
    ax.set_title("Training throughput", loc="left")
    fig.tight_layout()
    return fig
