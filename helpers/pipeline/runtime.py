"""The course's own pipeline executor: runs a schedule on real processes.

Each rank holds its stages and walks its action list (:mod:`helpers.pipeline.schedules`):

- ``F(i, s)``: take micro-batch ``i``'s input (token ids on stage 0, else the activation received
  from the previous stage), run the stage, and send the output on (the last stage computes the
  loss instead, weighted by the micro-batch's share of the batch);
- ``B(i, s)``: backpropagate the gradient received from the next stage (the last stage starts
  from its loss) through the saved graph, and send the input's gradient back. In a
  zero-bubble schedule the linear layers leave their weight gradients to ``W(i, s)``
  (:mod:`helpers.pipeline.backward`).

Gradients accumulate in ``.grad`` over the micro-batches; after the last action every rank steps
its optimiser. Messages go through :mod:`helpers.pipeline.comm` (gloo on CPU, NCCL on GPU: one
code path; buffers sized and typed from what the stages produce; every wait bounded by the
job's timeout). The loss stays on the device until the step ends (one ``.item()`` per step).

**Pipeline x data parallel** (``job.dp`` replicas): global rank ``g`` is pipeline rank ``g % pp``
of replica ``g // pp``. Each replica runs the schedule on its share of the batch (rows split
by ``tensor_split``), every micro-batch's loss weighted by its share of the *whole* batch; the
gradients of each stage are then summed over the replicas holding it (one ``all_reduce`` per
parameter in the stage's data-parallel group), which makes them the full batch's.

Training options of the job (lesson 08): each stage's forward runs under bf16 autocast
(``amp``) with its transformer blocks checkpointed (``checkpoint``); before the optimiser step
the gradients are clipped by the norm of the *whole* model (``clip``: one ``all_reduce`` of the
ranks' squared norms over the pipeline), and after it the learning-rate schedule steps
(``lr_schedule``). With ``save_dir`` every rank saves its part of the training state
(:mod:`helpers.pipeline.resume`), and ``resume=True`` continues from the last complete save.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from helpers.core.checkpoint import apply_checkpointing, block_policy
from helpers.core.step import finish_step, forward, microbatch_loss, microbatches
from helpers.memory import record_saved_tensors, track_live_tensors
from helpers.pipeline import resume
from helpers.pipeline.backward import WeightGradStore, defer_weight_gradients, restore
from helpers.pipeline.comm import Groups, Mailbox, Meta, exchange_meta, make_groups
from helpers.pipeline.job import (
    PipelineJob,
    RankResult,
    autocast_dtype,
    make_lr_scheduler,
    make_optimizer,
    rank_stages,
)
from helpers.pipeline.schedules import BACKWARD, FORWARD, WEIGHT


def _maybe_fail(job: PipelineJob, rank: int, step: int, index: int, action: Any) -> None:
    f = job.fault
    if f is None or f.rank != rank or f.step != step:
        return
    if (f.action is None and index == 0) or f.action == action:
        if f.mode == "exit":
            os._exit(13)
        if f.mode == "hang":
            time.sleep(10**6)
        raise RuntimeError(f"injected fault at {action}")


class ActivationMeter:
    """Bytes of saved activations alive on this rank, per stage and in total (their peaks)."""

    def __init__(self, stages: list[int]) -> None:
        self.per_mb: dict[tuple[int, int], int] = {}
        self.live = dict.fromkeys(stages, 0)
        self.peak = dict.fromkeys(stages, 0)
        self.live_total = self.peak_total = 0

    def add(self, mb: int, stage: int, nbytes: int) -> None:
        self.per_mb[(mb, stage)] = nbytes
        self.live[stage] += nbytes
        self.live_total += nbytes
        self.peak[stage] = max(self.peak[stage], self.live[stage])
        self.peak_total = max(self.peak_total, self.live_total)

    def free(self, mb: int, stage: int) -> None:
        nbytes = self.per_mb[(mb, stage)]
        self.live[stage] -= nbytes
        self.live_total -= nbytes


@dataclass
class StepState:
    """What one step of one rank needs between its actions."""

    xs: tuple[torch.Tensor, ...]  # micro-batch inputs (token ids), used by stage 0
    ys: tuple[torch.Tensor, ...]  # micro-batch targets, used by the last stage
    weights: list[float]  # each micro-batch's share of the (whole) batch
    box: Mailbox
    meter: ActivationMeter | None
    keep_logits: bool
    stash: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    logits: dict[int, torch.Tensor] = field(default_factory=dict)
    loss_sum: torch.Tensor | None = None  # on the device until the step ends
    sent: float = 0.0  # when the last action finished computing (before its message left)


class RankExecutor:
    """One rank of the course executor: its stages, optimiser, and the actions. Each stage
    runs the core step's halves on its slice of ``model.layers()``: :func:`helpers.core.step.forward`
    (the last stage adds :func:`~helpers.core.step.microbatch_loss`), the backward with the
    gradient received, and :func:`~helpers.core.step.finish_step` over the pipeline."""

    def __init__(self, ctx: Any, job: PipelineJob) -> None:
        self.ctx, self.job = ctx, job
        torch.manual_seed(job.seed + ctx.rank)  # dropout: reproducible, different on every rank
        pp = ctx.world // job.dp
        key = ("groups", ctx.world, pp)
        if key not in ctx.cache:  # every rank builds the same groups at the same job
            ctx.cache[key] = make_groups(ctx.world, pp, ctx.rank)
        self.groups: Groups = ctx.cache[key]
        self.me = self.groups.pp_rank
        self.held = rank_stages(job, pp, self.me, ctx.device)
        self.sched, self.mods = self.held.schedule, self.held.mods
        self.S, self.dev = self.sched.n_stages, ctx.device
        policy = block_policy(job.checkpoint)
        self.layers = {s: apply_checkpointing(list(mod), policy) for s, mod in self.mods.items()}
        self.store = WeightGradStore()  # split backward: B leaves the linear layers' dW to W
        self.deferred = ([lin for mod in self.mods.values() for lin in defer_weight_gradients(mod, self.store)]
                         if self.sched.split_backward else [])
        self.params = self.held.parameters()
        self.opt = make_optimizer(job, self.params)
        self.lr_sched = make_lr_scheduler(job, self.opt)
        self.dtype = autocast_dtype(job, self.dev)
        self.metas: dict[int, Meta] | None = None
        self.next_step = 0
        self.result = RankResult(rank=self.me, stages=sorted(self.mods), backend=ctx.backend,
                                 device=str(self.dev), replica=self.groups.replica)

    # ------------------------------------------------------------------ the actions
    def forward(self, st: StepState, mb: int, s: int) -> float:
        """F(mb, s); returns the time it started computing (after its input arrived)."""
        inp = st.xs[mb] if s == 0 else st.box.recv("act", mb, s).requires_grad_(True)
        start = time.perf_counter()
        if st.meter is not None:
            with record_saved_tensors(self.mods[s]) as log:
                out = self._stage_forward(st, mb, s, inp)
            st.meter.add(mb, s, log.total_bytes)
        else:
            out = self._stage_forward(st, mb, s, inp)
        st.sent = time.perf_counter()  # computing done: the message leaves now
        if s < self.S - 1:
            st.box.send("act", mb, s + 1, out)
        st.stash[(mb, s)] = (inp, out)
        return start

    def _stage_forward(self, st: StepState, mb: int, s: int, inp: torch.Tensor) -> torch.Tensor:
        out = forward(self.layers[s], inp, self.dtype)
        if s < self.S - 1:
            return out
        # last stage: the loss, weighted by this micro-batch's share of the batch, so that the
        # accumulated gradients are the full batch's (also for uneven micro-batches)
        loss = microbatch_loss(out, st.ys[mb], st.weights[mb])
        # summed in float64 like the core step's Python float sum: the same additions, bit for bit
        term = loss.detach().double()
        st.loss_sum = term if st.loss_sum is None else st.loss_sum + term
        if st.keep_logits:
            st.logits[mb] = out.detach().clone()
        return loss

    def backward(self, st: StepState, mb: int, s: int) -> float:
        """B(mb, s) -- the whole backward, or only the input's gradient when split."""
        inp, out = st.stash.pop((mb, s))
        grad = None if s == self.S - 1 else st.box.recv("grad", mb, s)
        start = time.perf_counter()
        if self.sched.split_backward:  # the linear layers leave their dW for W(mb, s)
            with self.store.deferring((mb, s)):
                torch.autograd.backward(out, grad)
        else:
            torch.autograd.backward(out, grad)  # the last stage's out is its (scalar) loss
            if st.meter is not None:
                st.meter.free(mb, s)
        st.sent = time.perf_counter()
        if s > 0:
            st.box.send("grad", mb, s - 1, inp.grad)
        return start

    def weight(self, st: StepState, mb: int, s: int) -> float:
        """W(mb, s): the linear layers' weight gradients that B(mb, s) left."""
        start = time.perf_counter()
        self.store.run((mb, s))
        if st.meter is not None:
            st.meter.free(mb, s)
        st.sent = time.perf_counter()  # W sends nothing
        return start

    # ------------------------------------------------------------------ one step
    def _replica_batch(self, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        job, g = self.job, self.groups
        xs, ys = x.tensor_split(g.dp)[g.replica], y.tensor_split(g.dp)[g.replica]
        parts = microbatches(xs.to(self.dev), ys.to(self.dev), job.n_microbatches)
        return [(a, b, len(a) / len(x)) for a, b, _ in parts]  # shares of the WHOLE batch

    def _metas(self, first_input: torch.Tensor) -> dict[int, Meta]:
        if self.metas is None:
            self.ctx.set_action(self.next_step, "shapes")
            self.metas = exchange_meta(self.groups, self.sched,
                                       lambda s, x: forward(self.layers[s], x, self.dtype),
                                       first_input, self.dev, self.ctx.timeout)
        return self.metas

    def step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        job = self.job
        parts = self._replica_batch(x, y)
        metas = self._metas(parts[0][0])
        tracker = track_live_tensors(torch.nn.ModuleList(self.mods.values())) if job.measure_memory else None
        if tracker is not None:  # from the first receive buffer to the end of the optimiser step
            tracker.__enter__()
        try:
            self._step(step, parts, metas)
        finally:
            if tracker is not None:  # before zero_grad: the tracker tells gradients by p.grad
                tracker.__exit__(None, None, None)
        self.opt.zero_grad(set_to_none=True)
        if tracker is not None:
            self.result.live_peak = tracker.log.peak_bytes()
            self.result.live_peak_with_grads = tracker.log.peak_bytes(include_grads=True)

    def _step(self, step: int, parts: list, metas: dict[int, Meta]) -> None:
        job, ctx = self.job, self.ctx
        st = StepState(xs=tuple(p[0] for p in parts), ys=tuple(p[1] for p in parts),
                       weights=[w for _, _, w in parts],
                       box=Mailbox(self.groups, self.sched, [len(p[0]) for p in parts],
                                   metas, self.dev, ctx.timeout),
                       meter=ActivationMeter(sorted(self.mods)) if job.measure_memory else None,
                       keep_logits=step == 0 and job.return_state)
        sync = self.dev.type == "cuda"
        starts, ends, sent = [], [], []
        run = {FORWARD: self.forward, BACKWARD: self.backward, WEIGHT: self.weight}
        ctx.set_action(step, "barrier")
        dist.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        for i, a in enumerate(self.sched.ranks[self.me]):
            ctx.set_action(step, a.kind, a.mb, a.stage)
            _maybe_fail(job, ctx.rank, step, i, a)
            start = run[a.kind](st, a.mb, a.stage)
            if job.record:
                if sync:
                    torch.cuda.synchronize(self.dev)
                starts.append(start - t0)
                ends.append(time.perf_counter() - t0)
                sent.append(st.sent - t0)
        ctx.set_action(step, "flush sends")
        st.box.flush()
        if st.stash or self.store.pending:
            raise RuntimeError(f"rank {ctx.rank}: {len(st.stash) + len(self.store.pending)} forwards had "
                               "no (complete) backward")
        self._finish(step, st, sync, t0, c0, starts, ends, sent)  # t0: this rank's release from the barrier

    def _finish(self, step: int, st: StepState, sync: bool, t0: float, c0: float,
                starts: list[float], ends: list[float], sent: list[float]) -> None:
        job, ctx, res, g = self.job, self.ctx, self.result, self.groups
        if g.data is not None:  # sum each stage's gradients over its replicas
            ctx.set_action(step, "gradient all-reduce")
            for p in self.params:
                dist.all_reduce(p.grad, group=g.data)
        if st.keep_logits:
            res.grads = self.held.copies(lambda p: p.grad)
            if self.S - 1 in self.mods:
                res.logits = torch.cat([st.logits[i] for i in range(job.n_microbatches)]).cpu()
        ctx.set_action(step, "optimizer step")
        finish_step(self.opt, job.clip, lr_scheduler=self.lr_sched, group=g.pipeline)
        if sync:
            torch.cuda.synchronize(self.dev)
        res.step_times.append(time.perf_counter() - t0)
        res.cpu_times.append(time.process_time() - c0)
        res.messages = dict(st.box.count)
        if self.S - 1 in self.mods:
            loss = st.loss_sum
            if g.data is not None:
                dist.all_reduce(loss, group=g.data)  # the replicas' shares of the batch loss
            res.losses.append(float(loss))  # the step's one device-to-host copy
        if job.record:
            res.starts.append(starts)
            res.ends.append(ends)
            res.sent.append(sent)
            res.origins.append(t0)
            res.host = socket.gethostname()
        if st.meter is not None:
            res.act_bytes = {s: st.meter.per_mb[(0, s)] for s in self.mods}
            res.act_peak, res.rank_act_peak = dict(st.meter.peak), st.meter.peak_total
        self.next_step = step + 1
        if job.save_dir is not None and job.save_every and self.next_step % job.save_every == 0:
            ctx.set_action(step, "save checkpoint")
            resume.save(self, self.next_step)


def run_rank(ctx: Any, job: PipelineJob) -> RankResult:
    """Run ``job`` on this rank with the course's executor; return this rank's results."""
    ex = RankExecutor(ctx, job)
    if job.resume:
        ctx.set_action(0, "load checkpoint")
        resume.load(ex)
    for step in range(ex.next_step, len(job.batches)):
        x, y = job.batches[step]
        ex.step(step, x, y)
    if job.return_state:
        ex.result.params = ex.held.copies(lambda p: p)
    restore(ex.deferred)
    ctx.set_action(len(job.batches), "done")
    return ex.result
