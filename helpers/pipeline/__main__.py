"""Shell entry: train the course GPT with pipeline parallelism, under torchrun or on its own.

One machine, CPU (gloo)::

    torchrun --standalone --nproc-per-node 2 -m helpers.pipeline --schedule 1f1b -m 4 --check

GPUs (NCCL is picked automatically when every local rank has its own GPU)::

    torchrun --standalone --nproc-per-node 4 -m helpers.pipeline --schedule interleaved -m 8 -v 2 \\
        --n-layer 6

Several nodes (run on every node; HOST is node 0's address)::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        --rdzv-id pp1 -m helpers.pipeline --schedule 1f1b -m 8 --n-layer 6

Pipeline x data parallel: ``--dp 2`` with 4 processes is 2 stages x 2 replicas.

Without torchrun, ``python -m helpers.pipeline --nproc 2 ...`` spawns the ranks itself, and
``--simulate`` only prints the simulated timeline's numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import torch.distributed as dist

from helpers.pipeline.job import EXECUTOR_NAMES, JOB_SCHEDULES
from helpers.pipeline.jobs import (
    Fault,
    PipelineRun,
    check_equivalence,
    make_job,
    run,
    run_jobs_on_rank,
)
from helpers.pipeline.launch import init_from_env, shutdown
from helpers.pipeline.schedules import make_schedule
from helpers.pipeline.simulate import simulate
from helpers.pipeline.split import layer_names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m helpers.pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schedule", default="1f1b", choices=JOB_SCHEDULES,
                    help="dualpipev needs --executor torch; zbh1 the course executor")
    ap.add_argument("-m", "--microbatches", type=int, default=4)
    ap.add_argument("-v", "--chunks", type=int, default=1, help="model chunks per rank (interleaved)")
    ap.add_argument("--executor", default="course", choices=EXECUTOR_NAMES)
    ap.add_argument("--dp", type=int, default=1, help="data-parallel replicas (world = stages x dp)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--block-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=None, help="default: from COURSE_SEED")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per distributed operation")
    ap.add_argument("--check", action="store_true",
                    help="compare with the unsplit model on rank 0 (exit 1 if not equal)")
    ap.add_argument("--tolerance", type=float, default=0.0,
                    help="extra absolute tolerance (default 0: exact where the arithmetic is the "
                         "same, else within 4x the rounding floor)")
    ap.add_argument("--nproc", type=int, default=2, help="ranks to spawn when not under torchrun")
    ap.add_argument("--simulate", action="store_true", help="only simulate (no processes)")
    ap.add_argument("--fail-rank", type=int, default=None,
                    help="inject a failure on this rank at the start of step 0 (fault demo)")
    return ap.parse_args(argv)


def build_job(args: argparse.Namespace):  # noqa: ANN201
    fault = None if args.fail_rank is None else Fault(rank=args.fail_rank)
    return make_job(args.schedule, args.microbatches, args.chunks, n_layer=args.n_layer,
                    n_embd=args.n_embd, block_size=args.block_size, batch_size=args.batch_size,
                    steps=args.steps, seed=args.seed, executor=args.executor, fault=fault, dp=args.dp,
                    return_state=args.check, record=args.executor == "course")


def report(run, args: argparse.Namespace) -> int:  # noqa: ANN001
    """Print the run's summary; with --check compare with the unsplit model. Returns exit code."""
    names = layer_names(run.job.n_layers)
    world, backend, device = len(run.ranks), run.ranks[0].backend, run.ranks[0].device
    dp = f" x {run.job.dp} replicas" if run.job.dp > 1 else ""
    stages = " | ".join(", ".join(names[a:b]) for a, b in run.bounds)
    v = f", v={run.job.n_chunks}" if run.job.n_chunks > 1 else ""
    print(f"pipeline: {run.job.schedule} ({run.job.executor} executor), {world} ranks{dp}, "
          f"{backend} on {device}, m={run.job.n_microbatches}{v}; stages: {stages}")
    for i, (loss, t) in enumerate(zip(run.losses, run.step_times, strict=True)):
        print(f"step {i}: loss {loss:.4f}  time {t * 1e3:.1f} ms")
    if run.job.executor == "course" and run.job.record:
        print(run.timeline().summary())
    if not args.check:
        return 0
    eq = check_equivalence(run, atol=args.tolerance)
    print(f"equivalence: {eq.summary()}")
    return 0 if eq.ok else 1


def main_torchrun(args: argparse.Namespace) -> int:
    """One rank under torchrun: run the job, gather the results on rank 0, report there."""
    device = None if args.device == "auto" else args.device
    ctx = init_from_env(threads=args.threads, device=device, timeout=args.timeout)
    try:
        job = build_job(args)
        sched, bounds = job.plan(ctx.world)
        mine = run_jobs_on_rank(ctx, [job])[0]
        gathered = [None] * ctx.world if ctx.rank == 0 else None
        ctx.set_action(len(job.batches), "gather results")
        dist.gather_object(mine, gathered, dst=0)
        code = 0
        if ctx.rank == 0:
            pp = ctx.world // job.dp  # global rank d * pp + r: pipeline rank r of replica d
            ranks = list(gathered)  # type: ignore[arg-type]
            run = PipelineRun(job, sched, bounds, ranks[:pp],
                              [ranks[d * pp:(d + 1) * pp] for d in range(1, job.dp)])
            code = report(run, args)
        return code
    except Exception as exc:
        print(f"rank {ctx.rank} failed during {ctx.last_action}: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)
        raise
    finally:
        shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.simulate:
        tl = simulate(make_schedule(args.schedule, args.nproc // args.dp, args.microbatches, args.chunks))
        print(tl.summary())
        print("peak in-flight micro-batches per stage:", tl.peak_in_flight())
        return 0
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return main_torchrun(args)
    job = build_job(args)
    device = None if args.device == "auto" else args.device
    (result,) = run(job, args.nproc, threads=args.threads, device=device, timeout=args.timeout)
    return report(result, args)


if __name__ == "__main__":
    sys.exit(main())
