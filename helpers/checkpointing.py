"""Gradient (activation) checkpointing, measured (lesson 04).

The technique itself is a transformation of the model's layers in :mod:`helpers.core.checkpoint`
(re-exported here): :func:`checkpoint` written from scratch as one ``torch.autograd.Function``,
the :class:`Policy` of which blocks to recompute (``none``, ``every``, ``every_kth``,
``segments``, ``sqrt`` (Chen et al. 2016), ``selective``) and ``apply_checkpointing``, which
every training path uses. This module measures what a policy costs and saves: exact memory of
one step (:func:`measure_memory`, :func:`memory_timeline`), interleaved timings, the predicted
peak, the power-law fit, and the schedule drawing.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from helpers import (
    memory,
    validate,
)
from helpers.core.checkpoint import (
    IMPLS,
    POLICIES,
    SAVE_OPS,
    SELECTIVE_KEEPS,
    Policy,
    RNGState,
    Segment,
    apply_checkpointing,
    as_policy,
    checkpoint,
    plan,
    run_layers,
    selective_context,
    sqrt_segments,
)
from helpers.core.model import GPT, lm_loss
from helpers.core.step import StepConfig, autocast, forward_backward
from helpers.plots import PALETTE


# --------------------------------------------------------------------------- running the transformer
def run_blocks(blocks: Sequence[nn.Module], x: torch.Tensor, policy: Policy | str = "none") -> torch.Tensor:
    """Run a stack of blocks on ``x`` under ``policy`` (every module given counts as a block)."""
    return run_layers(apply_checkpointing(blocks, policy, all_blocks=True), x)


def gpt_forward(
    model: GPT, idx: torch.Tensor, targets: torch.Tensor | None = None, policy: Policy | str = "none"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``model(idx, targets)`` with its blocks checkpointed by ``policy``: (logits, loss)."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a helpers.core.GPT, got {type(model).__name__}")
    logits = run_layers(apply_checkpointing(model, policy), idx)
    return logits, None if targets is None else lm_loss(logits, targets)


class CheckpointedGPT(nn.Module):
    """Wraps a GPT (sharing its parameters) so that ``forward`` checkpoints by ``policy``."""

    def __init__(self, model: GPT, policy: Policy | str = "every") -> None:
        super().__init__()
        if not isinstance(model, GPT):
            raise TypeError(f"model must be a helpers.core.GPT, got {type(model).__name__}")
        self.model = model
        self.policy = as_policy(policy)
        plan(self.policy, model.config.n_layer)  # validate k against the number of blocks now

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return gpt_forward(self.model, idx, targets, self.policy)


# --------------------------------------------------------------------------- measuring
def grad_step(
    model: GPT, x: torch.Tensor, y: torch.Tensor, policy: Policy | str = "none",
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """One forward + backward of :func:`helpers.core.step.forward_backward` (gradients left in
    ``.grad``, set to None first; no optimiser step); returns the loss."""
    model.zero_grad(set_to_none=True)
    return forward_backward(model, x, y, StepConfig(autocast_dtype=autocast_dtype, checkpoint=policy))[0]


@dataclass(frozen=True)
class StepMemory:
    """Memory of one training step, in bytes (parameter gradients excluded: see ``grads``).

    ``saved``: what the forward pass saved for backward (saved-tensor hooks; views and parameters
    not counted). ``forward_end``: live tensors when the forward pass returns. ``peak``: the highest
    live tensor bytes over forward *and* backward, recomputation included. ``grads``: bytes of the
    parameter gradients. ``recomputed_blocks``: block forwards run a second time (under
    selective checkpointing they skip the saved ops). ``matmuls``: matrix-multiply and attention
    kernels run in the whole step (forward, recomputation, backward). ``peak_with_grads``: the
    highest live bytes with the parameter gradients counted as they appear (what a device
    allocator's peak over the step, less parameters and optimiser state, would show).
    """

    saved: int
    forward_end: int
    peak: int
    grads: int
    recomputed_blocks: int
    matmuls: int
    peak_with_grads: int = 0


def _tracked_step(
    model: GPT, x: torch.Tensor, y: torch.Tensor, policy: Policy | str, autocast_dtype: torch.dtype | None
) -> tuple[StepMemory, memory.LiveMemoryLog]:
    policy = as_policy(policy)
    calls = [0]

    def count(*_: object) -> None:
        calls[0] += 1

    hooks = [b.register_forward_pre_hook(count) for b in model.blocks]  # pre: torch may stop early
    try:
        model.zero_grad(set_to_none=True)
        with memory.track_live_tensors(model) as tracker:
            with memory.record_saved_tensors(model) as saved, autocast(x.device, autocast_dtype):
                _, loss = gpt_forward(model, x, y, policy)
            tracker.mark("forward end")
            forward_calls = calls[0]
            loss.backward()
            del loss
    finally:
        for h in hooks:
            h.remove()
    log = tracker.log
    result = StepMemory(saved=saved.total_bytes, forward_end=log.bytes_at("forward end"), peak=log.peak_bytes(),
                        grads=memory.grad_bytes(model), recomputed_blocks=calls[0] - forward_calls,
                        matmuls=sum(log.op_counts.get(str(op), 0) for op in SAVE_OPS),
                        peak_with_grads=log.peak_bytes(include_grads=True))
    return result, log


def measure_memory(
    model: GPT, x: torch.Tensor, y: torch.Tensor, policy: Policy | str = "none",
    autocast_dtype: torch.dtype | None = None,
) -> StepMemory:
    """Measure one forward + backward step of ``model`` under ``policy`` (deterministic)."""
    return _tracked_step(model, x, y, policy, autocast_dtype)[0]


def memory_timeline(
    model: GPT, x: torch.Tensor, y: torch.Tensor, policy: Policy | str = "none",
    autocast_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, int]:
    """Live tensor bytes (parameter gradients excluded) after every allocation or free during
    one step, and the index where the forward pass ended."""
    _, log = _tracked_step(model, x, y, policy, autocast_dtype)
    return np.array(log.series()), log.marks["forward end"]


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds of interleaved runs: ``samples[name][i]`` is round ``i`` of ``name``."""

    samples: dict[str, list[float]]

    def median(self, name: str) -> float:
        """Median seconds of ``name``."""
        return statistics.median(self._get(name))

    def ratio(self, name: str, baseline: str) -> float:
        """Median over rounds of ``name``'s time / ``baseline``'s time in the same round: runs
        next to each other see the same machine load, so the ratio is steadier than a ratio of
        medians."""
        return statistics.median(a / b for a, b in zip(self._get(name), self._get(baseline), strict=True))

    def _get(self, name: str) -> list[float]:
        if name not in self.samples:
            raise ValueError(f"name must be one of {list(self.samples)}, got {name!r}")
        return self.samples[name]


def time_steps(
    step_fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> Timings:
    """Time zero-argument functions interleaved (A, B, C, A, B, C, ...) so that changing machine
    load affects all alike; ``warmup`` untimed rounds first."""
    validate.positive_int("repeats", repeats)
    if not step_fns:
        raise ValueError("step_fns must name at least one function")
    for _ in range(warmup):
        for fn in step_fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in step_fns}
    for _ in range(repeats):
        for name, fn in step_fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return Timings(samples)


def compare_policies(
    model: GPT, x: torch.Tensor, y: torch.Tensor, policies: Sequence[Policy | str], repeats: int = 3,
    autocast_dtype: torch.dtype | None = None,
) -> list[dict[str, object]]:
    """One row per policy: memory (bytes, deterministic), block forwards recomputed, and, when
    ``repeats > 0``, the median step time (s) from interleaved runs and its ratio to the first
    policy's (median of per-round ratios). Memory numbers are safe to assert on; times are not."""
    policies = [as_policy(p) for p in policies]
    if not policies:
        raise ValueError("policies must name at least one policy")
    validate.integer("repeats", repeats, 0)
    rows: list[dict[str, object]] = []
    for policy in policies:
        m = measure_memory(model, x, y, policy, autocast_dtype)
        rows.append({"policy": policy.label, "peak": m.peak, "forward_end": m.forward_end, "saved": m.saved,
                     "recomputed_blocks": m.recomputed_blocks, "matmuls": m.matmuls})
    if repeats:
        fns = {str(i): functools.partial(grad_step, model, x, y, p, autocast_dtype) for i, p in enumerate(policies)}
        timings = time_steps(fns, repeats=repeats)
        for i, row in enumerate(rows):
            row["time_s"] = timings.median(str(i))
            row["time_ratio"] = timings.ratio(str(i), "0")
    model.zero_grad(set_to_none=True)
    return rows


def predict_peak(policy: Policy | str, n_blocks: int, fixed: float, input_bytes: float, block_bytes: float) -> float:
    """The peak that the memory model predicts for ``policy`` on ``n_blocks`` equal blocks.

    ``fixed``: bytes that do not depend on depth (embedding, head, loss, gradient buffers);
    ``input_bytes`` (b): one block's input, what a checkpoint keeps; ``block_bytes`` (c): all a
    plain block keeps for backward. At the end of forward the model holds the checkpoint inputs
    and the plain blocks' tensors; while segment j is recomputed, it holds the inputs of the
    checkpointed segments up to j, the plain blocks before j, and segment j's internals. The peak
    is the largest of these, plus ``fixed``.
    """
    segments = plan(policy, n_blocks)
    for name, value in (("fixed", fixed), ("input_bytes", input_bytes), ("block_bytes", block_bytes)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    candidates = [sum(input_bytes if s.checkpointed else len(s) * block_bytes for s in segments)]
    kept = 0.0
    for seg in segments:
        if seg.checkpointed:
            candidates.append(kept + input_bytes + len(seg) * block_bytes)
            kept += input_bytes
        else:
            kept += len(seg) * block_bytes
    return fixed + max(candidates)


# --------------------------------------------------------------------------- the schedule, drawn
def recompute_order(policy: Policy | str, n_blocks: int) -> list[tuple[str, int]]:
    """The order of work in one step as ``(phase, block)`` with phase 'forward', 'recompute' or
    'backward': all forwards, then per segment from the last, its recomputation (if checkpointed)
    followed by backward through its blocks in reverse."""
    events = [("forward", i) for i in range(n_blocks)]
    for seg in reversed(plan(policy, n_blocks)):
        if seg.checkpointed:
            events += [("recompute", i) for i in range(seg.start, seg.stop)]
        events += [("backward", i) for i in reversed(range(seg.start, seg.stop))]
    return events


def draw_schedule(policy: Policy | str, n_blocks: int, ax: object = None) -> object:
    """A strip of the step's work (forward, recompute, backward, one cell per block) and, under it,
    how many blocks' internals and how many kept block inputs are alive (unit sizes)."""
    import matplotlib.pyplot as plt  # heavy: only the drawing needs matplotlib

    policy = as_policy(policy)
    events = recompute_order(policy, n_blocks)
    segs = plan(policy, n_blocks)
    owner = {i: s for s in segs for i in range(s.start, s.stop)}
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 2.0))
    colours = {"forward": PALETTE[0], "recompute": PALETTE[1], "backward": PALETTE[2]}
    internals, inputs, live_int, live_in = set(), set(), [], []
    for t, (phase, i) in enumerate(events):
        ax.add_patch(plt.Rectangle((t, 1.1), 0.95, 0.8, color=colours[phase]))
        ax.text(t + 0.47, 1.5, str(i), ha="center", va="center", fontsize=7, color="white")
        seg = owner[i]
        if phase == "forward" and seg.checkpointed and i == seg.start:
            inputs.add(i)
        if phase == "recompute" or (phase == "forward" and not seg.checkpointed):
            internals.add(i)
        if phase == "backward":
            internals.discard(i)
            inputs.discard(i)
        live_int.append(len(internals))
        live_in.append(len(inputs))
    steps = np.arange(len(events)) + 0.5
    scale = 0.9 / n_blocks  # the same units in every panel: n blocks' worth fills the lower half
    ax.step(steps, np.array(live_int) * scale, where="mid", color=PALETTE[3], label="blocks' internals kept")
    ax.step(steps, np.array(live_in) * scale, where="mid", color=PALETTE[4], ls="--", label="checkpoint inputs kept")
    for phase, c in colours.items():
        ax.plot([], [], "s", color=c, label=phase)
    ax.set(xlim=(0, len(events)), ylim=(0, 2), yticks=[], xlabel="time (one cell = one block's work)",
           title=f"{policy.label}, {n_blocks} blocks: {sum(p == 'recompute' for p, _ in events)} blocks recomputed")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(False)
    return ax


@dataclass(frozen=True)
class PowerLaw:
    """``value ~ fixed + scale * n ** exponent`` (see :func:`fit_power_law`)."""

    fixed: float
    scale: float
    exponent: float
    loglog_slope: float  # the plain log-log slope, fixed part not separated

    def __call__(self, n: float | np.ndarray) -> float | np.ndarray:
        return self.fixed + self.scale * np.asarray(n, dtype=float) ** self.exponent


def fit_power_law(ns: Sequence[float], values: Sequence[float]) -> PowerLaw:
    """Least-squares fit of ``values = fixed + scale * ns**exponent`` (relative errors).

    Memory of a model = a part that does not depend on depth (embedding, head, loss) + a part
    that grows with depth n; the growth exponent is what Chen et al.'s O(sqrt n) is about, and a
    plain log-log slope mixes the two. For each exponent, (fixed, scale) is a linear fit; the
    exponent is found by a bounded 1-D search.
    """
    from scipy.optimize import minimize_scalar  # heavy: only this computation needs scipy

    n = np.asarray(ns, dtype=float)
    v = np.asarray(values, dtype=float)
    if n.ndim != 1 or n.shape != v.shape or len(n) < 3:
        raise ValueError(f"ns and values must be 1-D of equal length >= 3, got shapes {n.shape} and {v.shape}")
    if (n <= 0).any() or (v <= 0).any():
        raise ValueError("ns and values must be positive")

    def solve(p: float) -> tuple[float, float, float]:
        design = np.stack([np.ones_like(n), n**p], axis=1) / v[:, None]  # relative residuals
        (fixed, scale), *_ = np.linalg.lstsq(design, np.ones_like(v), rcond=None)
        return float(np.sum((design @ [fixed, scale] - 1) ** 2)), float(fixed), float(scale)

    best = minimize_scalar(lambda p: solve(p)[0], bounds=(0.05, 2.0), method="bounded",
                           options={"xatol": 1e-6})
    _, fixed, scale = solve(best.x)
    slope = float(np.polyfit(np.log(n), np.log(v), 1)[0])
    return PowerLaw(fixed=fixed, scale=scale, exponent=float(best.x), loglog_slope=slope)


def max_grad_difference(a: nn.Module, b: nn.Module) -> float:
    """Largest absolute difference between the ``.grad`` of two models' matching parameters."""
    diffs = []
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        if pa.shape != pb.shape:
            raise ValueError(f"parameter {na!r} {tuple(pa.shape)} does not match {nb!r} {tuple(pb.shape)}")
        if pa.grad is None or pb.grad is None:
            raise ValueError(f"parameter {na!r} has no gradient in one of the models")
        diffs.append((pa.grad - pb.grad).abs().max().item())
    return max(diffs)


__all__ = [
    "IMPLS", "POLICIES", "SAVE_OPS", "SELECTIVE_KEEPS", "CheckpointedGPT", "Policy", "PowerLaw", "RNGState", "Segment",
    "StepMemory", "Timings", "as_policy", "checkpoint", "compare_policies", "draw_schedule", "fit_power_law", "gpt_forward",
    "max_grad_difference", "measure_memory", "memory_timeline", "plan", "predict_peak", "recompute_order", "run_blocks",
    "selective_context", "sqrt_segments", "grad_step", "time_steps",
]
