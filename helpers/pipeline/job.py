"""What a pipeline run does (:class:`PipelineJob`) and what it returns (:class:`RankResult`,
:class:`PipelineRun`), with the ingredients every executor builds from a job: the model, the
optimiser, the LR scheduler and the core step's options.

A job carries the model configuration, its initial weights and the batches for every step, so
each rank can rebuild exactly the same model and data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from helpers import core, seeds, validate
from helpers.core import LRSchedule, StepConfig
from helpers.core.step import microbatch_sizes
from helpers.pipeline.schedules import (
    SCHEDULES,
    SPLIT_BACKWARD,
    Action,
    PipelineSchedule,
    chunks_of,
    make_schedule,
)
from helpers.pipeline.simulate import Timeline
from helpers.pipeline.split import balanced_bounds, check_bounds, param_names, stage_modules

EXECUTOR_NAMES = ("course", "torch")
#: schedules each executor runs (``dualpipev`` is torch.distributed.pipelining's only)
EXECUTOR_SCHEDULES = {"course": SCHEDULES, "torch": ("gpipe", "1f1b", "interleaved", "zbv", "dualpipev")}
JOB_SCHEDULES = (*SCHEDULES, "dualpipev")
OPTIMIZERS = ("adamw", "sgd")
FAULT_MODES = ("raise", "exit", "hang")


@dataclass(frozen=True)
class Fault:
    """Inject a failure into a run (to see how the launcher reports it)."""

    rank: int
    """The rank that fails."""
    step: int = 0
    """The optimiser step at which it fails."""
    action: Action | None = None
    """The schedule action at which it fails; None: at the start of the step."""
    mode: str = "raise"
    """'raise' an exception, 'exit' the process without a word, or 'hang' (sleep until the
    others time out)."""

    def __post_init__(self) -> None:
        if self.mode not in FAULT_MODES:
            raise ValueError(f"fault mode must be one of {FAULT_MODES}, got {self.mode!r}")


@dataclass(frozen=True)
class PipelineJob:
    """One pipeline training run: ``len(batches)`` optimiser steps of ``schedule`` with
    ``n_microbatches`` (m) micro-batches and ``n_chunks`` (v) chunks per rank. The training
    options (``amp``, ``checkpoint``, ``lr_schedule``, ``clip``) are the core step's
    (:func:`step_config`); the course executor and :func:`reference_run` honour them all."""

    config: core.GPTConfig
    """The model's sizes."""
    state: dict[str, torch.Tensor]
    """The initial weights (every rank loads them, then keeps its stages)."""
    batches: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    """One (x, y) batch per optimiser step."""
    schedule: str = "1f1b"
    """One of ``JOB_SCHEDULES``: 'gpipe', '1f1b', 'interleaved', 'zbh1', 'zbv' (course and
    torch executors, except 'zbh1': course only) or 'dualpipev' (torch only)."""
    n_microbatches: int = 4
    """m: micro-batches per step (the batch is split by ``Tensor.tensor_split``)."""
    n_chunks: int = 1
    """v: model chunks (stages) per rank; more than 1 only for 'interleaved' ('zbv' and
    'dualpipev' always have 2: pass 1 or 2)."""
    bounds: tuple[tuple[int, int], ...] | None = None
    """Stage boundaries over ``model.layers()`` (p * v stages); None: balanced by parameters."""
    executor: str = "course"
    """'course' (:mod:`helpers.pipeline.runtime`) or 'torch' (``torch.distributed.pipelining``)."""
    optimizer: str = "adamw"
    """'adamw' (weight decay 0) or 'sgd'."""
    lr: float = 3e-3
    """Base learning rate."""
    record: bool = True
    """Keep a timestamp per action (the measured timeline; course executor)."""
    measure_memory: bool = False
    """Count the bytes each forward saves for backward and their peak per stage, and track the
    live tensor bytes of the whole step (lesson 04's tracker): its peak per rank."""
    return_state: bool = True
    """Return logits and gradients of step 0 and the final parameters (equivalence check)."""
    fault: Fault | None = None
    """A failure to inject, or None."""
    name: str = ""
    """A label for tables."""
    amp: bool = False
    """bf16 autocast inside every stage (lesson 03)."""
    checkpoint: bool = False
    """Every transformer block of a stage recomputed in backward (``torch.utils.checkpoint``)."""
    lr_schedule: LRSchedule | None = None
    """Factors multiplying ``lr`` at each step (``LRSchedule.to_torch`` over the job's steps)."""
    clip: float | None = None
    """Clip the gradient norm of the *whole model* (all ranks: one ``all_reduce``) to this value."""
    dp: int = 1
    """Data-parallel replicas of the pipeline (world size = pipeline ranks x dp; course executor)."""
    save_dir: str | None = None
    """Directory for the pipelined run's checkpoints (:mod:`helpers.pipeline.resume`)."""
    save_every: int = 0
    """Save after every ``save_every`` steps (0: never)."""
    resume: bool = False
    """Start from the last complete checkpoint in ``save_dir``."""
    seed: int = 0
    """Each rank seeds its random stream (dropout) with ``seed + global rank`` at the start."""

    def __post_init__(self) -> None:
        validate.choice("schedule", self.schedule, JOB_SCHEDULES)
        validate.choice("executor", self.executor, EXECUTOR_NAMES)
        if self.schedule not in EXECUTOR_SCHEDULES[self.executor]:
            raise ValueError(f"executor={self.executor!r} runs schedules {EXECUTOR_SCHEDULES[self.executor]}, "
                             f"got {self.schedule!r}")
        validate.choice("optimizer", self.optimizer, OPTIMIZERS)
        validate.positive_int("n_microbatches", self.n_microbatches)
        validate.positive_int("n_chunks", self.n_chunks)
        validate.positive_int("dp", self.dp)
        fixed = 2 if self.schedule in ("zbv", "dualpipev") else 1
        if self.schedule != "interleaved" and self.n_chunks not in (1, fixed):
            raise ValueError(f"n_chunks={self.n_chunks}: {self.schedule!r} uses {fixed} chunk(s) per "
                             "rank; only 'interleaved' takes other values")
        self._check_training_options()
        self._check_batches()

    def _check_training_options(self) -> None:
        validate.boolean("amp", self.amp)
        validate.boolean("checkpoint", self.checkpoint)
        if self.lr_schedule is not None and not isinstance(self.lr_schedule, LRSchedule):
            raise TypeError(f"lr_schedule must be a helpers.core.LRSchedule or None, got {self.lr_schedule!r}")
        if self.clip is not None and (isinstance(self.clip, bool) or not isinstance(self.clip, (int, float))
                                      or not math.isfinite(self.clip) or not self.clip > 0):
            raise ValueError(f"clip must be None or a number > 0, got {self.clip!r}")
        extras = [n for n in ("amp", "checkpoint", "lr_schedule", "clip", "save_dir", "resume")
                  if getattr(self, n) not in (None, False)] + (["dp"] if self.dp > 1 else [])
        if self.executor == "torch" and extras:
            raise ValueError(f"executor='torch' runs plain fp32 steps; {', '.join(extras)} need "
                             "executor='course'")
        if self.checkpoint and self.schedule in SPLIT_BACKWARD:
            raise ValueError(f"checkpoint=True needs a schedule with a whole backward: {self.schedule!r} "
                             "defers the weight gradients, whose notes keep every linear layer's input "
                             "until W -- which undoes what checkpointing saves")
        validate.integer("save_every", self.save_every, 0)
        validate.boolean("resume", self.resume)
        if (self.save_every or self.resume) and self.save_dir is None:
            raise ValueError("save_every and resume need save_dir (the checkpoint directory)")

    def _check_batches(self) -> None:
        if not self.batches:
            raise ValueError("batches must hold at least one (x, y) pair (one per step)")
        for x, y in self.batches:
            if x.shape != y.shape or x.ndim != 2:
                raise ValueError(f"each batch must be (x, y) of equal shape (B, T), got "
                                 f"{tuple(x.shape)} and {tuple(y.shape)}")
            microbatch_sizes(x.shape[0], self.n_microbatches)
            if self.executor == "torch" and x.shape[0] % self.n_microbatches:
                raise ValueError(f"executor='torch' needs the batch size divisible by m: batch "
                                 f"{x.shape[0]}, m={self.n_microbatches} (torch averages micro-batch "
                                 "losses with equal weights); executor='course' handles uneven splits")

    @property
    def n_layers(self) -> int:
        return self.config.n_layer + 2

    @property
    def chunks(self) -> int:
        """Model chunks per rank (v)."""
        return 2 if self.schedule == "dualpipev" else chunks_of(self.schedule, self.n_chunks)

    def schedule_for(self, pp: int) -> PipelineSchedule:
        """The schedule on ``pp`` pipeline ranks (for 'dualpipev': its placement, no actions --
        torch builds its order)."""
        if self.schedule == "dualpipev":
            return PipelineSchedule("dualpipev", pp, self.n_microbatches, 2, tuple(() for _ in range(pp)),
                                    placement="v", split_backward=True)
        return make_schedule(self.schedule, pp, self.n_microbatches, self.n_chunks)

    def plan(self, world: int) -> tuple[PipelineSchedule, list[tuple[int, int]]]:
        """The schedule (of one replica's ``world // dp`` pipeline ranks) and the stage bounds
        for ``world`` ranks; raises if they don't fit."""
        validate.positive_int("world size", world)
        if world % self.dp:
            raise ValueError(f"world size {world} is not a multiple of dp={self.dp}")
        pp = world // self.dp
        n_stages = pp * self.chunks
        if self.bounds is not None and len(self.bounds) != n_stages:
            raise ValueError(
                f"world size {world} does not match the job's {len(self.bounds)} stages: need "
                f"world size / dp x v = stages ({world} / {self.dp} x {self.chunks} = {n_stages})")
        if self.batches[0][0].shape[0] < self.dp * self.n_microbatches:
            raise ValueError(f"batch of {self.batches[0][0].shape[0]} rows cannot feed dp={self.dp} replicas "
                             f"x m={self.n_microbatches} micro-batches")
        if self.schedule == "dualpipev" and self.n_microbatches < 2 * pp:
            raise ValueError(f"dualpipev needs at least as many micro-batches as stages: "
                             f"m={self.n_microbatches} < 2 x {pp}")
        sched = self.schedule_for(pp)
        f = self.fault
        if f is not None and not (0 <= f.rank < world):
            raise ValueError(f"fault rank {f.rank} is not a rank of a world of size {world}")
        if f is not None and f.action is not None and f.action not in sched.ranks[f.rank % pp]:
            raise ValueError(f"fault action {f.action} is not one of rank {f.rank}'s actions")
        if f is not None and not 0 <= f.step < len(self.batches):
            raise ValueError(f"fault step {f.step} is not in 0..{len(self.batches) - 1}")
        if self.bounds is None:
            bounds = balanced_bounds(build_model(self), n_stages)
        else:
            bounds = check_bounds(self.bounds, self.n_layers)
        return sched, bounds


@dataclass
class RankResult:
    """What one rank returns for one job."""

    rank: int
    stages: list[int]
    losses: list[float] = field(default_factory=list)  # full-batch loss per step (last stage)
    logits: torch.Tensor | None = None  # step 0, last stage
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # step 0, full-model names
    params: dict[str, torch.Tensor] = field(default_factory=dict)  # after the last step
    starts: list[list[float]] = field(default_factory=list)  # per step, per action (s after origin)
    ends: list[list[float]] = field(default_factory=list)
    sent: list[list[float]] = field(default_factory=list)  # per step, per action: computing done, message posted
    origins: list[float] = field(default_factory=list)  # per step: time.perf_counter() after the barrier
    host: str = ""  # where the rank ran (perf_counter is one clock for all processes of a host)
    step_times: list[float] = field(default_factory=list)  # wall seconds per step
    cpu_times: list[float] = field(default_factory=list)  # this process's CPU seconds per step
    act_bytes: dict[int, int] = field(default_factory=dict)  # stage -> bytes one mb saves
    act_peak: dict[int, int] = field(default_factory=dict)  # stage -> peak live bytes
    rank_act_peak: int = 0  # peak saved-activation bytes over all the rank's stages
    live_peak: int = 0  # peak live tensor bytes of the step (grads excluded; measure_memory)
    live_peak_with_grads: int = 0  # the same with gradients and the optimiser step's temporaries
    backend: str = ""
    device: str = ""
    replica: int = 0  # which data-parallel replica (0 without data parallelism)
    messages: dict[str, int] = field(default_factory=dict)  # sent/received in the last step


@dataclass
class PipelineRun:
    """The merged result of one job: ``ranks`` are replica 0's pipeline ranks in order,
    ``replicas`` the other replicas' (data parallelism)."""

    job: PipelineJob
    schedule: PipelineSchedule
    bounds: list[tuple[int, int]]
    ranks: list[RankResult]
    replicas: list[list[RankResult]] = field(default_factory=list)

    @property
    def last(self) -> RankResult:
        return self.ranks[self.schedule.rank_of(self.schedule.n_stages - 1)]

    @property
    def losses(self) -> list[float]:
        return self.last.losses

    @property
    def logits(self) -> torch.Tensor | None:
        """Step 0's logits of the whole batch (the replicas' rows in order)."""
        last = self.schedule.rank_of(self.schedule.n_stages - 1)
        parts = [self.last.logits] + [rep[last].logits for rep in self.replicas]
        return None if parts[0] is None else torch.cat(parts)

    @property
    def grads(self) -> dict[str, torch.Tensor]:
        return {k: v for r in self.ranks for k, v in r.grads.items()}

    @property
    def params(self) -> dict[str, torch.Tensor]:
        return {k: v for r in self.ranks for k, v in r.params.items()}

    def sent_times(self, step: int = -1) -> list[list[float]]:
        """Per rank and action: when its computing ended and its message (if any) was posted,
        on :meth:`timeline`'s time axis."""
        tl_shift = self._shift(step)
        return [[t + d for t in r.sent[step]] for r, d in zip(self.ranks, tl_shift, strict=True)]

    def _shift(self, step: int) -> list[float]:
        if len({r.host for r in self.ranks}) == 1 and all(r.origins for r in self.ranks):
            # one machine: one monotonic clock, so put every rank on rank 0's time axis (the
            # barrier releases the ranks some microseconds apart)
            first = min(r.origins[step] for r in self.ranks)
            return [r.origins[step] - first for r in self.ranks]
        return [0.0] * len(self.ranks)

    def timeline(self, step: int = -1) -> Timeline:
        """The measured timeline of one step (seconds from the first rank's release from the
        step's barrier; on several hosts each rank's own release, whose clocks differ)."""
        if not self.job.record or self.job.executor != "course":
            raise ValueError("no timeline: run the job with executor='course' and record=True")
        shift = self._shift(step)
        return Timeline(self.schedule, [[t + d for t in r.starts[step]] for r, d in zip(self.ranks, shift, strict=True)],
                        [[t + d for t in r.ends[step]] for r, d in zip(self.ranks, shift, strict=True)],
                        source="measured")

    @property
    def step_times(self) -> list[float]:
        """Per step, the slowest rank's wall time (seconds), over all replicas."""
        every = self.ranks + [r for rep in self.replicas for r in rep]
        return [max(ts) for ts in zip(*(r.step_times for r in every), strict=True)]

    @property
    def act_bytes(self) -> list[int]:
        """Per stage: bytes one micro-batch's forward saves for backward (measure_memory=True)."""
        merged = {s: b for r in self.ranks for s, b in r.act_bytes.items()}
        return [merged[s] for s in range(self.schedule.n_stages)]

    @property
    def live_peak(self) -> list[int]:
        """Per pipeline rank: the peak of live tensor bytes over the step -- saved activations,
        temporaries, recomputed blocks, message buffers; parameter gradients excluded
        (:class:`helpers.memory.LiveTensorTracker`, measure_memory=True)."""
        return [r.live_peak for r in self.ranks]

    @property
    def live_peak_with_grads(self) -> list[int]:
        """Per pipeline rank: :attr:`live_peak` with the parameter gradients counted as they
        appear and the optimiser step's temporaries (everything beyond parameters and the
        optimiser state that existed before the step)."""
        return [r.live_peak_with_grads for r in self.ranks]

    @property
    def act_peak(self) -> list[int]:
        """Per stage: the peak of live saved-activation bytes during a step."""
        merged = {s: b for r in self.ranks for s, b in r.act_peak.items()}
        return [merged[s] for s in range(self.schedule.n_stages)]


def make_optimizer(job: PipelineJob, params: Sequence[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if job.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=job.lr, weight_decay=0.0)
    return torch.optim.SGD(params, lr=job.lr)


def make_lr_scheduler(job: PipelineJob, optimizer: torch.optim.Optimizer
                      ) -> torch.optim.lr_scheduler.LambdaLR | None:
    """``job.lr_schedule`` over the job's steps as a torch scheduler (None without a schedule)."""
    return None if job.lr_schedule is None else job.lr_schedule.to_torch(optimizer, len(job.batches))


def autocast_dtype(job: PipelineJob, device: torch.device | str = "cpu") -> torch.dtype | None:
    """The autocast dtype of every stage's forward: bf16 when ``job.amp``, else None."""
    dev = torch.device(device)
    if job.amp and dev.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ValueError("amp=True uses bf16 autocast, which this GPU does not support (fp16 would "
                         "need one loss scaler shared by all stages)")
    return torch.bfloat16 if job.amp else None


def step_config(job: PipelineJob, device: torch.device | str = "cpu", microbatched: bool = True) -> StepConfig:
    """The core step's options of ``job`` (``microbatched=False``: one full-batch step;
    ``True``: all ``m x dp`` micro-batches of all replicas, accumulated in one process)."""
    return StepConfig(autocast_dtype=autocast_dtype(job, device), checkpoint=core.block_policy(job.checkpoint),
                      clip=job.clip, n_microbatches=job.n_microbatches * job.dp if microbatched else 1)


@dataclass
class RankStages:
    """The stages one rank holds: modules on its device and their parameters' full-model names."""

    schedule: PipelineSchedule
    bounds: list[tuple[int, int]]
    mods: dict[int, torch.nn.Module]
    names: dict[int, dict[str, str]]

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for s in sorted(self.mods) for p in self.mods[s].parameters()]

    def copies(self, get: Any) -> dict[str, torch.Tensor]:
        """``get(p)`` of every parameter, copied to CPU, under the full model's names."""
        return {self.names[s][local]: get(p).detach().cpu().clone()
                for s, mod in self.mods.items() for local, p in mod.named_parameters()}


def rank_stages(job: PipelineJob, pp: int, rank: int, device: torch.device | str) -> RankStages:
    """Build the model (on CPU, from the job's weights) and keep pipeline rank ``rank``'s stages
    (of ``pp``) on ``device``."""
    sched, bounds = job.plan(pp * job.dp)
    model = build_model(job)
    mods, names = {}, {}
    for s, mod in enumerate(stage_modules(model, bounds)):
        if sched.rank_of(s) == rank:
            names[s] = param_names(model, mod)
            mods[s] = mod.to(device)
    return RankStages(sched, bounds, mods, names)


def build_model(job: PipelineJob, device: torch.device | str = "cpu") -> core.GPT:
    model = core.GPT(job.config)
    model.load_state_dict(job.state)
    return model.to(device).train()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the previous number."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_job(schedule: str = "1f1b", n_microbatches: int = 4, n_chunks: int = 1, *, n_layer: int = 2,
             n_embd: int = 32, n_head: int = 4, block_size: int = 16, batch_size: int = 8,
             steps: int = 2, seed: int | None = None, attention: str = "manual",
             dropout: float = 0.0, **kwargs: Any) -> PipelineJob:
    """A job on the course task: a fresh GPT (seeded) and ``steps`` random batches."""
    seed = seeds.resolve(seed, 0)
    task = core.char_task()
    cfg = task.config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, block_size=block_size,
                      attention=attention, dropout=dropout)
    torch.manual_seed(seed)
    state = {k: t.clone() for k, t in core.GPT(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(seed + 1)
    batches = tuple(task.batch(batch_size, block_size, g) for _ in range(steps))
    return PipelineJob(config=cfg, state=state, batches=batches, schedule=schedule,
                       n_microbatches=n_microbatches, n_chunks=n_chunks,
                       **kwargs)


def with_(job: PipelineJob, steps: int | None = None, **changes: Any) -> PipelineJob:
    """A copy of ``job`` with some fields changed (validated again); ``steps`` keeps only the
    first ``steps`` batches."""
    if steps is not None:
        validate.integer("steps", steps, 1, len(job.batches))
        changes["batches"] = job.batches[:steps]
    return replace(job, **changes)
