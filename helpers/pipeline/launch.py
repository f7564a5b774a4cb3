"""Start pipeline ranks: from a notebook (spawned processes) or under ``torchrun``.

Both paths end in the same place: ``torch.distributed`` initialised through ``env://``
(``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``), one torch thread per rank by default,
and the backend chosen from the device: **NCCL** when every local rank can have its own GPU,
**gloo** on CPU. Nothing else changes between a laptop, one GPU node and several nodes.

:func:`spawn` is the notebook launcher, on ``torch.multiprocessing.start_processes``. The parent
watches every child; if one raises or dies, it stops the others within a couple of seconds and raises :class:`PipelineError` naming the
rank and the action it was running (children report their current action into shared memory).
Every wait is bounded: the process group has an operation timeout, and ``spawn`` has an overall
deadline. Children are daemonic, so none outlives the notebook kernel (if the kernel is killed
outright, they stop at their next receive's timeout).
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import wait as mp_wait
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import validate
from helpers.core.device import course_device
from helpers.pipeline.schedules import KINDS, Action

#: progress slots per rank in shared memory: step, kind (0 idle, 1 F, 2 B, 3 other), mb, stage,
#: job (index in the list a rank works through)
_SLOTS = 5
_KINDS = {0: "starting", 1: "F", 2: "B", 3: "optimizer step", 4: "W"}


class PipelineError(RuntimeError):
    """A rank failed (raised, died or hung); the message names the rank and its action."""

    def __init__(self, message: str, rank: int | None = None, pids: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.rank = rank
        self.pids = pids


@dataclass
class DistContext:
    """What a rank knows about its place in the job (passed to every rank function)."""

    rank: int
    world: int
    local_rank: int
    local_world: int
    device: torch.device
    backend: str
    timeout: float
    progress: Any = None  # shared array under spawn, None under torchrun
    last_action: str = "start-up"
    cache: dict[str, Any] = field(default_factory=dict)

    def set_action(self, step: int, kind: str, mb: int = -1, stage: int = -1) -> None:
        """Record what this rank is doing, so a failure report can name it."""
        self.last_action = _describe(step, kind, mb, stage)
        if self.progress is not None:
            code = {"F": 1, "B": 2, "W": 4}.get(kind, 3)
            base = self.rank * _SLOTS
            self.progress[base : base + 4] = [step, code, mb, stage]

    def set_job(self, index: int) -> None:
        """Record which job (of the list this rank works through) starts now (at step 0)."""
        if self.progress is not None:
            self.progress[self.rank * _SLOTS + 4] = index
        self.set_action(0, f"start of job {index}")


def _describe(step: int, kind: str, mb: int, stage: int) -> str:
    if kind in KINDS:  # a schedule action: say it as the schedule does
        return f"step {step}, {Action(kind, mb, stage)}"
    return f"step {step}, {kind}"


def _progress_text(progress: Any, rank: int) -> str:
    step, code, mb, stage = progress[rank * _SLOTS : rank * _SLOTS + 4]
    if code == 0:
        return "start-up (before its first action)"
    return _describe(step, _KINDS[code], mb, stage)


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (for MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_device(local_rank: int, local_world: int, device: str | None = None) -> torch.device:
    """CUDA device ``local_rank`` when each local rank can have its own GPU, else CPU.

    ``device`` ('cpu' or 'cuda', or env COURSE_DEVICE) forces a choice
    (:func:`helpers.core.device.course_device`)."""
    if course_device(device, gpus_needed=local_world) == "cpu":
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


#: the process group's own timeout (start-up, barriers, torch's pipelining p2p) is at least this
MIN_GROUP_TIMEOUT = 60.0


def init_from_env(threads: int = 1, device: str | None = None, timeout: float = 60.0,
                  progress: Any = None) -> DistContext:
    """Initialise ``torch.distributed`` from the environment (torchrun's or :func:`spawn`'s).

    ``timeout`` bounds each receive of the course executor; the process group itself gets
    ``max(timeout, MIN_GROUP_TIMEOUT)`` so that slow start-up on a busy machine is not a fault."""
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE") if k not in os.environ]
    if missing:
        raise RuntimeError(f"not launched by torchrun or helpers.pipeline.launch: {missing} unset")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    torch.set_num_threads(threads)
    dev = pick_device(local_rank, local_world, device)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kw = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                                timeout=timedelta(seconds=max(timeout, MIN_GROUP_TIMEOUT)), **kw)
    return DistContext(rank=rank, world=world, local_rank=local_rank, local_world=local_world,
                       device=dev, backend=backend, timeout=timeout, progress=progress)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _child(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple,
           conns: list[Any], progress: Any, threads: int, device: str | None, timeout: float) -> None:
    """A rank's entry point (``torch.multiprocessing`` calls it with the rank first)."""
    conn = conns[rank]
    for i, other in enumerate(conns):
        if i != rank:
            other.close()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    ctx = None
    try:
        ctx = init_from_env(threads=threads, device=device, timeout=timeout, progress=progress)
        result = fn(ctx, *args)
        conn.send_bytes(pickle.dumps(("ok", rank, result)))
    except BaseException as exc:  # report everything (the parent names the rank), then die
        where = ctx.last_action if ctx is not None else "start-up"
        msg = f"rank {rank} failed during {where}: {type(exc).__name__}: {exc}"
        try:
            conn.send_bytes(pickle.dumps(("error", rank, time.time(), msg, traceback.format_exc())))
            conn.close()
        finally:
            sys.stdout.flush()
            os._exit(1)
    conn.close()
    shutdown()


def _stop(procs: list[Any], grace: float = 2.0) -> None:
    """Terminate (then kill) every child still alive, and reap them all."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5.0)


@contextmanager
def _expected_terminations() -> Iterator[None]:
    """``ProcessContext.join`` logs a warning for each rank it stops after a failure; here that
    is the plan, not news (the failure itself is raised as a PipelineError)."""
    logger = logging.getLogger("torch.multiprocessing.spawn")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class _Watch:
    """What the parent has heard from the ranks so far."""

    def __init__(self, readers: list[Any]) -> None:
        self.results: dict[int, Any] = {}
        self.errors: list[tuple[float, int, str, str]] = []
        self.dead: dict[int, int] = {}
        self.failed_at: float | None = None
        self.open = list(readers)
        self.rank_of = {id(r): i for i, r in enumerate(readers)}

    def read(self, wait: float) -> None:
        """Take in every report that arrives within ``wait`` seconds."""
        for conn in mp_wait(self.open, timeout=wait):
            try:
                msg = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                self.open.remove(conn)
                continue
            rank = self.rank_of[id(conn)]
            if msg[0] == "ok":
                self.results[rank] = msg[2]
            else:
                self.errors.append((msg[2], rank, msg[3], msg[4]))
                self.fail()

    def fail(self) -> None:
        self.failed_at = self.failed_at or time.monotonic()


def _note_exits(watch: _Watch, procs: list[Any]) -> None:
    """A rank that died without a word (os._exit, killed) makes its peers fail too (their
    connection is reset); its own exit status is the cause, so look at every process."""
    for i, proc in enumerate(procs):
        code = proc.exitcode
        if code not in (None, 0) and i not in watch.dead:
            watch.dead[i] = code


def _failure(watch: _Watch, progress: Any, nprocs: int, pids: tuple[int, ...]) -> PipelineError:
    """The error to raise: the first cause (a rank that died without a word, else the first
    report), what the others said, and where the ranks still running were."""
    reported = {e[1] for e in watch.errors}
    silent = [r for r, c in sorted(watch.dead.items())
              if c != 0 and r not in watch.results and r not in reported]
    if silent:  # died without a word (killed, os._exit): that is the cause
        r = silent[0]
        return PipelineError(f"rank {r} died (exit code {watch.dead[r]}) during "
                             f"{_progress_text(progress, r)}", rank=r, pids=pids)
    t, r, msg, tb = min(watch.errors)
    others = [e for e in sorted(watch.errors) if e[1] != r]
    extra = f" (then: {others[0][2]})" if others else ""
    running = [i for i in range(nprocs) if i not in watch.results and i not in reported
               and watch.dead.get(i, 0) == 0]
    if running:  # e.g. a hung rank: say where it was
        extra += "; still running when stopped: " + ", ".join(
            f"rank {i} at {_progress_text(progress, i)}" for i in running)
    return PipelineError(f"{msg}{extra}\n--- traceback of rank {r} ---\n{tb}", rank=r, pids=pids)


def spawn(fn: Callable[..., Any], nprocs: int, args: tuple = (), *, threads: int = 1,
          device: str | None = "cpu", timeout: float = 60.0, deadline: float = 600.0,
          on_progress: Callable[[list[tuple[int, int]]], None] | None = None) -> list[Any]:
    """Run ``fn(ctx, *args)`` on ``nprocs`` fresh processes; return each rank's result, by rank.

    The processes are ``torch.multiprocessing.start_processes(join=False)``; its
    ``ProcessContext.join`` notices a rank that exits with an error and stops the others. On top
    of it, the course keeps what torch does not do: each rank's result and error report (with
    the action it was running) over a pipe, progress, and an overall deadline.

    ``fn`` must live in an importable module (spawn pickles it by reference). ``timeout``:
    seconds one receive may wait (see :func:`init_from_env`); ``deadline``: seconds for the
    whole run. On any failure the other ranks are stopped and :class:`PipelineError` is raised.
    ``on_progress``, if given, is called about once a second in this process with each rank's
    ``(job, step)`` as reported by :meth:`DistContext.set_job` / :meth:`DistContext.set_action`."""
    validate.positive_int("nprocs", nprocs)
    validate.positive_int("threads", threads)
    if getattr(fn, "__module__", "__main__") == "__main__":
        raise ValueError("fn must be defined in an importable module (e.g. helpers), not in "
                         "__main__ or a notebook: spawned processes import it by name")
    mpctx = mp.get_context("spawn")
    progress = mpctx.Array("i", [0] * (_SLOTS * nprocs), lock=False)
    pipes = [mpctx.Pipe(duplex=False) for _ in range(nprocs)]
    readers, writers = [r for r, _ in pipes], [w for _, w in pipes]
    pc = mp.start_processes(_child, nprocs=nprocs, join=False, daemon=True, start_method="spawn",
                            args=(nprocs, free_port(), fn, args, writers, progress, threads, device,
                                  timeout))
    for w in writers:
        w.close()
    pids = tuple(p.pid for p in pc.processes)
    watch = _Watch(readers)
    end = time.monotonic() + deadline
    try:
        while len(watch.results) < nprocs:
            if on_progress is not None:
                on_progress([(progress[i * _SLOTS + 4], progress[i * _SLOTS]) for i in range(nprocs)])
            now = time.monotonic()
            if watch.failed_at is not None and now - watch.failed_at > 0.5:
                break  # the first failure plus half a second to collect the others' reports
            if now > end:
                stuck = ", ".join(f"rank {i} at {_progress_text(progress, i)}"
                                  for i in range(nprocs) if i not in watch.results)
                raise PipelineError(f"pipeline run exceeded its deadline of {deadline:.0f} s; "
                                    f"still running: {stuck}", pids=pids)
            watch.read(0.1 if watch.failed_at else 0.5)
            if watch.failed_at is None:
                try:
                    with _expected_terminations():
                        pc.join(timeout=0.0, grace_period=0.5)
                except mp.ProcessExitedException as exc:
                    watch.dead[exc.error_index] = exc.exit_code
                    watch.fail()
        if watch.failed_at is not None:
            watch.read(0.0)
            _note_exits(watch, pc.processes)
            raise _failure(watch, progress, nprocs, pids)
    finally:
        _stop(pc.processes)
        for r in readers:
            r.close()
    return [watch.results[i] for i in range(nprocs)]
