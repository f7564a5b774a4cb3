"""The same split, run by PyTorch's own ``torch.distributed.pipelining``.

Each rank wraps its stage module(s) in ``PipelineStage`` and hands them to ``ScheduleGPipe``,
``Schedule1F1B`` or ``ScheduleInterleaved1F1B``. The loss function is the course's mean
cross-entropy per micro-batch; torch divides the accumulated gradients by ``m``
(``scale_grads=True``), which equals the full-batch gradient when micro-batches are equal.
Each stage module runs the core step's forward on its layers (:class:`~helpers.pipeline.split.CoreStage`)
and the update is the core step's :func:`~helpers.core.step.finish_step`.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist

from helpers.core import lm_loss
from helpers.core.step import finish_step
from helpers.pipeline.job import PipelineJob, RankResult, make_optimizer, rank_stages
from helpers.pipeline.split import CoreStage

TORCH_SCHEDULES = {"gpipe": "ScheduleGPipe", "1f1b": "Schedule1F1B",
                   "interleaved": "ScheduleInterleaved1F1B"}


def make_torch_schedule(name: str, stages: list[Any], m: int) -> Any:
    """The ``torch.distributed.pipelining`` schedule object for our schedule ``name``."""
    from torch.distributed import pipelining as pp  # only a distributed run needs it

    cls = getattr(pp, TORCH_SCHEDULES[name])
    if name == "interleaved":
        return cls(stages, n_microbatches=m, loss_fn=lm_loss)
    return cls(stages[0], n_microbatches=m, loss_fn=lm_loss)


def run_rank(ctx: Any, job: PipelineJob) -> RankResult:
    """Run ``job`` on this rank with ``torch.distributed.pipelining``."""
    from torch.distributed.pipelining import (
        PipelineStage,  # torch's pipelining, only for executor='torch'
    )

    held = rank_stages(job, ctx.world, ctx.rank, ctx.device)
    rank, S, dev, mods = ctx.rank, held.schedule.n_stages, ctx.device, held.mods
    stages = [PipelineStage(CoreStage(mods[s]), s, S, dev) for s in sorted(mods)]
    schedule = make_torch_schedule(job.schedule, stages, job.n_microbatches)
    opt = make_optimizer(job, held.parameters())
    result = RankResult(rank=rank, stages=sorted(mods), backend=ctx.backend, device=str(dev))
    has_first, has_last = 0 in mods, S - 1 in mods
    for step, (x, y) in enumerate(job.batches):
        ctx.set_action(step, "barrier")
        dist.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        ctx.set_action(step, f"torch.distributed.pipelining {TORCH_SCHEDULES[job.schedule]}.step")
        if job.fault is not None and job.fault.rank == rank and job.fault.step == step:
            raise RuntimeError("injected fault (torch executor)")
        losses: list[torch.Tensor] = []
        args = (x.to(dev),) if has_first else ()
        target = y.to(dev) if has_last else None
        out = schedule.step(*args, target=target, losses=losses if has_last else None)
        if step == 0 and job.return_state:
            result.grads = held.copies(lambda p: p.grad)
            if has_last:
                result.logits = out.detach().cpu().clone()
        ctx.set_action(step, "optimizer step")
        finish_step(opt)
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        result.step_times.append(time.perf_counter() - t0)
        result.cpu_times.append(time.process_time() - c0)
        if has_last:
            result.losses.append(float(torch.stack([t.detach() for t in losses]).mean()))
    if job.return_state:
        result.params = held.copies(lambda p: p)
    ctx.set_action(len(job.batches), "done")
    return result
