"""The memory each process holds in one training step of a combination: parameters, gradients,
optimiser state and saved activations at the schedule's peak."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from helpers import core, memory
from helpers.core.step import microbatch_loss
from helpers.lessons.capstone.runs import (
    COMBINATIONS,
    Combination,
    RunSpec,
    batches,
    combination,
    initial_state,
)
from helpers.pipeline.schedules import make_schedule
from helpers.pipeline.split import balanced_bounds, stage_forward, stage_modules


# --------------------------------------------------------------------------- memory ledger
def stage_bounds(spec: RunSpec, combo: Combination) -> list[tuple[int, int]]:
    """Layer ranges of each process: all layers for one process, else the pipeline's split
    (balanced by parameters, exactly as the pipeline job plans it)."""
    n_layers = spec.model.n_layer + 2
    if not combo.pipeline:
        return [(0, n_layers)]
    return balanced_bounds(core.GPT(spec.model), spec.stages)


def stage_ledgers(spec: RunSpec, combo: Combination, x: torch.Tensor, y: torch.Tensor
                  ) -> list[memory.Ledger]:
    """The memory each process holds in one training step of ``combo`` on the batch ``(x, y)``.

    Parameters, gradients and AdamW state are measured on the stage's modules; activations are
    the bytes one micro-batch's forward saves for backward in that stage (saved-tensor hooks,
    lesson 03) times the most micro-batches the schedule keeps in flight there (1F1B: ``p - r``
    on stage ``r``). One process = one stage holding the whole batch. Each stage runs the core
    step's forward (:func:`helpers.pipeline.split.stage_forward`) and the last adds the
    micro-batch loss, as in the pipeline's executor."""
    if x.shape != y.shape or x.shape[0] != spec.train.batch_size:
        raise ValueError(f"x and y must both be ({spec.train.batch_size}, T), got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    bounds = stage_bounds(spec, combo)
    S = len(bounds)
    m = spec.m if combo.pipeline else 1
    inflight = make_schedule(spec.schedule, S, m).peak_in_flight() if combo.pipeline else [1]
    xm, ym, weight = core.microbatches(x, y, m)[0]  # the pipeline's first (largest) micro-batch
    model = core.GPT(spec.model)
    model.load_state_dict(initial_state(spec))
    stages = stage_modules(model, bounds)
    dtype = torch.bfloat16 if combo.amp else None
    ins, outs, acts = [], [], []
    h: torch.Tensor = xm
    for s, stage in enumerate(stages):
        inp = h.detach().requires_grad_(True) if s else h
        with memory.record_saved_tensors(stage) as log:
            out = stage_forward(stage, inp, checkpoint=combo.checkpoint, autocast_dtype=dtype)
            if s == S - 1:
                out = microbatch_loss(out, ym, weight)
        ins.append(inp)
        outs.append(out)
        acts.append(log.total_bytes)
        h = out
    for s in reversed(range(S)):
        if s == S - 1:
            outs[s].backward()
        else:
            torch.autograd.backward(outs[s], ins[s + 1].grad)
    ledgers = []
    for s, stage in enumerate(stages):
        grads = sum(memory.tensor_bytes(p.grad) for p in stage.parameters() if p.grad is not None)
        opt = torch.optim.AdamW(stage.parameters(), lr=spec.train.lr, weight_decay=0.0)
        opt.step()
        ledgers.append(memory.Ledger(parameters=memory.param_bytes(stage), gradients=grads,
                                     optimizer_state=memory.optimizer_state_bytes(opt),
                                     activations=inflight[s] * acts[s]))
    return ledgers


def all_ledgers(task: core.CharTask, spec: RunSpec, names: Sequence[str] = COMBINATIONS
                ) -> dict[str, list[memory.Ledger]]:
    """:func:`stage_ledgers` of every combination on the run's first batch."""
    x, y = batches(task, replace(spec, train=replace(spec.train, steps=1)))[0]
    return {n: stage_ledgers(spec, combination(n), x, y) for n in names}


def peak_bytes(ledgers: Sequence[memory.Ledger]) -> int:
    """What the busiest process of a combination holds."""
    return max(led.total for led in ledgers)
