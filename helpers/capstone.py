"""Lesson 08 capstone: one training run with every technique of the course, and the guide to them.

The run is the course transformer (:mod:`helpers.models`) trained on the char task with AdamW, a
warm-up + cosine learning-rate schedule (:class:`helpers.gd.Schedule`) and gradient clipping, in
five **combinations** (:data:`COMBINATIONS`):

=============  =====================================================================
``plain``      one process, fp32 (the reference: :class:`helpers.training.Trainer`)
``amp``        one process, bf16 autocast (lesson 03)
``checkpoint`` one process, every block checkpointed (lesson 04)
``pipeline``   2 stages on 2 processes, 1F1B, fp32 (lesson 05)
``all``        2 stages on 2 processes, bf16 autocast and checkpointing inside each stage
=============  =====================================================================

Every combination starts from the same weights and sees the same batches as the reference
(:func:`initial_state`, :func:`batches`), so their loss curves can be compared step by step
(:func:`loss_agreement`). :func:`stage_ledgers` accounts the memory each process holds
(parameters, gradients, optimiser state, saved activations at the schedule's peak) exactly and
deterministically; :func:`recommend` turns those numbers into the decision guide.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from helpers import memory, models, seeds, training
from helpers.gd import Schedule as LRSchedule
from helpers.pipeline.jobs import torch_threads

COMBINATIONS = ("plain", "amp", "checkpoint", "pipeline", "all")


@dataclass(frozen=True)
class Combination:
    """Which techniques a run uses: bf16 autocast, block checkpointing, pipeline stages."""

    name: str
    label: str
    amp: bool
    checkpoint: bool
    pipeline: bool

    @property
    def techniques(self) -> str:
        used = [n for n, on in (("AMP", self.amp), ("checkpointing", self.checkpoint),
                                ("pipeline", self.pipeline)) if on]
        return " + ".join(used) or "none"


_COMBOS = {
    "plain": Combination("plain", "plain fp32", False, False, False),
    "amp": Combination("amp", "+AMP (bf16)", True, False, False),
    "checkpoint": Combination("checkpoint", "+checkpointing", False, True, False),
    "pipeline": Combination("pipeline", "+pipeline", False, False, True),
    "all": Combination("all", "all three", True, True, True),
}


def combination(name: str) -> Combination:
    """The :class:`Combination` called ``name`` (one of :data:`COMBINATIONS`)."""
    if name not in _COMBOS:
        raise ValueError(f"combination must be one of {COMBINATIONS}, got {name!r}")
    return _COMBOS[name]


@dataclass(frozen=True)
class RunSpec:
    """The training run every combination repeats.

    ``train`` holds steps, batch size, learning rate, schedule, warm-up, clipping and seed
    (its ``amp``/``checkpoint`` flags are set per combination). Pipelined combinations use
    ``stages`` processes (one stage each), ``m`` micro-batches and the ``schedule``."""

    model: models.GPTConfig
    train: training.TrainConfig
    stages: int = 2
    m: int = 4
    schedule: str = "1f1b"

    def __post_init__(self) -> None:
        if not isinstance(self.model, models.GPTConfig):
            raise TypeError(f"model must be a helpers.models.GPTConfig, got {type(self.model).__name__}")
        if not isinstance(self.train, training.TrainConfig):
            raise TypeError(f"train must be a helpers.training.TrainConfig, got {type(self.train).__name__}")
        for name in ("stages", "m"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.stages > self.model.n_layer + 2:
            raise ValueError(f"stages={self.stages} exceeds the model's {self.model.n_layer + 2} layers "
                             "(embedding + blocks + head)")
        if self.train.batch_size % self.m:
            raise ValueError(f"batch_size ({self.train.batch_size}) must be divisible by m ({self.m}) "
                             "so every micro-batch has the same size")
        if self.model.dropout != 0.0:
            raise ValueError(f"dropout must be 0 for step-by-step comparison across processes, got "
                             f"{self.model.dropout!r}")
        from helpers.pipeline.schedules import check_schedule_name

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
    return {k: t.detach().clone() for k, t in models.GPT(spec.model).state_dict().items()}


def batches(task: models.CharTask, spec: RunSpec) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
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

    def model(self, config: models.GPTConfig) -> models.GPT:
        """A GPT holding this run's final weights (eval mode)."""
        model = models.GPT(config)
        model.load_state_dict(self.params, strict=False)  # params only; buffers are rebuilt
        return model.eval()


def train_single(task: models.CharTask, spec: RunSpec, combo: Combination, progress: bool = False,
                 steps: int | None = None, round_start_to: torch.dtype | None = None) -> CurveRun:
    """Train one single-process combination with :class:`helpers.training.Trainer`, timing each
    step. ``steps``: stop after the first ``steps`` steps of the run (same schedule).
    ``round_start_to``: round the starting weights to this dtype (and back) first -- a
    perturbation the size of one rounding, to see how sensitive training is to it."""
    if combo.pipeline:
        raise ValueError(f"combination {combo.name!r} is pipelined: use train_pipeline")
    steps = spec.train.steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= spec.train.steps:
        raise ValueError(f"steps must be an int in 1..{spec.train.steps}, got {steps!r}")
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


def pipeline_job(task: models.CharTask, spec: RunSpec, combo: Combination, *,
                 measure_memory: bool = False, steps: int | None = None) -> Any:
    """The :class:`helpers.pipeline.jobs.PipelineJob` for a pipelined combination: the Trainer's
    initial weights and batches, AdamW with the same schedule and clipping."""
    from helpers.pipeline import jobs

    if not combo.pipeline:
        raise ValueError(f"combination {combo.name!r} runs in one process: use train_single")
    data = batches(task, spec)
    if steps is not None:
        data = data[:steps]
    return jobs.PipelineJob(
        config=spec.model, state=initial_state(spec), batches=data, schedule=spec.schedule,
        m=spec.m, optimizer="adamw", lr=spec.train.lr, lr_schedule=spec.lr_schedule(),
        clip=spec.train.clip, amp=combo.amp, checkpoint=combo.checkpoint,
        record=False, measure_memory=measure_memory, return_state=not measure_memory,
        name=f"{combo.name}{'-memory' if measure_memory else ''}")


@dataclass
class PipelineResults:
    """The pipelined runs of one launch, and the saved-activation peaks the ranks measured."""

    runs: dict[str, CurveRun]
    act_peak: dict[str, list[int]]


def train_pipeline(task: models.CharTask, spec: RunSpec, names: Sequence[str], progress: bool = False,
                   timeout: float = 120.0, deadline: float = 600.0) -> PipelineResults:
    """Train the pipelined combinations ``names`` in ONE launch of ``spec.stages`` processes
    (1 thread each), plus a one-step memory-measuring job per combination."""
    from helpers.pipeline import jobs

    combos = [combination(n) for n in names]
    todo = [pipeline_job(task, spec, c) for c in combos]
    todo += [pipeline_job(task, spec, c, measure_memory=True, steps=1) for c in combos]
    runs = jobs.run(todo, spec.stages, threads=1, timeout=timeout, deadline=deadline, progress=progress)
    out: dict[str, CurveRun] = {}
    peaks: dict[str, list[int]] = {}
    for c, run, mem in zip(combos, runs[: len(combos)], runs[len(combos):], strict=True):
        out[c.name] = CurveRun(c, list(run.losses), list(run.step_times), spec.tokens_per_step,
                               run.params, processes=spec.stages)
        peaks[c.name] = list(mem.act_peak)
    return PipelineResults(out, peaks)


def run_combinations(task: models.CharTask, spec: RunSpec, names: Sequence[str] = COMBINATIONS,
                     progress: bool = False, steps: Mapping[str, int] | None = None
                     ) -> tuple[dict[str, CurveRun], dict[str, list[int]]]:
    """Train every combination in ``names``: single-process ones here (1 thread: one "device"
    is one core), pipelined ones in one launch. ``steps`` may shorten single-process runs
    (their first steps only, e.g. just to time them). Returns the runs and the ranks'
    activation peaks."""
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
    peaks: dict[str, list[int]] = {}
    if piped:
        res = train_pipeline(task, spec, piped, progress)
        out.update(res.runs)
        peaks = res.act_peak
    return {n: out[n] for n in names}, peaks


#: ``with training_threads(n):`` runs the block with ``n`` torch threads, then restores them
training_threads = torch_threads


# --------------------------------------------------------------------------- agreement
@dataclass(frozen=True)
class Agreement:
    """How far a loss curve is from the reference's, step by step."""

    name: str
    steps: int        # steps compared
    max_abs: float    # max over steps of |loss - reference loss|
    mean_abs: float
    final_abs: float  # |difference| at the last step

    def ok(self, tol: float) -> bool:
        return self.max_abs <= tol


def loss_agreement(runs: Mapping[str, CurveRun], reference: str = "plain") -> dict[str, Agreement]:
    """Compare every run's loss curve with ``reference``'s, step by step (same batches) over
    the steps both ran."""
    if reference not in runs:
        raise ValueError(f"reference must be one of {list(runs)}, got {reference!r}")
    ref = runs[reference].losses
    out = {}
    for name, run in runs.items():
        if not run.losses or len(run.losses) > len(ref):
            raise ValueError(f"run {name!r} has {len(run.losses)} losses; need 1..{len(ref)} "
                             f"(the reference's)")
        d = [abs(a - b) for a, b in zip(run.losses, ref[: len(run.losses)], strict=True)]
        out[name] = Agreement(name, len(d), max(d), sum(d) / len(d), d[-1])
    return out


def batch_noise(losses: Sequence[float], window: int = 25) -> float:
    """The loss's step-to-step scatter from batch sampling: the standard deviation of
    ``loss - moving average`` over the second half of training (the curve is flat-ish there)."""
    if len(losses) < 2 * window:
        raise ValueError(f"need at least {2 * window} losses for window={window}, got {len(losses)}")
    t = torch.tensor(list(losses), dtype=torch.float64)
    smooth = torch.nn.functional.avg_pool1d(t.view(1, 1, -1), window, stride=1).view(-1)
    resid = t[window // 2 : window // 2 + len(smooth)] - smooth
    return float(resid[len(resid) // 2 :].std())


# --------------------------------------------------------------------------- memory ledger
def stage_bounds(spec: RunSpec, combo: Combination) -> list[tuple[int, int]]:
    """Layer ranges of each process: all layers for one process, else the pipeline's split
    (balanced by parameters, exactly as the pipeline job plans it)."""
    n_layers = spec.model.n_layer + 2
    if not combo.pipeline:
        return [(0, n_layers)]
    from helpers.pipeline.split import partition

    costs = [float(sum(p.numel() for p in layer.parameters()))
             for layer in models.GPT(spec.model).layers()]
    return partition(costs, spec.stages)


def stage_ledgers(spec: RunSpec, combo: Combination, x: torch.Tensor, y: torch.Tensor
                  ) -> list[memory.Ledger]:
    """The memory each process holds in one training step of ``combo`` on the batch ``(x, y)``.

    Parameters, gradients and AdamW state are measured on the stage's modules; activations are
    the bytes one micro-batch's forward saves for backward in that stage (saved-tensor hooks,
    lesson 03) times the most micro-batches the schedule keeps in flight there (1F1B: ``p - r``
    on stage ``r``). One process = one stage holding the whole batch."""
    from helpers.pipeline.schedules import make_schedule
    from helpers.pipeline.split import stage_forward, stage_modules

    if x.shape != y.shape or x.shape[0] != spec.train.batch_size:
        raise ValueError(f"x and y must both be ({spec.train.batch_size}, T), got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    bounds = stage_bounds(spec, combo)
    S = len(bounds)
    m = spec.m if combo.pipeline else 1
    inflight = make_schedule(spec.schedule, S, m).peak_in_flight() if combo.pipeline else [1]
    rows = x.shape[0] // m
    xm, ym = x[:rows], y[:rows]
    model = models.GPT(spec.model)
    model.load_state_dict(initial_state(spec))
    stages = stage_modules(model, bounds)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if combo.amp else nullcontext()
    ins, outs, acts = [], [], []
    h: torch.Tensor = xm
    for s, stage in enumerate(stages):
        inp = h.detach().requires_grad_(True) if s else h
        with memory.record_saved_tensors(stage) as log, amp:
            out = stage_forward(stage, inp, checkpoint=combo.checkpoint)
            if s == S - 1:
                out = models.lm_loss(out, ym) * (rows / x.shape[0])
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


def all_ledgers(task: models.CharTask, spec: RunSpec, names: Sequence[str] = COMBINATIONS
                ) -> dict[str, list[memory.Ledger]]:
    """:func:`stage_ledgers` of every combination on the run's first batch."""
    x, y = batches(task, replace(spec, train=replace(spec.train, steps=1)))[0]
    return {n: stage_ledgers(spec, combination(n), x, y) for n in names}


def peak_bytes(ledgers: Sequence[memory.Ledger]) -> int:
    """What the busiest process of a combination holds."""
    return max(led.total for led in ledgers)


# --------------------------------------------------------------------------- tables
def ledger_rows(ledgers: Mapping[str, Sequence[memory.Ledger]], spec: RunSpec) -> list[dict[str, object]]:
    """One row per (combination, process): layers and the ledger in MiB (deterministic)."""
    from helpers.pipeline.split import layer_names

    names = layer_names(spec.model.n_layer + 2)
    rows = []
    for name, leds in ledgers.items():
        combo = combination(name)
        for s, (a, b) in enumerate(stage_bounds(spec, combo)):
            mib = leds[s].as_mib()
            rows.append({"combination": combo.label, "process": s,
                         "layers": f"{names[a]}..{names[b - 1]}" if b - a > 1 else names[a],
                         "params MiB": mib["parameters"], "grads MiB": mib["gradients"],
                         "Adam MiB": mib["optimizer_state"], "activations MiB": mib["activations"],
                         "total MiB": mib["total"]})
    return rows


def speed_rows(runs: Mapping[str, CurveRun]) -> list[dict[str, object]]:
    """One row per combination: processes, median step time, tokens per second, relative to plain."""
    base = runs["plain"].step_s if "plain" in runs else None
    rows = []
    for run in runs.values():
        row: dict[str, object] = {"combination": run.combo.label, "processes": run.processes,
                                  "step ms": round(1e3 * run.step_s, 1),
                                  "tokens/s": round(run.tokens_per_s)}
        if base:
            row["time vs plain"] = round(run.step_s / base, 2)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- pictures
def plot_curves(runs: Mapping[str, CurveRun], reference: str = "plain", tol: float | None = None,
                figsize: tuple[float, float] = (10.0, 3.4)):  # noqa: ANN201 - matplotlib Figure
    """Left: every combination's training loss. Right: its difference from the reference."""
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=figsize)
    ref = runs[reference].losses
    styles = ["-", "--", ":", "-.", (0, (1, 2)), (0, (5, 2, 1, 2))]
    for k, (name, run) in enumerate(runs.items()):
        ax.plot(run.losses, lw=1.2, ls=styles[k % len(styles)], label=run.combo.label, color=f"C{k}")
        if name != reference:
            ax2.plot([a - b for a, b in zip(run.losses, ref[: len(run.losses)], strict=True)], lw=0.9,
                     ls=styles[k % len(styles)], color=f"C{k}")
    if tol is not None:
        for sign in (1, -1):
            ax2.axhline(sign * tol, color="0.4", lw=0.8, ls="--")
        ax2.text(len(ref) - 1, tol * 0.93, f"tolerance ±{tol:g}", fontsize=8, color="0.3", va="top",
                 ha="right")
        ax2.set_ylim(-1.25 * tol, 1.25 * tol)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"The same run, {len(runs)} ways", loc="left")
    ax.legend(fontsize=8)
    ax2.set_xlabel("step")
    ax2.set_ylabel(f"loss − {runs[reference].combo.label} loss")
    ax2.set_title("Difference from the reference (colours as on the left)", loc="left", fontsize=9)
    fig.tight_layout()
    return fig


LEDGER_KINDS = (("parameters", "parameters"), ("gradients", "gradients"),
                ("optimizer_state", "Adam state"), ("activations", "activations"))


def plot_ledgers(ledgers: Mapping[str, Sequence[memory.Ledger]],
                 figsize: tuple[float, float] = (8.0, 3.4)):  # noqa: ANN201 - matplotlib Figure
    """Stacked bars: what each process holds, per combination."""
    import matplotlib.pyplot as plt

    labels, parts = [], {k: [] for k, _ in LEDGER_KINDS}
    for name, leds in ledgers.items():
        combo = combination(name)
        for s, led in enumerate(leds):
            labels.append(f"{combo.label}" + (f"\nprocess {s}" if len(leds) > 1 else ""))
            for k, _ in LEDGER_KINDS:
                parts[k].append(getattr(led, k) / memory.MiB)
    fig, ax = plt.subplots(figsize=figsize)
    bottom = [0.0] * len(labels)
    for k, title in LEDGER_KINDS:
        ax.bar(range(len(labels)), parts[k], bottom=bottom, label=title, width=0.7)
        bottom = [b + v for b, v in zip(bottom, parts[k], strict=True)]
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("MiB")
    ax.set_title("Memory per process in one training step", loc="left")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_speed(runs: Mapping[str, CurveRun], figsize: tuple[float, float] = (6.5, 2.8)):  # noqa: ANN201
    """Horizontal bars: tokens per second per combination."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    names = list(runs)
    ax.barh(range(len(names)), [runs[n].tokens_per_s for n in names],
            color=["#D55E00" if runs[n].combo.pipeline else "#0072B2" for n in names])
    ax.set_yticks(range(len(names)), [runs[n].combo.label for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("tokens per second (blue: 1 process, orange: pipeline)")
    ax.set_title("Training throughput", loc="left")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- decision guide
#: the order the guide tries combinations in: cheapest in time first. Checkpointing costs a
#: second forward of each block; a pipeline needs more devices and pays the bubble.
PREFERENCE_FAST_LOW_PRECISION = ("amp", "plain", "checkpoint", "pipeline", "all")
PREFERENCE_SLOW_LOW_PRECISION = ("plain", "checkpoint", "amp", "pipeline", "all")


@dataclass(frozen=True)
class Recommendation:
    """The guide's answer for one situation."""

    choice: str | None  # a combination name, or None when nothing fits
    bound: str          # "compute" (the plain run fits) or "memory"
    reason: str
    needs: dict[str, int]  # combination -> bytes its busiest process holds

    @property
    def label(self) -> str:
        return combination(self.choice).label if self.choice else "none fits"


def recommend(ledgers: Mapping[str, Sequence[memory.Ledger]], device_bytes: int, devices: int,
              fast_low_precision: bool) -> Recommendation:
    """Which combination to use on ``devices`` devices of ``device_bytes`` each.

    Memory first: a combination qualifies when its busiest process fits in ``device_bytes`` and
    it needs no more processes than there are devices. Among those, time decides, in the order
    :data:`PREFERENCE_FAST_LOW_PRECISION` (hardware with fast bf16/fp16: AMP is free speed) or
    :data:`PREFERENCE_SLOW_LOW_PRECISION` (AMP only saves memory there, at a cost in time).
    ``bound`` says whether plain training fits (compute bound: the question is only speed) or not
    (memory bound)."""
    if "plain" not in ledgers:
        raise ValueError("ledgers must include 'plain' (the reference)")
    if isinstance(device_bytes, bool) or not isinstance(device_bytes, (int, float)) or device_bytes <= 0:
        raise ValueError(f"device_bytes must be a positive number, got {device_bytes!r}")
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"devices must be a positive int, got {devices!r}")
    needs = {n: peak_bytes(leds) for n, leds in ledgers.items()}
    procs = {n: len(leds) for n, leds in ledgers.items()}
    bound = "compute" if needs["plain"] <= device_bytes else "memory"
    order = PREFERENCE_FAST_LOW_PRECISION if fast_low_precision else PREFERENCE_SLOW_LOW_PRECISION
    mib = memory.MiB
    for name in order:
        if name in needs and needs[name] <= device_bytes and procs[name] <= devices:
            why = (f"{combination(name).label} needs {needs[name] / mib:.2f} MiB per device "
                   f"<= {device_bytes / mib:.2f} MiB on {procs[name]} of {devices} device(s)")
            if bound == "compute":
                why += ("; plain fits, so only speed matters" + (
                    ": bf16 units make AMP faster" if name == "amp" else "")
                    + (" (more devices: data parallelism, each with a full copy)" if devices > 1 else ""))
            return Recommendation(name, bound, why, needs)
    smallest = min(needs, key=lambda n: needs[n])
    why = (f"nothing fits: the smallest, {combination(smallest).label}, needs "
           f"{needs[smallest] / mib:.2f} MiB per device on {procs[smallest]} device(s); use more "
           "pipeline stages, a smaller micro-batch, or shard the optimiser state (ZeRO)")
    return Recommendation(None, bound, why, needs)


# --------------------------------------------------------------------------- progress bars
class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: object) -> None:
        pass


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True) -> Iterator[Any]:
    """A ``tqdm.auto`` progress bar that leaves nothing behind (``leave=False``); a no-op bar
    when ``enabled`` is False."""
    if not enabled:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", leave=False)
    try:
        yield bar
    finally:
        bar.close()


def clear_cell_output() -> None:
    """In a notebook, remove the cell's output so far (the closed progress bars); else nothing.

    tqdm's notebook bars are widgets whose last frame would otherwise stay in the saved file."""
    try:
        from IPython import get_ipython
        from IPython.display import clear_output
    except ImportError:  # pragma: no cover - IPython ships with the course environment
        return
    shell = get_ipython()
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        clear_output(wait=False)


# --------------------------------------------------------------------------- learning
def sample(model: models.GPT, task: models.CharTask, prompt: str = "the ", length: int = 160,
           temperature: float = 0.8, seed: int | None = None) -> str:
    """Text the model writes after ``prompt`` (seeded, so it is reproducible)."""
    seed = seeds.resolve(seed, 0)
    g = torch.Generator().manual_seed(seed)
    idx = task.tokenizer.encode(prompt).view(1, -1)
    out = model.eval().generate(idx, length, temperature=temperature, generator=g)
    return task.tokenizer.decode(out[0])


def real_word_share(text: str, corpus: str) -> float:
    """Share of the complete words in ``text`` (the last, possibly cut, word dropped) that occur
    in ``corpus``."""
    import re

    vocab = set(re.findall(r"[a-z]+", corpus))
    words = re.findall(r"[a-z]+", text)[:-1]
    if not words:
        return 0.0
    return sum(w in vocab for w in words) / len(words)



# --------------------------------------------------------------------------- GPU (additive)
def cuda_step_peaks(task: models.CharTask, spec: RunSpec,
                    names: Sequence[str] = ("plain", "amp", "checkpoint")) -> dict[str, int]:
    """Peak CUDA memory (bytes, allocator's view) of one training step of each single-process
    combination, after a first step has created the optimiser state."""
    if not torch.cuda.is_available():
        raise ValueError("cuda_step_peaks needs CUDA; torch.cuda.is_available() is False")
    if spec.train.steps < 2:
        raise ValueError(f"spec.train.steps must be >= 2 (a warm-up step, then the measured one), "
                         f"got {spec.train.steps}")
    out = {}
    for n in names:
        combo = combination(n)
        if combo.pipeline:
            raise ValueError(f"combination {n!r} is pipelined; cuda_step_peaks measures one process")
        trainer = training.Trainer(spec.model, task, spec.train_config(combo), device="cuda")
        trainer.step()
        out[n] = memory.cuda_peak_bytes(trainer.step)
        del trainer
        torch.cuda.empty_cache()
    return out
