"""Timing experiments on real processes, each in ONE launch with its variants interleaved
(A, B, A, B, ...) so that a change in machine load hits both alike; medians of several steps.

- :func:`measure_speedup`: a 2-stage pipeline on 2 processes (1 thread each) against one
  process running the unsplit model on one thread (the baseline: one device doing all the
  work) and with the same total thread budget (2 threads), compared with the pipeline's bound
  ``2m/(m+1)`` (the ideal pipeline over one stage-time per micro-batch).
  With ``compare_torch=True`` it also times ``torch.distributed.pipelining`` on the same model,
  split, schedule and data, against the course executor.

Timings are noisy on a shared machine: rerun when it is quiet.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist

from helpers import seeds
from helpers.core import train_step
from helpers.pipeline import runtime, torch_pp
from helpers.pipeline.job import (
    PipelineJob,
    build_model,
    make_job,
    make_optimizer,
    step_config,
    torch_threads,
)
from helpers.pipeline.launch import spawn


def _single_process_steps(job: PipelineJob, threads: int) -> list[float]:
    """Step times of the unsplit model on the full batch (forward, backward, optimiser step)."""
    with torch_threads(threads):
        model = build_model(job)
        opt = make_optimizer(job, list(model.parameters()))
        times = []
        for batch in job.batches:
            t = time.perf_counter()
            train_step(model, opt, batch, step_config(job, microbatched=False))  # the job's options, full batch
            times.append(time.perf_counter() - t)
        return times


def speedup_rank(ctx: Any, job: PipelineJob, rounds: int, threads_total: int,
                 compare_torch: bool = False) -> dict[str, list[float]]:
    """Rank function: alternate single-process baselines (on rank 0, the others wait at a
    barrier) and the pipeline (all ranks, one thread each; with ``compare_torch`` also the same
    job run by ``torch.distributed.pipelining``). Drops each run's first step."""
    out: dict[str, list[float]] = {k: [] for k in ("single", "single_1thread", "concurrent", "pipeline",
                                                   "pipeline_cpu", "torch", "torch_cpu")}
    for _ in range(rounds):
        dist.barrier()
        if ctx.rank == 0:
            out["single"] += _single_process_steps(job, threads_total)[1:]
            out["single_1thread"] += _single_process_steps(job, 1)[1:]
        dist.barrier()
        # the machine's own limit: both ranks run the whole 1-thread step at the same time
        out["concurrent"] += _single_process_steps(job, 1)[1:]
        dist.barrier()
        torch.set_num_threads(1)
        ours = runtime.run_rank(ctx, job)
        out["pipeline"] += ours.step_times[1:]
        out["pipeline_cpu"] += ours.cpu_times[1:]
        if compare_torch:
            theirs = torch_pp.run_rank(ctx, replace(job, executor="torch"))
            out["torch"] += theirs.step_times[1:]
            out["torch_cpu"] += theirs.cpu_times[1:]
    return out


@dataclass(frozen=True)
class Speedup:
    """Per-step times (seconds) of one :func:`measure_speedup` run; medians and spreads.

    ``samples`` keys: ``single`` (one process, ``threads_total`` threads, unsplit model, whole
    batch), ``single_1thread`` (the same on one thread: **the baseline** -- one device doing
    all the work), ``pipeline`` (2-stage pipeline, 1 thread per rank: the slower rank),
    ``pipeline_cpu`` (CPU seconds of both ranks), and with ``compare_torch`` ``torch`` /
    ``torch_cpu`` (the same pipeline run by torch.distributed.pipelining)."""

    m: int
    samples: dict[str, list[float]]
    schedule: str = "1f1b"
    rounds: int = 1
    """The samples come in this many rounds (single, single 1 thread, pipeline, torch, in turn)."""

    def median(self, key: str) -> float:
        return statistics.median(self.samples[key])

    def spread(self, key: str) -> tuple[float, float]:
        """(min, max) over the measured steps."""
        return min(self.samples[key]), max(self.samples[key])

    @property
    def repeats(self) -> int:
        return len(self.samples["pipeline"])

    @property
    def single_s(self) -> float:
        return self.median("single")

    @property
    def single_1thread_s(self) -> float:
        return self.median("single_1thread")

    @property
    def pipeline_s(self) -> float:
        return self.median("pipeline")

    @property
    def pipeline_cpu_s(self) -> float:
        return self.median("pipeline_cpu")

    @property
    def torch_s(self) -> float | None:
        return self.median("torch") if self.samples.get("torch") else None

    @property
    def torch_cpu_s(self) -> float | None:
        return self.median("torch_cpu") if self.samples.get("torch_cpu") else None

    def ratios(self, num: str, den: str) -> list[float]:
        """Per round: median of ``num`` / median of ``den`` (both measured in that round)."""
        k = len(self.samples[den]) // self.rounds
        return [statistics.median(self.samples[num][r * k:(r + 1) * k])
                / statistics.median(self.samples[den][r * k:(r + 1) * k]) for r in range(self.rounds)]

    @property
    def speedup(self) -> float:
        """Pipeline vs one process with the same total thread budget (median over rounds)."""
        return statistics.median(self.ratios("single", "pipeline"))

    @property
    def speedup_vs_1thread(self) -> float:
        """Pipeline vs one process with one thread (what the bound assumes per stage); the
        median over rounds of the ratio measured within each round."""
        return statistics.median(self.ratios("single_1thread", "pipeline"))

    @property
    def bound(self) -> float:
        """``2m/(m+1)``: two devices, each doing half the work, idle for 1F1B's bubble."""
        return 2 * self.m / (self.m + 1)

    @property
    def share_of_bound(self) -> float:
        """Speed-up over the 1-thread baseline as a share of the bound (the issue's goal: 0.85)."""
        return self.speedup_vs_1thread / self.bound

    @property
    def share_of_bound_same_budget(self) -> float:
        return self.speedup / self.bound

    @property
    def parallel_efficiency(self) -> float:
        """How fast two processes run side by side, each relative to one alone (1.0: the two
        cores do not slow each other down; shared caches, memory bandwidth or SMT siblings make it
        less). Median over rounds."""
        return statistics.median(self.ratios("single_1thread", "concurrent"))

    @property
    def ceiling(self) -> float:
        """The bound on this machine: ``parallel_efficiency x 2m/(m+1)``."""
        return self.parallel_efficiency * self.bound

    @property
    def busy(self) -> bool:
        """True when 2 threads ran slower than 1: other programs hold the cores."""
        return self.single_s > self.single_1thread_s

    def _ms(self, key: str) -> str:
        lo, hi = self.spread(key)
        return f"{self.median(key) * 1e3:.1f} ms (range {lo * 1e3:.1f}-{hi * 1e3:.1f})"

    def summary(self) -> str:
        r = self.ratios("single_1thread", "pipeline")
        text = (f"m={self.m}, {self.schedule}, {self.repeats} steps each in {self.rounds} rounds: one process, "
                f"1 thread {self._ms('single_1thread')}; 2-stage pipeline, 1 thread per process "
                f"{self._ms('pipeline')} -> speedup {self.speedup_vs_1thread:.2f}x (rounds "
                f"{min(r):.2f}-{max(r):.2f}), {100 * self.share_of_bound:.0f}% of the bound 2m/(m+1) = "
                f"{self.bound:.2f}x\ntwo 1-thread processes side by side run at {self.parallel_efficiency:.2f}x "
                f"their solo speed here, so this machine's ceiling is {self.ceiling:.2f}x "
                f"({100 * self.speedup_vs_1thread / self.ceiling:.0f}% reached)\n"
                f"same thread budget (one process, 2 threads: {self._ms('single')}): {self.speedup:.2f}x")
        if self.torch_s is not None and self.torch_cpu_s is not None:
            text += (f"\nsame pipeline, torch.distributed.pipelining: {self._ms('torch')}; ours / torch: "
                     f"wall {self.pipeline_s / self.torch_s:.2f}, CPU {self.pipeline_cpu_s / self.torch_cpu_s:.2f}")
        if self.busy:
            text += ("\nwarning: 2 threads were slower than 1, so other programs are using the "
                     "cores; rerun measure_speedup() when the machine is quiet")
        return text


#: micro-batches that are compute-bound on one CPU thread: 8 sequences x 64 tokens each at
#: m = 8 (about 20 ms of forward + backward per stage and micro-batch on the course machine),
#: so that the fixed cost per action and per message is small beside the arithmetic
COMPUTE_BOUND = {"n_embd": 128, "block_size": 64, "batch_size": 64}


def speed_job(m: int = 8, *, n_layer: int = 4, n_embd: int = 128, n_head: int = 4,
              block_size: int = 64, batch_size: int = 32, steps: int = 4, schedule: str = "1f1b",
              attention: str = "sdpa", seed: int | None = None) -> PipelineJob:
    """The model and data the timing experiments use: big enough that compute dominates, and
    fused attention ('sdpa'), whose cost per sequence does not grow when micro-batches shrink
    (with 'manual' attention on CPU, 8 micro-batches cost ~18% more than one full batch)."""
    seed = seeds.resolve(seed, 0)
    return make_job(schedule, m, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                    block_size=block_size, batch_size=batch_size, steps=steps, seed=seed,
                    attention=attention, record=False, return_state=False)


def measure_speedup(m: int = 8, rounds: int = 3, threads_total: int = 2,
                    job: PipelineJob | None = None, compare_torch: bool = False,
                    timeout: float = 60.0, steps: int = 3) -> Speedup:
    """Step times of a 2-stage pipeline (2 processes x 1 thread) against one process with one
    thread (the baseline) and with ``threads_total`` threads, measured alternately in one
    launch, ``rounds x (steps - 1)`` steps each; see :class:`Speedup`. The default job is the
    compute-bound :data:`COMPUTE_BOUND` model. ``compare_torch`` also times
    ``torch.distributed.pipelining`` on the same job."""
    job = job if job is not None else speed_job(m, steps=steps, **COMPUTE_BOUND)
    if job.n_microbatches != m:
        job = replace(job, n_microbatches=m)
    if job.executor != "course" or job.record or job.return_state:
        job = replace(job, executor="course", record=False, return_state=False)
    per_rank = spawn(speedup_rank, 2, (job, rounds, threads_total, compare_torch),
                     timeout=timeout)
    samples: dict[str, list[float]] = {
        "single": per_rank[0]["single"], "single_1thread": per_rank[0]["single_1thread"],
        "concurrent": [(a + b) / 2 for a, b in zip(per_rank[0]["concurrent"], per_rank[1]["concurrent"], strict=True)]}
    for key in ("pipeline", "torch"):  # per step: the slower rank's wall time
        samples[key] = [max(a, b) for a, b in zip(per_rank[0][key], per_rank[1][key], strict=True)]
    for key in ("pipeline_cpu", "torch_cpu"):  # per step: both ranks' CPU time
        samples[key] = [a + b for a, b in zip(per_rank[0][key], per_rank[1][key], strict=True)]
    return Speedup(m=m, samples=samples, schedule=job.schedule, rounds=rounds)
