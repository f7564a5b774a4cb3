"""Save and resume a pipelined run: one file per rank and a manifest (lesson 08).

After step ``k`` every rank writes ``save_dir/step-k/rank-g.pt`` with what its next step
depends on: its stages' weights, its optimiser's moments, the LR scheduler's position, its
random streams (dropout), the losses so far and ``k``. (No loss scaler: the pipeline's
mixed precision is bf16, which needs none.) Each file is written atomically with a SHA-256
inside (:func:`helpers.training.write_checkpoint`). When all ranks have written, rank 0 writes
``step-k/manifest.json`` -- the run's identity and every shard's file SHA-256 -- also
atomically. A step without a manifest is incomplete and is never loaded.

Loading (``job.resume=True``) picks the newest complete step; every rank checks the manifest's
identity against its own run and the SHA-256 of **every** shard before it touches anything, so
a corrupt, missing or mismatched shard stops all ranks with the same message naming it, and
changes nothing. Files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from helpers.training import CheckpointError, read_checkpoint, write_checkpoint

MANIFEST = "manifest.json"
FORMAT = "course-pipeline-checkpoint-v1"


def run_identity(job: Any, world: int) -> dict[str, object]:
    """What must match for a checkpoint to continue ``job`` on ``world`` ranks: sizes,
    schedule, grid, the training options, and a hash of the initial weights and of the batches."""
    with torch.random.fork_rng(devices=[]):  # planning may build a model: keep the rank's stream
        _, bounds = job.plan(world)
    h = hashlib.sha256()
    for k in sorted(job.state):
        h.update(k.encode())
        h.update(job.state[k].detach().cpu().contiguous().numpy().tobytes())
    for x, y in job.batches:
        h.update(x.numpy().tobytes())
        h.update(y.numpy().tobytes())
    return {"format": FORMAT, "model": asdict(job.config), "schedule": job.schedule,
            "m": job.n_microbatches, "v": job.chunks, "world": world, "dp": job.dp,
            "bounds": [list(b) for b in bounds], "optimizer": job.optimizer, "lr": job.lr,
            "amp": job.amp, "checkpoint": job.checkpoint, "clip": job.clip,
            "lr_schedule": None if job.lr_schedule is None else repr(job.lr_schedule),
            "steps": len(job.batches), "seed": job.seed, "data_sha256": h.hexdigest()}


def _step_dir(save_dir: str | os.PathLike, step: int) -> Path:
    return Path(save_dir) / f"step-{step:06d}"


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rng_state(device: torch.device) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0)}


def save(ex: Any, step: int) -> Path:
    """Write this rank's shard of the state after ``step`` steps; rank 0 then writes the
    manifest (all ranks call this together)."""
    job, ctx = ex.job, ex.ctx
    d = _step_dir(job.save_dir, step)
    shard = d / f"rank-{ctx.rank}.pt"
    state = {"identity": run_identity(job, ctx.world), "rank": ctx.rank, "step": step,
             "stages": {str(s): mod.state_dict() for s, mod in ex.mods.items()},
             "optimizer": ex.opt.state_dict(),
             "scheduler": None if ex.lr_sched is None else ex.lr_sched.state_dict(),
             "rng": _rng_state(ex.dev),
             "losses": torch.tensor(ex.result.losses, dtype=torch.float64)}
    write_checkpoint(shard, state)
    shas: list[Any] = [None] * ctx.world
    dist.all_gather_object(shas, (ctx.rank, shard.name, _file_sha(shard)))
    if ctx.rank == 0:
        manifest = {"identity": state["identity"], "step": step,
                    "shards": {str(r): {"file": name, "sha256": sha} for r, name, sha in shas}}
        fd, tmp = tempfile.mkstemp(prefix=MANIFEST + ".", suffix=".tmp", dir=d)
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / MANIFEST)
    dist.barrier()
    return shard


def latest(save_dir: str | os.PathLike) -> tuple[Path, dict] | None:
    """The newest step directory with a manifest, and the manifest (None if there is none)."""
    root = Path(save_dir)
    for d in sorted(root.glob("step-*"), reverse=True):
        m = d / MANIFEST
        if m.is_file():
            try:
                return d, json.loads(m.read_text())
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"manifest {m} is corrupted ({exc})") from exc
    return None


def _differences(a: dict, b: dict) -> list[str]:
    return [f"{k}: checkpoint {a.get(k)!r} vs this run {b.get(k)!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def verify(save_dir: str | os.PathLike, identity: dict, world: int) -> tuple[Path, dict]:
    """Check the newest complete checkpoint against this run (``run_identity(job, world)``) and
    every shard's SHA-256; returns (its directory, its manifest). Raises CheckpointError or
    ValueError naming what is wrong; reads only, so it can run in a notebook before any launch."""
    found = latest(save_dir)
    if found is None:
        raise CheckpointError(f"no complete pipeline checkpoint (a step-*/{MANIFEST}) in {save_dir}")
    d, manifest = found
    diffs = _differences(manifest.get("identity", {}), identity)
    if diffs:
        raise ValueError(f"checkpoint {d} was saved for a different run; differing fields: "
                         + "; ".join(diffs))
    shards = manifest.get("shards", {})
    if sorted(shards) != sorted(str(r) for r in range(world)):
        raise CheckpointError(f"checkpoint {d}: manifest lists shards {sorted(shards)}, this run has "
                              f"{world} ranks")
    for r in range(world):
        path = d / shards[str(r)]["file"]
        if not path.is_file():
            raise CheckpointError(f"checkpoint {d}: shard of rank {r} ({path.name}) is missing")
        if _file_sha(path) != shards[str(r)]["sha256"]:
            raise CheckpointError(f"checkpoint {d}: shard of rank {r} ({path.name}) is corrupted: "
                                  "its SHA-256 does not match the manifest")
    return d, manifest


def load(ex: Any) -> int:
    """Restore this rank's state from the newest complete checkpoint; returns its step."""
    job, ctx = ex.job, ex.ctx
    d, manifest = verify(job.save_dir, run_identity(job, ctx.world), ctx.world)
    state = read_checkpoint(d / manifest["shards"][str(ctx.rank)]["file"])
    if state.get("rank") != ctx.rank or state.get("step") != manifest["step"]:
        raise CheckpointError(f"checkpoint {d}: shard of rank {ctx.rank} holds rank {state.get('rank')}, "
                              f"step {state.get('step')}")
    if sorted(state["stages"]) != sorted(str(s) for s in ex.mods):
        raise CheckpointError(f"checkpoint {d}: shard of rank {ctx.rank} holds stages "
                              f"{sorted(state['stages'])}, this rank holds {sorted(ex.mods)}")
    dist.barrier()  # every rank has verified everything: only now change state
    for s, mod in ex.mods.items():
        mod.load_state_dict(state["stages"][str(s)])
    ex.opt.load_state_dict(state["optimizer"])
    if ex.lr_sched is not None:
        ex.lr_sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if ex.dev.type == "cuda":
        torch.cuda.set_rng_state(state["rng"]["cuda"], ex.dev)
    ex.result.losses = state["losses"].tolist()
    ex.next_step = int(state["step"])
    return ex.next_step
