"""What a pipeline run does (:class:`PipelineJob`), what it returns (:class:`PipelineRun`), the
unsplit single-process reference, and the equivalence check between them.

A job carries the model configuration, its initial weights and the batches for every step, so
each rank can rebuild exactly the same model and data; ``run(jobs, nprocs)`` executes a list of
jobs on one set of processes (start-up is paid once) and merges the ranks' results.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from helpers import models, seeds
from helpers.gd import Schedule as LRSchedule
from helpers.pipeline.schedules import Action, Schedule, check_schedule_name, make_schedule
from helpers.pipeline.simulate import Timeline
from helpers.pipeline.split import check_bounds, partition, stage_forward

EXECUTORS = ("ours", "torch")
OPTIMIZERS = ("adamw", "sgd")
FAULT_MODES = ("raise", "exit", "hang")


@dataclass(frozen=True)
class Fault:
    """Inject a failure: rank ``rank`` fails at ``action`` of step ``step`` (``None``: at the
    start of the step). ``mode``: 'raise' an exception, 'exit' the process without a word, or
    'hang' (sleep until the others time out)."""

    rank: int
    step: int = 0
    action: Action | None = None
    mode: str = "raise"

    def __post_init__(self) -> None:
        if self.mode not in FAULT_MODES:
            raise ValueError(f"fault mode must be one of {FAULT_MODES}, got {self.mode!r}")


@dataclass(frozen=True)
class PipelineJob:
    """One pipeline training run: ``len(batches)`` optimiser steps of ``schedule`` with ``m``
    micro-batches (and ``v`` chunks per rank for 'interleaved').

    ``bounds``: stage boundaries over ``model.layers()`` (``p * v`` stages), or None to balance
    by parameter count. ``record``: keep a timestamp per action. ``measure_memory``: count the
    bytes each forward saves for backward. ``return_state``: return logits and gradients of step
    0 and the parameters after the last step (for the equivalence check).

    Training options (course executor and :func:`reference_run`; all off by default):
    ``amp``: bf16 autocast inside every stage (lesson 03); ``checkpoint``: every transformer
    block of a stage checkpointed with ``torch.utils.checkpoint`` (lesson 04); ``lr_schedule``:
    a :class:`helpers.gd.Schedule` multiplying ``lr`` at each step (``LambdaLR`` over
    ``len(batches)`` steps); ``clip``: clip the gradient norm of the *whole model* to this value
    (each rank adds its stages' squared norms, one ``all_reduce`` gives the global norm)."""

    config: models.GPTConfig
    state: dict[str, torch.Tensor]
    batches: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    schedule: str = "1f1b"
    m: int = 4
    v: int = 1
    bounds: tuple[tuple[int, int], ...] | None = None
    executor: str = "ours"
    optimizer: str = "adamw"
    lr: float = 3e-3
    record: bool = True
    measure_memory: bool = False
    return_state: bool = True
    fault: Fault | None = None
    name: str = ""
    amp: bool = False
    checkpoint: bool = False
    lr_schedule: LRSchedule | None = None
    clip: float | None = None

    def __post_init__(self) -> None:
        check_schedule_name(self.schedule)
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("m", "v"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.schedule != "interleaved" and self.v != 1:
            raise ValueError(f"v={self.v} needs schedule='interleaved'; {self.schedule!r} uses v=1")
        for name in ("amp", "checkpoint"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.lr_schedule is not None and not isinstance(self.lr_schedule, LRSchedule):
            raise TypeError(f"lr_schedule must be a helpers.gd.Schedule or None, got {self.lr_schedule!r}")
        if self.clip is not None and (isinstance(self.clip, bool) or not isinstance(self.clip, (int, float))
                                      or not self.clip > 0 or self.clip != self.clip):
            raise ValueError(f"clip must be None or a number > 0, got {self.clip!r}")
        extras = [n for n in ("amp", "checkpoint", "lr_schedule", "clip") if getattr(self, n) not in (None, False)]
        if self.executor == "torch" and extras:
            raise ValueError(f"executor='torch' runs plain fp32 steps; {', '.join(extras)} need "
                             "executor='ours'")
        if not self.batches:
            raise ValueError("batches must hold at least one (x, y) pair (one per step)")
        for x, y in self.batches:
            if x.shape != y.shape or x.ndim != 2:
                raise ValueError(f"each batch must be (x, y) of equal shape (B, T), got "
                                 f"{tuple(x.shape)} and {tuple(y.shape)}")
            split_sizes(x.shape[0], self.m)
            if self.executor == "torch" and x.shape[0] % self.m:
                raise ValueError(f"executor='torch' needs the batch size divisible by m: batch "
                                 f"{x.shape[0]}, m={self.m} (torch averages micro-batch losses "
                                 "with equal weights); executor='ours' handles uneven splits")

    @property
    def n_layers(self) -> int:
        return self.config.n_layer + 2

    def plan(self, world: int) -> tuple[Schedule, list[tuple[int, int]]]:
        """The schedule and the stage bounds for ``world`` ranks; raises if they don't fit."""
        if isinstance(world, bool) or not isinstance(world, int) or world < 1:
            raise ValueError(f"world size must be a positive int, got {world!r}")
        n_stages = world * self.v
        if self.bounds is not None and len(self.bounds) != n_stages:
            raise ValueError(
                f"world size {world} does not match the job's {len(self.bounds)} stages: "
                f"need world size x v = stages ({world} x {self.v} = {n_stages})")
        sched = make_schedule(self.schedule, world, self.m, self.v)
        f = self.fault
        if f is not None and not (0 <= f.rank < world):
            raise ValueError(f"fault rank {f.rank} is not a rank of a world of size {world}")
        if f is not None and f.action is not None and f.action not in sched.ranks[f.rank]:
            raise ValueError(f"fault action {f.action} is not one of rank {f.rank}'s actions")
        if f is not None and not 0 <= f.step < len(self.batches):
            raise ValueError(f"fault step {f.step} is not in 0..{len(self.batches) - 1}")
        if self.bounds is None:
            costs = [0.0] * self.n_layers
            for k, t in self.state.items():
                costs[_layer_of(k, self.n_layers)] += t.numel()
            bounds = partition(costs, n_stages)
        else:
            bounds = check_bounds(self.bounds, self.n_layers)
        return sched, bounds


def _layer_of(name: str, n_layers: int) -> int:
    """Index in ``model.layers()`` of a parameter name (``embed.*``, ``blocks.i.*``, ``head.*``)."""
    if name.startswith("embed."):
        return 0
    if name.startswith("blocks."):
        return 1 + int(name.split(".")[1])
    if name.startswith("head."):
        return n_layers - 1
    raise ValueError(f"parameter {name!r} is not in embed, blocks or head")


def split_sizes(batch: int, m: int) -> list[int]:
    """Micro-batch sizes for a batch of ``batch`` rows in ``m`` chunks (``torch.tensor_split``
    rule: sizes differ by at most one, larger first). Needs ``batch >= m``."""
    if batch < m:
        raise ValueError(f"a batch of {batch} rows cannot be split into m={m} micro-batches: "
                         f"need batch size >= m (uneven splits are fine: sizes differ by <= 1)")
    return [batch // m + (1 if i < batch % m else 0) for i in range(m)]


@dataclass
class RankResult:
    """What one rank returns for one job."""

    rank: int
    stages: list[int]
    losses: list[float] = field(default_factory=list)  # full-batch loss per step (last stage)
    logits: torch.Tensor | None = None  # step 0, last stage
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # step 0, full-model names
    params: dict[str, torch.Tensor] = field(default_factory=dict)  # after the last step
    starts: list[list[float]] = field(default_factory=list)  # per step, per action
    ends: list[list[float]] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)  # wall seconds per step
    cpu_times: list[float] = field(default_factory=list)  # this process's CPU seconds per step
    act_bytes: dict[int, int] = field(default_factory=dict)  # stage -> bytes one mb saves
    act_peak: dict[int, int] = field(default_factory=dict)  # stage -> peak live bytes
    rank_act_peak: int = 0  # peak live activation bytes over all the rank's stages
    backend: str = ""
    device: str = ""


@dataclass
class PipelineRun:
    """The merged result of one job on ``p`` ranks."""

    job: PipelineJob
    schedule: Schedule
    bounds: list[tuple[int, int]]
    ranks: list[RankResult]

    @property
    def last(self) -> RankResult:
        return self.ranks[self.schedule.rank_of(self.schedule.n_stages - 1)]

    @property
    def losses(self) -> list[float]:
        return self.last.losses

    @property
    def logits(self) -> torch.Tensor | None:
        return self.last.logits

    @property
    def grads(self) -> dict[str, torch.Tensor]:
        return {k: v for r in self.ranks for k, v in r.grads.items()}

    @property
    def params(self) -> dict[str, torch.Tensor]:
        return {k: v for r in self.ranks for k, v in r.params.items()}

    def timeline(self, step: int = -1) -> Timeline:
        """The measured timeline of one step (seconds; each rank's clock starts at a barrier)."""
        if not self.job.record or self.job.executor != "ours":
            raise ValueError("no timeline: run the job with executor='ours' and record=True")
        return Timeline(self.schedule, [r.starts[step] for r in self.ranks],
                        [r.ends[step] for r in self.ranks], source="measured")

    @property
    def step_times(self) -> list[float]:
        """Per step, the slowest rank's wall time (seconds)."""
        return [max(ts) for ts in zip(*(r.step_times for r in self.ranks), strict=True)]

    @property
    def act_bytes(self) -> list[int]:
        """Per stage: bytes one micro-batch's forward saves for backward (measure_memory=True)."""
        merged = {s: b for r in self.ranks for s, b in r.act_bytes.items()}
        return [merged[s] for s in range(self.schedule.n_stages)]

    @property
    def act_peak(self) -> list[int]:
        """Per stage: the peak of live saved-activation bytes during a step."""
        merged = {s: b for r in self.ranks for s, b in r.act_peak.items()}
        return [merged[s] for s in range(self.schedule.n_stages)]


@dataclass
class Reference:
    """The unsplit model trained on the same batches in one process."""

    losses: list[float]
    logits: torch.Tensor
    grads: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor]


def make_optimizer(job: PipelineJob, params: Sequence[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if job.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=job.lr, weight_decay=0.0)
    return torch.optim.SGD(params, lr=job.lr)


def make_lr_scheduler(job: PipelineJob, optimizer: torch.optim.Optimizer
                      ) -> torch.optim.lr_scheduler.LambdaLR | None:
    """``LambdaLR`` following ``job.lr_schedule`` over the job's steps (None without a schedule)."""
    if job.lr_schedule is None:
        return None
    factors = job.lr_schedule.factors(len(job.batches))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: float(factors[min(t, len(factors) - 1)]))


def autocast(job: PipelineJob, device: torch.device | str = "cpu") -> Any:
    """The autocast context of a forward pass: bf16 when ``job.amp``, else a disabled one."""
    dev = torch.device(device)
    if job.amp and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("amp=True uses bf16 autocast, which this GPU does not support (fp16 would "
                         "need one loss scaler shared by all stages)")
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=job.amp)


def clip_grad_norm(params: Sequence[torch.nn.Parameter], max_norm: float, distributed: bool = False
                   ) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` over parameters spread across ranks: the norm is that
    of ALL ranks' gradients (one ``all_reduce`` of the squared norms when ``distributed``).
    Returns the total norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    device = grads[0].device if grads else (params[0].device if params else torch.device("cpu"))
    sq = torch.zeros((), device=device)
    for g in grads:
        sq += torch.linalg.vector_norm(g, 2.0).pow(2)
    if distributed:
        import torch.distributed as dist

        dist.all_reduce(sq)
    total = sq.sqrt()
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)
    return total


def build_model(job: PipelineJob, device: torch.device | str = "cpu") -> models.GPT:
    model = models.GPT(job.config)
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


def reference_run(job: PipelineJob, microbatched: bool = False, threads: int = 1) -> Reference:
    """Train the unsplit model on the job's batches in this process (with ``threads`` threads,
    like one rank; on a busy CPU more threads can be far slower for a small model).

    ``microbatched=False``: one full-batch step per batch (the model as you would train it).
    ``microbatched=True``: the same ``m`` micro-batches as the pipeline, losses weighted by
    their share of the batch, gradients accumulated in micro-batch order (plain gradient
    accumulation: the same mathematics as the pipeline, in one process)."""
    with torch_threads(threads):
        return _reference_run(job, microbatched)


def _reference_run(job: PipelineJob, microbatched: bool) -> Reference:
    model = build_model(job)
    whole = torch.nn.Sequential(*model.layers())  # the model as one stage: same forward code

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(job):
            return stage_forward(whole, x, checkpoint=job.checkpoint)

    opt = make_optimizer(job, list(model.parameters()))
    lr_sched = make_lr_scheduler(job, opt)
    losses, logits, grads = [], None, {}
    for step, (x, y) in enumerate(job.batches):
        opt.zero_grad(set_to_none=True)
        if microbatched:
            sizes = split_sizes(x.shape[0], job.m)
            outs, total = [], 0.0
            for xm, ym in zip(x.split(sizes), y.split(sizes), strict=True):
                out = forward(xm)
                loss = models.lm_loss(out, ym) * (xm.shape[0] / x.shape[0])
                loss.backward()
                outs.append(out.detach())
                total += loss.item()
            out, loss_value = torch.cat(outs), total
        else:
            out = forward(x)
            loss = models.lm_loss(out, y)
            loss.backward()
            loss_value = loss.item()
        if step == 0:
            logits = out.detach().clone()
            grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
        if job.clip is not None:
            clip_grad_norm(list(model.parameters()), job.clip)
        opt.step()
        if lr_sched is not None:
            lr_sched.step()
        losses.append(loss_value)
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    return Reference(losses, logits, grads, params)  # type: ignore[arg-type]


def compare(run: PipelineRun | Reference, ref: PipelineRun | Reference) -> dict[str, float]:
    """Largest absolute differences between two runs (pipeline or reference): logits and
    every parameter's gradient at step 0, the loss at every step, every parameter at the end."""
    if set(run.grads) != set(ref.grads) or set(run.params) != set(ref.params):
        missing = sorted(set(ref.params) - set(run.params))
        raise ValueError(f"the runs do not cover the same parameters (missing {missing[:3]})")

    def worst(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        return max(float((a[k] - b[k]).abs().max()) for k in b)

    return {
        "logits": float((run.logits - ref.logits).abs().max()),  # type: ignore[operator]
        "loss": max(abs(a - b) for a, b in zip(run.losses, ref.losses, strict=True)),
        "grads": worst(run.grads, ref.grads),
        "params": worst(run.params, ref.params),
    }


@dataclass
class Equivalence:
    """A pipeline run against the unsplit model, with the float-rounding floor for scale.

    ``diffs``: pipeline vs unsplit full-batch training. ``floor``: the unsplit model trained
    with the same micro-batches (gradient accumulation, one process) vs full-batch -- the
    same mathematics, only the order of float additions differs. A quantity passes when its
    difference is at most ``max(atol, factor * floor)``. (Adam divides by the root of the
    squared-gradient average, so where a gradient is tiny, rounding moves the update a lot:
    after several Adam steps the floor for parameters is well above the gradients'.)"""

    diffs: dict[str, float]
    floor: dict[str, float]
    atol: float
    factor: float

    def tolerance(self, key: str) -> float:
        return max(self.atol, self.factor * self.floor[key])

    @property
    def ok(self) -> bool:
        return all(self.diffs[k] <= self.tolerance(k) for k in self.diffs)

    def rows(self) -> list[dict[str, object]]:
        return [{"quantity": k, "pipeline vs unsplit": f"{self.diffs[k]:.1e}",
                 "rounding floor": f"{self.floor[k]:.1e}", "tolerance": f"{self.tolerance(k):.1e}",
                 "equal": "yes" if self.diffs[k] <= self.tolerance(k) else "NO"}
                for k in self.diffs]

    def summary(self) -> str:
        detail = ", ".join(f"{k} {d:.1e}" for k, d in self.diffs.items())
        return f"max |diff| vs unsplit: {detail} -> {'equal' if self.ok else 'NOT EQUAL'}"


def check_equivalence(run: PipelineRun, atol: float = 1e-5, factor: float = 4.0) -> Equivalence:
    """Compare ``run`` with the unsplit model (see :class:`Equivalence`)."""
    if not run.job.return_state:
        raise ValueError("run the job with return_state=True to check equivalence")
    if run.job.config.dropout > 0:
        raise ValueError(f"equivalence needs dropout=0, got {run.job.config.dropout}: with dropout "
                         "each micro-batch draws its own random masks")
    full = reference_run(run.job)
    floor = compare(reference_run(run.job, microbatched=True), full)
    return Equivalence(compare(run, full), floor, atol, factor)


def make_job(schedule: str = "1f1b", m: int = 4, v: int = 1, *, n_layer: int = 2,
             n_embd: int = 32, n_head: int = 4, block_size: int = 16, batch_size: int = 8,
             steps: int = 2, seed: int | None = None, attention: str = "manual", **kwargs: Any
             ) -> PipelineJob:
    """A job on the course task: a fresh GPT (seeded) and ``steps`` random batches."""
    seed = seeds.resolve(seed, 0)
    task = models.char_task()
    cfg = task.config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, block_size=block_size,
                      attention=attention)
    torch.manual_seed(seed)
    state = {k: t.clone() for k, t in models.GPT(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(seed + 1)
    batches = tuple(task.batch(batch_size, block_size, g) for _ in range(steps))
    return PipelineJob(config=cfg, state=state, batches=batches, schedule=schedule, m=m, v=v,
                       **kwargs)


def with_(job: PipelineJob, steps: int | None = None, **changes: Any) -> PipelineJob:
    """A copy of ``job`` with some fields changed (validated again); ``steps`` keeps only the
    first ``steps`` batches."""
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= len(job.batches):
            raise ValueError(f"steps must be an int in 1..{len(job.batches)}, got {steps!r}")
        changes["batches"] = job.batches[:steps]
    return replace(job, **changes)


def run_jobs_on_rank(ctx: Any, jobs: Sequence[PipelineJob]) -> list[RankResult]:
    """Rank entry point: run every job in order on this rank (spawned or under torchrun)."""
    from helpers.pipeline import runtime, torch_pp

    out = []
    for j, job in enumerate(jobs):
        ctx.set_job(j)
        fn = runtime.run_rank if job.executor == "ours" else torch_pp.run_rank
        out.append(fn(ctx, job))
    return out


def run(jobs: PipelineJob | Sequence[PipelineJob], nprocs: int, *, threads: int = 1,
        device: str | None = "cpu", timeout: float = 60.0, deadline: float = 600.0,
        progress: bool = False) -> list[PipelineRun]:
    """Run ``jobs`` on ``nprocs`` spawned processes (one rank each) and merge their results.

    Checks every job against the world size first, so bad input fails before any process
    starts. ``device=None`` picks CUDA/NCCL when there is one GPU per rank, else CPU/gloo.
    ``progress=True`` shows a ``tqdm.auto`` bar of the steps done over all jobs (by the
    slowest rank, updated about once a second; ``leave=False``)."""
    from helpers.pipeline.launch import spawn

    single = isinstance(jobs, PipelineJob)
    job_list = [jobs] if single else list(jobs)
    if not job_list or not all(isinstance(j, PipelineJob) for j in job_list):
        raise TypeError("jobs must be a PipelineJob or a non-empty sequence of them")
    plans = [job.plan(nprocs) for job in job_list]
    bar = None
    on_progress = None
    if progress:
        from tqdm.auto import tqdm

        offsets = [0]
        for job in job_list:
            offsets.append(offsets[-1] + len(job.batches))
        bar = tqdm(total=offsets[-1], desc=f"pipeline, {nprocs} processes", unit="step", leave=False)

        def on_progress(positions: list[tuple[int, int]]) -> None:
            done = min(offsets[j] + s for j, s in positions)
            if done > bar.n:
                bar.update(done - bar.n)

    try:
        per_rank = spawn(run_jobs_on_rank, nprocs, (job_list,), threads=threads, device=device,
                         timeout=timeout, deadline=deadline, on_progress=on_progress)
    finally:
        if bar is not None:
            bar.close()
    runs = [
        PipelineRun(job, sched, bounds, [per_rank[r][j] for r in range(nprocs)])
        for j, (job, (sched, bounds)) in enumerate(zip(job_list, plans, strict=True))
    ]
    return runs
