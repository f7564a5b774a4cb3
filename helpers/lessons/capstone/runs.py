"""The capstone's five combinations of techniques and the runs that train them: single-process
combinations through :class:`helpers.training.Trainer`, pipelined ones through one launch of
:func:`helpers.pipeline.jobs.run`, all from the same weights on the same batches."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from helpers import (
    core,
    training,
    validate,
)
from helpers.core import LRSchedule
from helpers.lessons.progress import progress_bar
from helpers.pipeline import jobs
from helpers.pipeline.job import torch_threads
from helpers.pipeline.schedules import check_schedule_name

COMBINATIONS = ("plain", "amp", "checkpoint", "pipeline", "all")
#: what the decision guide chooses from: every mix of AMP, gradient accumulation and
#: checkpointing in one process, and the two pipelined runs. Accumulation (the batch in ``m``
#: micro-batches) is plain training's mathematics -- lesson 05 proved it bit for bit -- so the
#: mixes with it are accounted for, not trained again.
GUIDE_COMBINATIONS = ("plain", "amp", "accumulate", "amp+accumulate", "checkpoint", "amp+checkpoint",
                      "accumulate+checkpoint", "amp+accumulate+checkpoint", "pipeline", "all")


@dataclass(frozen=True)
class Combination:
    """Which techniques a run uses: bf16 autocast, block checkpointing, pipeline stages."""

    name: str
    """One of COMBINATIONS."""
    label: str
    """How tables and figures name it."""
    amp: bool
    """bf16 autocast (lesson 03)."""
    checkpoint: bool
    """Every block recomputed in backward (lesson 04)."""
    pipeline: bool
    """Stages on several processes (lesson 05)."""
    accumulate: bool = False
    """One process, the batch split into the run's ``m`` micro-batches (gradient accumulation)."""

    @property
    def techniques(self) -> str:
        used = [n for n, on in (("AMP", self.amp), ("checkpointing", self.checkpoint),
                                ("pipeline", self.pipeline), ("gradient accumulation", self.accumulate))
                if on]
        return " + ".join(used) or "none"


_COMBOS = {
    "plain": Combination("plain", "plain fp32", False, False, False),
    "amp": Combination("amp", "+AMP (bf16)", True, False, False),
    "checkpoint": Combination("checkpoint", "+checkpointing", False, True, False),
    "pipeline": Combination("pipeline", "+pipeline", False, False, True),
    "all": Combination("all", "all three", True, True, True),
    "accumulate": Combination("accumulate", "+accumulation", False, False, False, accumulate=True),
    "amp+accumulate": Combination("amp+accumulate", "+AMP +accum.", True, False, False, accumulate=True),
    "amp+checkpoint": Combination("amp+checkpoint", "+AMP +ckpt", True, True, False),
    "accumulate+checkpoint": Combination("accumulate+checkpoint", "+accum. +ckpt", False, True, False,
                                         accumulate=True),
    "amp+accumulate+checkpoint": Combination("amp+accumulate+checkpoint", "+AMP +accum. +ckpt", True, True,
                                             False, accumulate=True),
}


def combination(name: str) -> Combination:
    """The :class:`Combination` called ``name`` (one of :data:`GUIDE_COMBINATIONS`)."""
    if name not in _COMBOS:
        raise ValueError(f"combination must be one of {GUIDE_COMBINATIONS}, got {name!r}")
    return _COMBOS[name]


@dataclass(frozen=True)
class RunSpec:
    """The training run every combination repeats.

    ``train`` holds steps, batch size, learning rate, schedule, warm-up, clipping and seed
    (its ``amp``/``checkpoint`` flags are set per combination). Pipelined combinations use
    ``stages`` processes (one stage each), ``m`` micro-batches and the ``schedule``."""

    model: core.GPTConfig
    """The transformer's sizes (dropout 0: runs are compared step by step)."""
    train: training.TrainConfig
    """Steps, batch size, learning rate, schedule, warm-up, clipping and seed."""
    stages: int = 2
    """Processes (one stage each) of the pipelined combinations."""
    m: int = 4
    """Micro-batches per step of the pipelined combinations (the job's ``n_microbatches``)."""
    schedule: str = "1f1b"
    """The pipeline schedule."""

    def __post_init__(self) -> None:
        if not isinstance(self.model, core.GPTConfig):
            raise TypeError(f"model must be a helpers.core.GPTConfig, got {type(self.model).__name__}")
        if not isinstance(self.train, training.TrainConfig):
            raise TypeError(f"train must be a helpers.training.TrainConfig, got {type(self.train).__name__}")
        validate.positive_int("stages", self.stages)
        validate.positive_int("m", self.m)
        if self.stages > self.model.n_layer + 2:
            raise ValueError(f"stages={self.stages} exceeds the model's {self.model.n_layer + 2} layers "
                             "(embedding + blocks + head)")
        if self.train.batch_size % self.m:
            raise ValueError(f"batch_size ({self.train.batch_size}) must be divisible by m ({self.m}) "
                             "so every micro-batch has the same size")
        if self.model.dropout != 0.0:
            raise ValueError(f"dropout must be 0 for step-by-step comparison across processes, got "
                             f"{self.model.dropout!r}")
        check_schedule_name(self.schedule)

    @property
    def tokens_per_step(self) -> int:
        return self.train.batch_size * self.model.block_size

    def train_config(self, combo: Combination) -> training.TrainConfig:
        return replace(self.train, amp=combo.amp, checkpoint=combo.checkpoint)

    def lr_schedule(self) -> LRSchedule:
        return LRSchedule(self.train.schedule, warmup=self.train.warmup)


# --------------------------------------------------------------------------- same start, same data
def initial_state(spec: RunSpec) -> dict[str, torch.Tensor]:
    """The weights :class:`helpers.training.Trainer` starts from (seeded the same way)."""
    torch.manual_seed(spec.train.seed)
    return {k: t.detach().clone() for k, t in core.GPT(spec.model).state_dict().items()}


def batches(task: core.CharTask, spec: RunSpec) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """The batches the Trainer draws, in order: one per step from its seeded generator."""
    g = torch.Generator().manual_seed(spec.train.seed)
    return tuple(task.batch(spec.train.batch_size, spec.model.block_size, g)
                 for _ in range(spec.train.steps))


# --------------------------------------------------------------------------- running
@dataclass
class CurveRun:
    """One combination's training run: its loss per step, wall time per step, final weights."""

    combo: Combination
    losses: list[float]
    step_times: list[float]
    tokens_per_step: int
    params: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    processes: int = 1

    @property
    def step_s(self) -> float:
        """Median seconds per step (the first, warm-up step left out when there are others)."""
        times = self.step_times[1:] or self.step_times
        return statistics.median(times)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_s

    def model(self, config: core.GPTConfig) -> core.GPT:
        """A GPT holding this run's final weights (eval mode)."""
        model = core.GPT(config)
        model.load_state_dict(self.params, strict=False)  # params only; buffers are rebuilt
        return model.eval()


def train_single(task: core.CharTask, spec: RunSpec, combo: Combination, progress: bool = False,
                 steps: int | None = None, round_start_to: torch.dtype | None = None) -> CurveRun:
    """Train one single-process combination with :class:`helpers.training.Trainer`, timing each
    step. ``steps``: stop after the first ``steps`` steps of the run (same schedule).
    ``round_start_to``: round the starting weights to this dtype (and back) first -- a
    perturbation the size of one rounding, to see how sensitive training is to it."""
    if combo.pipeline:
        raise ValueError(f"combination {combo.name!r} is pipelined: use train_pipeline")
    if combo.accumulate or combo.name not in COMBINATIONS:
        raise ValueError(f"combination {combo.name!r} is accounted for by the guide, not trained here "
                         f"(trained: {COMBINATIONS})")
    steps = spec.train.steps if steps is None else steps
    validate.integer("steps", steps, 1, spec.train.steps)
    trainer = training.Trainer(spec.model, task, spec.train_config(combo))
    if round_start_to is not None:
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.copy_(p.to(round_start_to).to(p.dtype))
        combo = replace(combo, name=f"{combo.name}-start-{str(round_start_to).removeprefix('torch.')}",
                        label=f"{combo.label}, start rounded to {str(round_start_to).removeprefix('torch.')}")
    times: list[float] = []
    with progress_bar(steps, f"{combo.name}, 1 process", enabled=progress) as bar:
        for _ in range(steps):
            t0 = time.perf_counter()
            loss = trainer.step()
            times.append(time.perf_counter() - t0)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
    params = {k: p.detach().clone() for k, p in trainer.model.named_parameters()}
    return CurveRun(combo, list(trainer.losses), times, spec.tokens_per_step, params)


def pipeline_job(task: core.CharTask, spec: RunSpec, combo: Combination, *,
                 measure_memory: bool = False, steps: int | None = None) -> Any:
    """The :class:`helpers.pipeline.jobs.PipelineJob` for a pipelined combination: the Trainer's
    initial weights and batches, AdamW with the same schedule and clipping."""
    if not combo.pipeline:
        raise ValueError(f"combination {combo.name!r} runs in one process: use train_single")
    data = batches(task, spec)
    if steps is not None:
        data = data[:steps]
    return jobs.PipelineJob(
        config=spec.model, state=initial_state(spec), batches=data, schedule=spec.schedule,
        n_microbatches=spec.m, optimizer="adamw", lr=spec.train.lr, lr_schedule=spec.lr_schedule(),
        clip=spec.train.clip, amp=combo.amp, checkpoint=combo.checkpoint,
        record=False, measure_memory=measure_memory, return_state=not measure_memory,
        name=f"{combo.name}{'-memory' if measure_memory else ''}")


@dataclass(frozen=True)
class RankPeaks:
    """What the ranks of a pipelined combination measured in a memory probe (its second step),
    per rank: ``saved`` -- the peak of saved activations (saved-tensor hooks, micro-batches in
    flight); ``live`` -- the peak of the step's live tensors (lesson 04's tracker: saved
    activations, temporaries, the recomputed block, message buffers; parameter gradients
    excluded); ``with_grads`` -- the same with the gradients as they appear, and the optimiser
    step's temporaries (what a device holds beyond parameters and Adam state)."""

    saved: list[int]
    live: list[int]
    with_grads: list[int]


@dataclass
class PipelineResults:
    """The pipelined runs of one launch, and the memory peaks the ranks measured."""

    runs: dict[str, CurveRun]
    peaks: dict[str, RankPeaks]


def train_pipeline(task: core.CharTask, spec: RunSpec, names: Sequence[str], progress: bool = False,
                   timeout: float = 120.0, deadline: float = 600.0) -> PipelineResults:
    """Train the pipelined combinations ``names`` in ONE launch of ``spec.stages`` processes
    (1 thread each), plus a one-step memory-measuring job per combination."""
    combos = [combination(n) for n in names]
    todo = [pipeline_job(task, spec, c) for c in combos]
    todo += [pipeline_job(task, spec, c, measure_memory=True, steps=2) for c in combos]  # steady state: step 2
    runs = jobs.run(todo, spec.stages, threads=1, timeout=timeout, deadline=deadline, progress=progress)
    out: dict[str, CurveRun] = {}
    peaks: dict[str, RankPeaks] = {}
    for c, run, mem in zip(combos, runs[: len(combos)], runs[len(combos):], strict=True):
        out[c.name] = CurveRun(c, list(run.losses), list(run.step_times), spec.tokens_per_step,
                               run.params, processes=spec.stages)
        peaks[c.name] = RankPeaks(list(mem.act_peak), list(mem.live_peak), list(mem.live_peak_with_grads))
    return PipelineResults(out, peaks)


def probe_pipeline_memory(task: core.CharTask, spec: RunSpec, names: Sequence[str],
                          timeout: float = 120.0) -> dict[str, RankPeaks]:
    """Only the one-step memory probes of the pipelined combinations ``names`` (one launch)."""
    combos = [combination(n) for n in names]
    runs = jobs.run([pipeline_job(task, spec, c, measure_memory=True, steps=2) for c in combos],
                    spec.stages, threads=1, timeout=timeout)
    return {c.name: RankPeaks(list(r.act_peak), list(r.live_peak), list(r.live_peak_with_grads))
            for c, r in zip(combos, runs, strict=True)}


def run_combinations(task: core.CharTask, spec: RunSpec, names: Sequence[str] = COMBINATIONS,
                     progress: bool = False, steps: Mapping[str, int] | None = None
                     ) -> tuple[dict[str, CurveRun], dict[str, RankPeaks]]:
    """Train every combination in ``names``: single-process ones here (1 thread: one "device"
    is one core), pipelined ones in one launch. ``steps`` may shorten single-process runs
    (their first steps only, e.g. just to time them). Returns the runs and the ranks'
    memory peaks (:class:`RankPeaks`)."""
    steps = dict(steps or {})
    for n in list(names) + list(steps):
        combination(n)
    if any(combination(n).pipeline for n in steps):
        raise ValueError(f"steps may shorten single-process combinations only, got {sorted(steps)}")
    out: dict[str, CurveRun] = {}
    piped = [n for n in names if combination(n).pipeline]
    with training_threads(1):
        for n in names:
            if not combination(n).pipeline:
                out[n] = train_single(task, spec, combination(n), progress, steps=steps.get(n))
    peaks: dict[str, RankPeaks] = {}
    if piped:
        res = train_pipeline(task, spec, piped, progress)
        out.update(res.runs)
        peaks = res.peaks
    return {n: out[n] for n in names}, peaks


#: ``with training_threads(n):`` runs the block with ``n`` torch threads, then restores them
training_threads = torch_threads
