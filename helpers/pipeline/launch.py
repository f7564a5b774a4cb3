"""Start pipeline ranks: from a notebook (spawned processes) or under ``torchrun``.

Both paths end in the same place: ``torch.distributed`` initialised through ``env://``
(``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``), one torch thread per rank by default,
and the backend chosen from the device: **NCCL** when every local rank can have its own GPU,
**gloo** on CPU. Nothing else changes between a laptop, one GPU node and several nodes.

:func:`spawn` is the notebook launcher. The parent watches every child; if one raises or dies,
it stops the others within a couple of seconds and raises :class:`PipelineError` naming the
rank and the action it was running (children report their current action into shared memory).
Every wait is bounded: the process group has an operation timeout, and ``spawn`` has an overall
deadline. Children are daemonic, so none outlives the notebook kernel (if the kernel is killed
outright, they stop at their next receive's timeout).
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import wait as mp_wait
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers.core.device import course_device

#: progress slots per rank in shared memory: step, kind (0 idle, 1 F, 2 B, 3 other), mb, stage,
#: job (index in the list a rank works through)
_SLOTS = 5
_KINDS = {0: "starting", 1: "F", 2: "B", 3: "optimizer step"}


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
            code = {"F": 1, "B": 2}.get(kind, 3)
            base = self.rank * _SLOTS
            self.progress[base : base + 4] = [step, code, mb, stage]

    def set_job(self, index: int) -> None:
        """Record which job (of the list this rank works through) starts now (at step 0)."""
        if self.progress is not None:
            self.progress[self.rank * _SLOTS + 4] = index
        self.set_action(0, f"start of job {index}")


def _describe(step: int, kind: str, mb: int, stage: int) -> str:
    if kind in ("F", "B"):
        word = "forward" if kind == "F" else "backward"
        return f"step {step}, {kind}(mb={mb}, stage={stage}) [{word}]"
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
           conn: Any, progress: Any, threads: int, device: str | None, timeout: float) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    ctx = None
    try:
        ctx = init_from_env(threads=threads, device=device, timeout=timeout, progress=progress)
        result = fn(ctx, *args)
        conn.send_bytes(pickle.dumps(("ok", rank, result)))
    except BaseException as exc:  # noqa: BLE001 - report everything, then die
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


def spawn(fn: Callable[..., Any], nprocs: int, args: tuple = (), *, threads: int = 1,
          device: str | None = "cpu", timeout: float = 60.0, deadline: float = 600.0,
          on_progress: Callable[[list[tuple[int, int]]], None] | None = None) -> list[Any]:
    """Run ``fn(ctx, *args)`` on ``nprocs`` fresh processes; return each rank's result, by rank.

    ``fn`` must live in an importable module (spawn pickles it by reference). ``timeout``:
    seconds one receive may wait (see :func:`init_from_env`); ``deadline``: seconds for the
    whole run. On any failure the other ranks are stopped and :class:`PipelineError` is raised.
    ``on_progress``, if given, is called about once a second in this process with each rank's
    ``(job, step)`` as reported by :meth:`DistContext.set_job` / :meth:`DistContext.set_action`."""
    if isinstance(nprocs, bool) or not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"nprocs must be a positive int, got {nprocs!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if getattr(fn, "__module__", "__main__") == "__main__":
        raise ValueError("fn must be defined in an importable module (e.g. helpers), not in "
                         "__main__ or a notebook: spawned processes import it by name")
    ctx = mp.get_context("spawn")
    progress = ctx.Array("i", [0] * (_SLOTS * nprocs), lock=False)
    port = free_port()
    readers, procs = [], []
    for rank in range(nprocs):
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, name=f"pipeline-rank{rank}", daemon=True,
                        args=(rank, nprocs, port, fn, args, w, progress, threads, device, timeout))
        p.start()
        w.close()
        readers.append(r)
        procs.append(p)
    pids = tuple(p.pid for p in procs)
    results: dict[int, Any] = {}
    errors: list[tuple[float, int, str, str]] = []
    dead: dict[int, int] = {}
    reader_rank = {id(r): i for i, r in enumerate(readers)}
    sentinel_rank = {p.sentinel: i for i, p in enumerate(procs)}
    open_readers = list(readers)
    end = time.monotonic() + deadline
    failed_at = None
    try:
        while len(results) < nprocs:
            if on_progress is not None:
                on_progress([(progress[i * _SLOTS + 4], progress[i * _SLOTS]) for i in range(nprocs)])
            now = time.monotonic()
            if failed_at is not None and now - failed_at > 0.5:
                break  # the first failure plus half a second to collect the others' reports
            if now > end:
                stuck = ", ".join(f"rank {i} at {_progress_text(progress, i)}"
                                  for i in range(nprocs) if i not in results)
                raise PipelineError(f"pipeline run exceeded its deadline of {deadline:.0f} s; "
                                    f"still running: {stuck}", pids=pids)
            live_sentinels = [p.sentinel for i, p in enumerate(procs) if i not in dead]
            ready = mp_wait(open_readers + live_sentinels, timeout=0.1 if failed_at else 1.0)
            for obj in ready:
                if id(obj) in reader_rank:
                    rank = reader_rank[id(obj)]
                    try:
                        msg = pickle.loads(obj.recv_bytes())
                    except (EOFError, OSError):
                        open_readers.remove(obj)
                        continue
                    if msg[0] == "ok":
                        results[rank] = msg[2]
                    else:
                        errors.append((msg[2], rank, msg[3], msg[4]))
                        failed_at = failed_at or time.monotonic()
                else:
                    rank = sentinel_rank[obj]
                    procs[rank].join(0.1)
                    code = procs[rank].exitcode
                    dead[rank] = code if code is not None else -1
                    if code != 0 and rank not in results:
                        failed_at = failed_at or time.monotonic()
        if failed_at is not None:
            silent = [r for r, c in sorted(dead.items())
                      if c != 0 and r not in results and r not in {e[1] for e in errors}]
            if silent:  # died without a word (killed, os._exit): that is the cause
                r = silent[0]
                raise PipelineError(f"rank {r} died (exit code {dead[r]}) during "
                                    f"{_progress_text(progress, r)}", rank=r, pids=pids)
            t, r, msg, tb = min(errors)
            others = [e for e in sorted(errors) if e[1] != r]
            extra = f" (then: {others[0][2]})" if others else ""
            running = [i for i in range(nprocs) if i not in results and i not in dead
                       and i not in {e[1] for e in errors}]
            if running:  # e.g. a hung rank: say where it was
                extra += "; still running when stopped: " + ", ".join(
                    f"rank {i} at {_progress_text(progress, i)}" for i in running)
            raise PipelineError(f"{msg}{extra}\n--- traceback of rank {r} ---\n{tb}", rank=r,
                                pids=pids)
    finally:
        _stop(procs)
        for r in readers:
            r.close()
    return [results[i] for i in range(nprocs)]
