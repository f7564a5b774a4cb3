"""Resumable single-process training of the course transformer (lesson 08).

:class:`Trainer` trains :class:`helpers.core.GPT` on the char task with AdamW and a
learning-rate schedule from lessons 01-02 (:class:`helpers.core.LRSchedule`), optionally under
autocast (bf16; fp16 + ``GradScaler`` on GPUs without bf16) and with gradient checkpointing of
the blocks: each step is :func:`helpers.core.train_step`, the same step (and the same
``torch.utils.checkpoint`` policy) as the pipeline's stages. Its whole state — model, optimiser, scheduler position, scaler, RNG streams and step —
goes into one checkpoint file:

- written atomically (temporary file + ``os.replace``): an interrupted save never leaves a
  half-written checkpoint in place of a good one;
- loaded with ``torch.load(weights_only=True)`` (no pickled code is executed);
- protected by a SHA-256 of its payload: a corrupted file raises :class:`CheckpointError`
  naming the file, and a checkpoint from a different model/run configuration raises a
  ``ValueError`` naming the fields that differ. Nothing is overwritten in either case.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from helpers import core, precision, seeds, validate
from helpers.core import LRSchedule, StepConfig, block_policy, train_step

FORMAT = "course-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupted or not a course checkpoint."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``amp``: autocast in low precision; ``checkpoint``: recompute blocks in backward."""

    steps: int = 200
    """Optimiser steps of the whole run."""
    batch_size: int = 16
    """Sequences per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate."""
    schedule: str = "cosine"
    """LR schedule name (:data:`helpers.core.LR_SCHEDULES`)."""
    warmup: int = 10
    """Linear warm-up steps before the schedule."""
    amp: bool = False
    """Autocast in low precision (bf16; fp16 with a loss scaler on GPUs without bf16)."""
    checkpoint: bool = False
    """Recompute every transformer block in backward (``torch.utils.checkpoint``)."""
    clip: float = 1.0
    """Clip the gradient norm to this value."""
    seed: int = field(default_factory=lambda: seeds.derive(0))  # COURSE_SEED's family
    """Initial weights and batch order."""

    def __post_init__(self) -> None:
        validate.positive_int("steps", self.steps)
        validate.positive_int("batch_size", self.batch_size)
        validate.positive_finite("lr", self.lr)
        validate.positive_finite("clip", self.clip)
        self.lr_schedule()  # validates the name and warm-up

    def lr_schedule(self) -> LRSchedule:
        """The learning-rate schedule of this run."""
        return LRSchedule(self.schedule, warmup=self.warmup)

    def step_config(self, dtype: torch.dtype | None) -> StepConfig:
        """The core step's options for this run (``dtype``: the autocast dtype chosen)."""
        return StepConfig(autocast_dtype=dtype, checkpoint=block_policy(self.checkpoint), clip=self.clip)


class Trainer:
    """Train the course transformer one step at a time; save and resume exactly."""

    def __init__(self, model_config: core.GPTConfig, task: core.CharTask, config: TrainConfig,
                 device: str = "cpu") -> None:
        self.model_config, self.task, self.config, self.device = model_config, task, config, device
        torch.manual_seed(config.seed)
        self.model = core.GPT(model_config).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=0.0)
        self.scheduler = config.lr_schedule().to_torch(self.optimizer, config.steps)
        # lesson 03's recipe: bf16 where supported, else fp16 with a loss scaler
        self.dtype = precision.choose_amp(device).autocast_dtype if config.amp else None
        self.scaler = torch.amp.GradScaler(device, enabled=self.dtype == torch.float16)
        self.step_config = config.step_config(self.dtype)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step_count = 0
        self.losses: list[float] = []

    # ------------------------------------------------------------------ training
    def step(self) -> float:
        """One optimiser step (:func:`helpers.core.train_step`); returns the training loss."""
        if self.step_count >= self.config.steps:
            raise ValueError(f"training already finished ({self.config.steps} steps)")
        x, y = self.task.batch(self.config.batch_size, self.model_config.block_size, self.generator)
        self.model.train()
        stats = train_step(self.model, self.optimizer, (x.to(self.device), y.to(self.device)),
                           self.step_config, scaler=self.scaler if self.scaler.is_enabled() else None,
                           lr_scheduler=self.scheduler)
        self.step_count += 1
        self.losses.append(stats.loss)
        return stats.loss

    def run(self, steps: int | None = None, progress: bool = False) -> list[float]:
        """Run ``steps`` more steps (default: to the end); returns the losses of these steps."""
        remaining = self.config.steps - self.step_count
        steps = remaining if steps is None else steps
        validate.integer("steps", steps, 0, remaining)
        out = []
        bar = None
        if progress:
            from tqdm.auto import tqdm  # optional: only with progress=True

            bar = tqdm(total=steps, desc="training", unit="step", leave=False)
        for _ in range(steps):
            out.append(self.step())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{out[-1]:.3f}")
        if bar is not None:
            bar.close()
        return out

    # ------------------------------------------------------------------ checkpoints
    def _identity(self) -> dict[str, object]:
        # everything that must match for a resumed run to continue the same run
        return {"model": asdict(self.model_config), "train": asdict(self.config),
                "vocab": "".join(self.task.tokenizer.chars), "device_type": self.device}

    def state_dict(self) -> dict[str, object]:
        np_state = np.random.get_state()
        return {
            "identity": self._identity(),
            "step": self.step_count,
            "losses": torch.tensor(self.losses, dtype=torch.float64),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "data": self.generator.get_state(),
                "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
                "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
            },
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the full training state to ``path`` atomically; returns the path."""
        return write_checkpoint(path, self.state_dict())

    def load(self, path: str | os.PathLike) -> None:
        """Restore the state saved by :meth:`save`. Raises :class:`CheckpointError` for a missing
        or corrupted file and ``ValueError`` for a checkpoint of a different configuration."""
        state = read_checkpoint(path)
        mine, theirs = self._identity(), state["identity"]
        diffs = _diff(theirs, mine)
        if diffs:
            raise ValueError(f"checkpoint {path} was saved for a different run; differing fields: "
                             + "; ".join(diffs))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.generator.set_state(rng["data"])
        n = rng["numpy"]
        np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
        p = rng["python"]
        random.setstate((p[-2], tuple(p[:-2]), p[-1]))
        self.step_count = int(state["step"])
        self.losses = state["losses"].tolist()


def write_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (a temporary file, fsync, ``os.replace``), with a
    SHA-256 of its serialised contents inside; :func:`read_checkpoint` verifies it."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(state, buf)
    blob = buf.getvalue()
    record = {"format": FORMAT, "sha256": hashlib.sha256(blob).hexdigest(),
              "payload": torch.frombuffer(bytearray(blob), dtype=torch.uint8)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and verify a checkpoint file (``weights_only=True``); returns its state dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle opcodes, ...
        raise CheckpointError(f"checkpoint {path} is corrupted or not a checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:120]})") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file")
    blob = record["payload"].numpy().tobytes()
    if hashlib.sha256(blob).hexdigest() != record["sha256"]:
        raise CheckpointError(f"checkpoint {path} is corrupted: its SHA-256 does not match its contents")
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def _diff(a: object, b: object, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: checkpoint {a!r} vs this run {b!r}"]
