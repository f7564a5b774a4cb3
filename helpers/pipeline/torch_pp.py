"""The same split, run by PyTorch's own ``torch.distributed.pipelining``.

Each rank wraps its stage module(s) in ``PipelineStage`` and hands them to ``ScheduleGPipe``,
``Schedule1F1B``, ``ScheduleInterleaved1F1B``, or the zero-bubble ``ScheduleZBVZeroBubble`` and
``ScheduleDualPipeV`` (two stages per rank in a V: rank ``r`` holds stages ``r`` and ``2p-1-r``;
DualPipeV also overlaps one micro-batch's forward with another's backward). The loss function is the course's mean
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
                   "interleaved": "ScheduleInterleaved1F1B", "zbv": "ScheduleZBVZeroBubble",
                   "dualpipev": "ScheduleDualPipeV"}
MULTI_STAGE = ("interleaved", "zbv", "dualpipev")  # schedules taking a list of stages


def make_torch_schedule(name: str, stages: list[Any], m: int) -> Any:
    """The ``torch.distributed.pipelining`` schedule object for our schedule ``name``."""
    from torch.distributed import pipelining as pp  # only a distributed run needs it

    cls = getattr(pp, TORCH_SCHEDULES[name])
    if name in MULTI_STAGE:
        return cls(stages, n_microbatches=m, loss_fn=lm_loss)
    return cls(stages[0], n_microbatches=m, loss_fn=lm_loss)


def run_rank(ctx: Any, job: PipelineJob) -> RankResult:
    """Run ``job`` on this rank with ``torch.distributed.pipelining``."""
    from torch.distributed.pipelining import (
        PipelineStage,  # torch's pipelining, only for executor='torch'
    )

    held = rank_stages(job, ctx.world, ctx.rank, ctx.device)  # no data parallelism here
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
            # each micro-batch's mean loss times its share of the batch, summed in float64: the
            # core step's sum, addition for addition (one device-to-host copy per step)
            share = (x.shape[0] // job.n_microbatches) / x.shape[0]
            result.losses.append(sum(torch.stack([t.detach() * share for t in losses]).double().tolist()))
    if job.return_state:
        result.params = held.copies(lambda p: p)
    ctx.set_action(len(job.batches), "done")
    return result
