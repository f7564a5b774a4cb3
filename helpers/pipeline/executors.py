"""The executor registry and the launcher of jobs: ``run(jobs, nprocs)`` executes a list of
jobs on one set of processes (start-up is paid once) and merges the ranks' results.

Executors: ``"course"`` (:mod:`helpers.pipeline.runtime`, written for the course) and
``"torch"`` (:mod:`helpers.pipeline.torch_pp`, ``torch.distributed.pipelining``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from helpers.pipeline import runtime, torch_pp
from helpers.pipeline.job import EXECUTOR_NAMES, PipelineJob, PipelineRun, RankResult
from helpers.pipeline.launch import spawn

#: executor name -> its rank function ``(ctx, job) -> RankResult``
EXECUTORS: dict[str, Callable[[Any, PipelineJob], RankResult]] = {
    "course": runtime.run_rank,
    "torch": torch_pp.run_rank,
}
assert tuple(EXECUTORS) == EXECUTOR_NAMES


def run_jobs_on_rank(ctx: Any, jobs: Sequence[PipelineJob]) -> list[RankResult]:
    """Rank entry point: run every job in order on this rank (spawned or under torchrun)."""
    out = []
    for j, job in enumerate(jobs):
        ctx.set_job(j)
        out.append(EXECUTORS[job.executor](ctx, job))
    return out


def run(jobs: PipelineJob | Sequence[PipelineJob], nprocs: int, *, threads: int = 1,
        device: str | None = "cpu", timeout: float = 60.0, deadline: float = 600.0,
        progress: bool = False) -> list[PipelineRun]:
    """Run ``jobs`` on ``nprocs`` spawned processes (one rank each) and merge their results.

    Checks every job against the world size first, so bad input fails before any process
    starts. ``device=None`` picks CUDA/NCCL when there is one GPU per rank, else CPU/gloo.
    ``progress=True`` shows a ``tqdm.auto`` bar of the steps done over all jobs (by the
    slowest rank, updated about once a second; ``leave=False``)."""
    single = isinstance(jobs, PipelineJob)
    job_list = [jobs] if single else list(jobs)
    if not job_list or not all(isinstance(j, PipelineJob) for j in job_list):
        raise TypeError("jobs must be a PipelineJob or a non-empty sequence of them")
    plans = [job.plan(nprocs) for job in job_list]
    bar = None
    on_progress = None
    if progress:
        from tqdm.auto import tqdm  # heavy optional: only with progress=True

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
    runs = []
    for j, (job, (sched, bounds)) in enumerate(zip(job_list, plans, strict=True)):
        pp = nprocs // job.dp  # global rank d * pp + r is pipeline rank r of replica d
        runs.append(PipelineRun(job, sched, bounds, [per_rank[r][j] for r in range(pp)],
                                [[per_rank[d * pp + r][j] for r in range(pp)] for d in range(1, job.dp)]))
    return runs
