"""The course's own pipeline executor: runs a schedule on real processes.

Each rank holds its stages and walks its action list (:mod:`helpers.pipeline.schedules`):

- ``F(i, s)``: take micro-batch ``i``'s input (token ids on stage 0, else the activation received
  from the previous stage), run the stage, and send the output on (the last stage computes the
  loss instead, weighted by the micro-batch's share of the batch);
- ``B(i, s)``: backpropagate the gradient received from the next stage (the last stage starts
  from its loss) through the saved graph, and send the input's gradient back.

Gradients accumulate in ``.grad`` over the micro-batches; after the last action every rank steps
its optimiser. Point-to-point messages use ``torch.distributed.isend``/``irecv`` (gloo on CPU,
NCCL on GPU). Each direction between two ranks, for activations and for gradients separately,
is its own process group ("channel"); a receiver posts receives in the order the sender sends,
so no two messages can be confused even where tags are ignored (NCCL), and sends never wait for
the receiver. Every wait is bounded by the process group's timeout.

Training options of the job (lesson 08): each stage's forward runs under bf16 autocast
(``amp``) with its transformer blocks checkpointed (``checkpoint``); before the optimiser step
the gradients are clipped by the norm of the *whole* model (``clip``: one ``all_reduce`` of the
ranks' squared norms), and after it the learning-rate schedule steps (``lr_schedule``).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from helpers.core.checkpoint import apply_checkpointing, block_policy
from helpers.core.step import finish_step, forward, microbatch_loss, microbatches
from helpers.memory import record_saved_tensors
from helpers.pipeline.job import (
    PipelineJob,
    RankResult,
    autocast_dtype,
    make_lr_scheduler,
    make_optimizer,
    rank_stages,
)
from helpers.pipeline.schedules import BACKWARD, FORWARD, PipelineSchedule

Channel = tuple[int, int, str]  # (source rank, destination rank, "act" | "grad")


def channel_groups(world: int) -> dict[Channel, Any]:
    """One process group per direction and kind between ring neighbours (all ranks call this)."""
    groups: dict[Channel, Any] = {}
    if world == 1:
        return groups
    for r in range(world):
        nxt = (r + 1) % world
        for chan in ((r, nxt, "act"), (nxt, r, "grad")):
            if chan not in groups:
                groups[chan] = dist.new_group(sorted({chan[0], chan[1]}))
    if world == 2:  # the wrap-around channels (used by interleaved) are distinct here too
        for chan in ((1, 0, "act"), (0, 1, "grad")):
            if chan not in groups:
                groups[chan] = dist.new_group([0, 1])
    return groups


def message_plan(sched: PipelineSchedule) -> tuple[dict[Channel, list[tuple[int, int]]],
                                           dict[tuple[str, int, int], tuple[Channel, int]]]:
    """Every message of one step, per channel in the order its sender sends them.

    Returns ``(channels, index)``: ``channels[c]`` lists (micro-batch, receiving stage);
    ``index[(kind, mb, stage)]`` gives the channel and sequence number of a message."""
    S = sched.n_stages
    chans: dict[Channel, list[tuple[int, int]]] = defaultdict(list)
    index: dict[tuple[str, int, int], tuple[Channel, int]] = {}
    for r, acts in enumerate(sched.ranks):
        for a in acts:
            if a.kind == FORWARD and a.stage < S - 1:
                kind, to = "act", a.stage + 1
            elif a.kind == BACKWARD and a.stage > 0:
                kind, to = "grad", a.stage - 1
            else:
                continue
            dst = sched.rank_of(to)
            if dst == r:
                continue  # stays on this rank (p = 1)
            chan = (r, dst, kind)
            index[(kind, a.mb, to)] = (chan, len(chans[chan]))
            chans[chan].append((a.mb, to))
    return dict(chans), index


class Mailbox:
    """Sends and receives one step's activations and gradients for one rank.

    Receives are posted ``lookahead`` messages ahead of need (in each channel's order), so a
    message can flow as soon as it is sent instead of waiting for the receiver to ask for it
    (gloo and NCCL both hand over data once the receive is posted)."""

    def __init__(self, ctx: Any, sched: PipelineSchedule, shape_of: Any, dtype: torch.dtype,
                 lookahead: int = 1) -> None:
        self.rank, self.device, self.timeout = ctx.rank, ctx.device, ctx.timeout
        if "channels" not in ctx.cache:
            ctx.cache["channels"] = channel_groups(ctx.world)
        self.groups = ctx.cache["channels"]
        self.sched = sched
        self.plan, self.index = message_plan(sched)
        self.shape_of, self.dtype, self.lookahead = shape_of, dtype, lookahead
        self.local: dict[tuple[str, int, int], torch.Tensor] = {}
        self.posted: dict[Channel, int] = defaultdict(int)
        self.inbox: dict[tuple[Channel, int], tuple[Any, torch.Tensor]] = {}
        self.sends: list[tuple[Any, torch.Tensor, str]] = []
        for chan in self.plan:
            if chan[1] == self.rank:
                self._post(chan, lookahead - 1)

    def send(self, kind: str, mb: int, to_stage: int, tensor: torch.Tensor) -> None:
        key = (kind, mb, to_stage)
        if key not in self.index:
            self.local[key] = tensor.detach()  # same rank (p = 1): a fresh leaf, like a message
            return
        chan, seq = self.index[key]
        t = tensor.detach().contiguous()
        work = dist.isend(t, chan[1], group=self.groups[chan], tag=seq)
        self.sends.append((work, t, f"{kind} of micro-batch {mb} to rank {chan[1]}"))
        if len(self.sends) > 16:  # forget sends that have left
            self.sends = [s for s in self.sends if not s[0].is_completed()]

    def _post(self, chan: Channel, upto: int) -> None:
        """Post receives on ``chan`` up to sequence number ``upto``, in the sender's order."""
        plan = self.plan[chan]
        while self.posted[chan] <= min(upto, len(plan) - 1):
            k = self.posted[chan]
            buf = torch.empty(self.shape_of(plan[k][0]), dtype=self.dtype, device=self.device)
            work = dist.irecv(buf, chan[0], group=self.groups[chan], tag=k)
            self.inbox[(chan, k)] = (work, buf)
            self.posted[chan] += 1

    def recv(self, kind: str, mb: int, stage: int) -> torch.Tensor:
        key = (kind, mb, stage)
        if key in self.local:
            return self.local.pop(key)
        chan, seq = self.index[key]
        self._post(chan, seq + self.lookahead)
        work, buf = self.inbox.pop((chan, seq))
        self._wait(work, f"no {'activation' if kind == 'act' else 'gradient'} for micro-batch "
                         f"{mb} from rank {chan[0]}")
        return buf

    def _wait(self, work: Any, what: str) -> None:
        try:
            ok = work.wait(timedelta(seconds=self.timeout))
        except RuntimeError as exc:
            raise RuntimeError(f"{what} (rank {self.rank}): {exc}") from exc
        if ok is False:
            raise RuntimeError(f"{what} within {self.timeout:.0f} s (rank {self.rank})")

    def flush(self) -> None:
        """Wait until every send of the step has left."""
        for work, _, what in self.sends:
            self._wait(work, f"could not send {what}")
        self.sends = []
        if self.inbox:
            raise RuntimeError(f"rank {self.rank}: {len(self.inbox)} messages received but unused")


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
    weights: list[float]  # each micro-batch's share of the batch
    box: Mailbox
    meter: ActivationMeter | None
    keep_logits: bool
    stash: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    logits: dict[int, torch.Tensor] = field(default_factory=dict)
    loss_sum: float = 0.0


class RankExecutor:
    """One rank of the course executor: its stages, optimiser, and the two actions. Each stage
    runs the core step's halves on its slice of ``model.layers()``: :func:`helpers.core.step.forward`
    (the last stage adds :func:`~helpers.core.step.microbatch_loss`), ``backward`` with the
    gradient received, and :func:`~helpers.core.step.finish_step` over all ranks."""

    def __init__(self, ctx: Any, job: PipelineJob) -> None:
        self.ctx, self.job = ctx, job
        self.held = rank_stages(job, ctx.world, ctx.rank, ctx.device)
        self.sched, self.mods = self.held.schedule, self.held.mods
        self.S, self.dev = self.sched.n_stages, ctx.device
        policy = block_policy(job.checkpoint)
        self.layers = {s: apply_checkpointing(list(mod), policy) for s, mod in self.mods.items()}
        self.params = self.held.parameters()
        self.opt = make_optimizer(job, self.params)
        self.lr_sched = make_lr_scheduler(job, self.opt)
        self.dtype = autocast_dtype(job, self.dev)
        self.group = dist.group.WORLD if ctx.world > 1 else None  # clip by the whole model's norm
        self.result = RankResult(rank=ctx.rank, stages=sorted(self.mods), backend=ctx.backend,
                                 device=str(self.dev))

    # ------------------------------------------------------------------ the two actions
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
        st.loss_sum += loss.item()
        if st.keep_logits:
            st.logits[mb] = out.detach().clone()
        return loss

    def backward(self, st: StepState, mb: int, s: int) -> float:
        """B(mb, s); returns the time it started computing (after its gradient arrived)."""
        inp, out = st.stash.pop((mb, s))
        grad = None if s == self.S - 1 else st.box.recv("grad", mb, s)
        start = time.perf_counter()
        torch.autograd.backward(out, grad)  # the last stage's out is its (scalar) loss
        if s > 0:
            st.box.send("grad", mb, s - 1, inp.grad)
        if st.meter is not None:
            st.meter.free(mb, s)
        return start

    # ------------------------------------------------------------------ one step
    def step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        job, ctx, res = self.job, self.ctx, self.result
        parts = microbatches(x.to(self.dev), y.to(self.dev), job.n_microbatches)
        sizes = [len(xm) for xm, _, _ in parts]
        T, C = x.shape[1], job.config.n_embd
        st = StepState(xs=tuple(p[0] for p in parts), ys=tuple(p[1] for p in parts),
                       weights=[w for _, _, w in parts],
                       box=Mailbox(ctx, self.sched, lambda mb: (sizes[mb], T, C), torch.float32),
                       meter=ActivationMeter(sorted(self.mods)) if job.measure_memory else None,
                       keep_logits=step == 0 and job.return_state)
        sync = self.dev.type == "cuda"
        starts, ends = [], []
        ctx.set_action(step, "barrier")
        dist.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        for i, a in enumerate(self.sched.ranks[ctx.rank]):
            ctx.set_action(step, a.kind, a.mb, a.stage)
            _maybe_fail(job, ctx.rank, step, i, a)
            run = self.forward if a.kind == FORWARD else self.backward
            start = run(st, a.mb, a.stage)
            if job.record:
                if sync:
                    torch.cuda.synchronize(self.dev)
                starts.append(start - t0)
                ends.append(time.perf_counter() - t0)
        ctx.set_action(step, "flush sends")
        st.box.flush()
        if st.stash:
            raise RuntimeError(f"rank {ctx.rank}: {len(st.stash)} forwards had no backward")
        if st.keep_logits:
            res.grads = self.held.copies(lambda p: p.grad)
            if self.S - 1 in self.mods:
                res.logits = torch.cat([st.logits[i] for i in range(job.n_microbatches)]).cpu()
        ctx.set_action(step, "optimizer step")
        finish_step(self.opt, job.clip, lr_scheduler=self.lr_sched, group=self.group)
        self.opt.zero_grad(set_to_none=True)
        if sync:
            torch.cuda.synchronize(self.dev)
        res.step_times.append(time.perf_counter() - t0)
        res.cpu_times.append(time.process_time() - c0)
        if self.S - 1 in self.mods:
            res.losses.append(st.loss_sum)
        if job.record:
            res.starts.append(starts)
            res.ends.append(ends)
        if st.meter is not None:
            res.act_bytes = {s: st.meter.per_mb[(0, s)] for s in self.mods}
            res.act_peak, res.rank_act_peak = dict(st.meter.peak), st.meter.peak_total

def run_rank(ctx: Any, job: PipelineJob) -> RankResult:
    """Run ``job`` on this rank with the course's executor; return this rank's results."""
    ex = RankExecutor(ctx, job)
    for step, (x, y) in enumerate(job.batches):
        ex.step(step, x, y)
    if job.return_state:
        ex.result.params = ex.held.copies(lambda p: p)
    ctx.set_action(len(job.batches), "done")
    return ex.result
