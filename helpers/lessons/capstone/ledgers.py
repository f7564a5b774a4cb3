"""The memory each process holds in one training step of a combination: parameters, gradients,
optimiser state, and the **measured live peak** of everything else -- saved activations,
temporaries, the block recomputed in backward, message buffers.

The live peak comes from lesson 04's tracker (:func:`helpers.memory.track_live_tensors`, every
tensor storage created and freed during the step), run around the course's one training step:
:func:`helpers.core.step.forward_backward` in one process, the pipeline executor's actions on
each rank (``measure_memory=True``). Counting only the tensors *saved* for backward misses what
backward itself allocates: with checkpointing that is the recomputed block's whole inside, which
exists while that block's backward runs (lesson 04).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from helpers import core, memory
from helpers.core import StepConfig, block_policy, train_step
from helpers.core.step import microbatch_loss
from helpers.lessons.capstone.runs import (
    GUIDE_COMBINATIONS,
    Combination,
    RankPeaks,
    RunSpec,
    batches,
    combination,
    initial_state,
    probe_pipeline_memory,
)
from helpers.pipeline.schedules import make_schedule
from helpers.pipeline.split import balanced_bounds, stage_forward, stage_modules


def stage_bounds(spec: RunSpec, combo: Combination) -> list[tuple[int, int]]:
    """Layer ranges of each process: all layers for one process, else the pipeline's split
    (balanced by parameters, exactly as the pipeline job plans it)."""
    n_layers = spec.model.n_layer + 2
    if not combo.pipeline:
        return [(0, n_layers)]
    return balanced_bounds(core.GPT(spec.model), spec.stages)


def _model(spec: RunSpec) -> core.GPT:
    model = core.GPT(spec.model)
    model.load_state_dict(initial_state(spec))
    return model


def _check_batch(spec: RunSpec, x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.shape[0] != spec.train.batch_size:
        raise ValueError(f"x and y must both be ({spec.train.batch_size}, T), got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")


@dataclass(frozen=True)
class StepLedger(memory.Ledger):
    """A ledger whose ``activations`` is the step's measured live peak without the gradients,
    and whose ``peak`` is what the device must hold at the step's highest point: parameters +
    optimiser state + the live peak *with* the gradients as they appear and the optimiser
    step's temporaries (at most ``total``; below it where the activations peak before most
    gradients exist)."""

    peak: int = 0


def single_step_peaks(spec: RunSpec, combo: Combination, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """Peak live tensor bytes of a single-process combination's training step -- the core
    step, forward, backward, clipping and AdamW -- without and with the parameter gradients.
    Measured on the second step, when AdamW's state already exists (as in every later step)."""
    model = _model(spec)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.train.lr, weight_decay=0.0)
    config = StepConfig(autocast_dtype=torch.bfloat16 if combo.amp else None,
                        checkpoint=block_policy(combo.checkpoint), clip=spec.train.clip,
                        n_microbatches=spec.m if combo.accumulate else 1)
    train_step(model, opt, (x, y), config)  # creates AdamW's moments
    with memory.track_live_tensors(model) as tracker:
        train_step(model, opt, (x, y), config)
    return tracker.log.peak_bytes(), tracker.log.peak_bytes(include_grads=True)


def saved_activation_peaks(spec: RunSpec, combo: Combination, x: torch.Tensor, y: torch.Tensor) -> list[int]:
    """Per process: bytes one micro-batch's forward *saves* for backward (saved-tensor hooks)
    times the most micro-batches the schedule keeps in flight there -- what the tensors kept
    between forward and backward amount to, without backward's own allocations."""
    _check_batch(spec, x, y)
    bounds = stage_bounds(spec, combo)
    S = len(bounds)
    m = spec.m if (combo.pipeline or combo.accumulate) else 1
    inflight = make_schedule(spec.schedule, S, m).peak_in_flight() if combo.pipeline else [1]
    xm, ym, weight = core.microbatches(x, y, m)[0]  # the first (largest) micro-batch
    stages = stage_modules(_model(spec), bounds)
    dtype = torch.bfloat16 if combo.amp else None
    out, h = [], xm
    for s, stage in enumerate(stages):
        inp = h.detach().requires_grad_(True) if s else h
        with memory.record_saved_tensors(stage) as log:
            h = stage_forward(stage, inp, checkpoint=combo.checkpoint, autocast_dtype=dtype)
            if s == S - 1:
                microbatch_loss(h, ym, weight)
        out.append(inflight[s] * log.total_bytes)
    return out


def stage_ledgers(spec: RunSpec, combo: Combination, x: torch.Tensor, y: torch.Tensor,
                  rank_peaks: RankPeaks | None = None) -> list[StepLedger]:
    """The memory each process holds in one training step of ``combo`` on the batch ``(x, y)``.

    Parameters, gradients and AdamW state are measured on the stage's modules. ``activations``
    is the step's measured live peak without gradients, ``peak`` the device's highest point
    (see :class:`StepLedger`): for one process :func:`single_step_peaks`; for a pipeline the
    ranks' own measurements (``rank_peaks``)."""
    _check_batch(spec, x, y)
    bounds = stage_bounds(spec, combo)
    if combo.pipeline:
        if rank_peaks is None or len(rank_peaks.live) != len(bounds):
            raise ValueError(f"pipelined combination {combo.name!r}: pass rank_peaks, the {len(bounds)} "
                             "ranks' measured peaks (RankPeaks of a measure_memory probe)")
        peaks = list(zip(rank_peaks.live, rank_peaks.with_grads, strict=True))
    else:
        peaks = [single_step_peaks(spec, combo, x, y)]
    model = _model(spec)
    ledgers = []
    for stage, (live, with_grads) in zip(stage_modules(model, bounds), peaks, strict=True):
        params = list(stage.parameters())
        for p in params:
            p.grad = torch.zeros_like(p)
        opt = torch.optim.AdamW(params, lr=spec.train.lr, weight_decay=0.0)
        opt.step()  # creates AdamW's two moments (and a step counter per tensor)
        param_b, opt_b = memory.param_bytes(stage), memory.optimizer_state_bytes(opt)
        ledgers.append(StepLedger(parameters=param_b, gradients=memory.grad_bytes(stage),
                                  optimizer_state=opt_b, activations=live, peak=param_b + opt_b + with_grads))
    return ledgers


def all_ledgers(task: core.CharTask, spec: RunSpec, names: Sequence[str] = GUIDE_COMBINATIONS,
                rank_peaks: Mapping[str, RankPeaks] | None = None) -> dict[str, list[memory.Ledger]]:
    """:func:`stage_ledgers` of every combination on the run's first batch. Pipelined
    combinations use ``rank_peaks`` (from :func:`~helpers.lessons.capstone.run_combinations`);
    missing ones are measured by a one-step probe on real processes."""
    x, y = batches(task, replace(spec, train=replace(spec.train, steps=1)))[0]
    peaks = dict(rank_peaks or {})
    missing = [n for n in names if combination(n).pipeline and n not in peaks]
    if missing:
        peaks.update(probe_pipeline_memory(task, spec, missing))
    return {n: stage_ledgers(spec, combination(n), x, y, peaks.get(n)) for n in names}


def peak_bytes(ledgers: Sequence[memory.Ledger]) -> int:
    """What the busiest process of a combination must hold: its measured step peak
    (:class:`StepLedger`), or for a plain ledger the sum of its parts."""
    return max(getattr(led, "peak", 0) or led.total for led in ledgers)
