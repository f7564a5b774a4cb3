"""Mixed-precision training: the autocast dtype per device (:func:`choose_amp`), one AMP step
(:func:`amp_step`, the core training step in a precision) and training the course transformer
in any precision, pure low precision included (:func:`train_gpt`)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from helpers import (
    seeds,
    validate,
)
from helpers.core import GPT, StepConfig, StepStats, train_step, val_loss
from helpers.precision.formats import DTYPE_NAMES, PRECISIONS, check_device, short_name
from helpers.precision.scaler import LossScaler, make_scaler


# ----------------------------------------------------------------------------- choosing the dtype
def autocast_supported(device: str, dtype: torch.dtype) -> bool:
    """Whether autocast on ``device`` really computes a matmul in ``dtype`` (probed: builds
    that lack support warn and silently fall back to fp32)."""
    check_device(device)
    if device == "cuda" and dtype == torch.bfloat16:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback warning is the answer we probe for
        try:
            a = torch.ones(2, 2, device=device)
            with torch.autocast(device_type=device, dtype=dtype):
                out = a @ a
        except RuntimeError:
            return False
    return out.dtype == dtype


@dataclass(frozen=True)
class AmpConfig:
    """How to run a training step: autocast dtype (float32 = off), scaler, TF32, pure."""

    precision: str
    """One of PRECISIONS except 'auto'."""
    device: str
    """'cpu' or 'cuda'."""
    dtype: torch.dtype
    """Compute dtype of matmuls (autocast) or storage dtype (pure)."""
    use_scaler: bool
    """fp16 under autocast needs dynamic loss scaling."""
    tf32: bool = False
    """CUDA fp32 matmuls in TensorFloat-32."""
    pure: bool = False
    """The whole model stored in ``dtype`` (no fp32 master weights)."""

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return None if self.pure or self.dtype == torch.float32 else self.dtype


def choose_amp(device: str = "cpu", precision: str = "auto") -> AmpConfig:
    """The AMP recipe for ``device``. ``'auto'``: CUDA -> bf16 if the GPU supports it, else fp16
    with a loss scaler; CPU -> bf16. Explicit precisions are checked against the device."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    check_device(device)
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if autocast_supported("cuda", torch.bfloat16) else "fp16"
        else:
            precision = "bf16"
    if precision == "fp32":
        return AmpConfig("fp32", device, torch.float32, use_scaler=False)
    if precision == "tf32":
        if device != "cuda":
            raise ValueError("precision='tf32' is a CUDA matmul mode; on device='cpu' use 'fp32' or 'bf16'")
        return AmpConfig("tf32", device, torch.float32, use_scaler=False, tf32=True)
    pure = precision.startswith("pure-")
    dtype = DTYPE_NAMES[precision.removeprefix("pure-")]
    if not pure and not autocast_supported(device, dtype):
        raise ValueError(f"precision={precision!r}: autocast to {short_name(dtype)} is not supported on "
                         f"device={device!r} with this torch build/hardware; use 'auto' or 'fp32'")
    return AmpConfig(precision, device, dtype, use_scaler=(dtype == torch.float16 and not pure), pure=pure)


@contextmanager
def tf32_matmuls(enabled: bool = True) -> Iterator[None]:
    """Allow (or forbid) TensorFloat-32 for CUDA fp32 matmuls inside the block; restore after."""
    matmul = torch.backends.cuda.matmul
    old = matmul.fp32_precision
    matmul.fp32_precision = "tf32" if enabled else "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision = old


# ----------------------------------------------------------------------------- the AMP step
def amp_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor] | Callable[[], torch.Tensor],
    amp: AmpConfig,
    scaler: LossScaler | torch.amp.GradScaler | None = None,
    max_grad_norm: float | None = None,
    after_backward: Callable[[], None] | None = None,
) -> StepStats:
    """One mixed-precision training step: :func:`helpers.core.step.train_step` in ``amp``'s
    precision.

    ``batch``: ``(x, y)`` for the course GPT, or a function that runs the forward pass (under
    autocast here) and returns the scalar loss. With a scaler: ``scale(loss).backward()``,
    ``unscale_`` (so clipping sees true gradients), clip, ``step`` (skipped on inf/NaN),
    ``update``. The parameters are the fp32 master weights: autocast casts copies of them to low
    precision for the matmuls; the optimizer updates fp32. ``after_backward()`` (optional) runs
    right after the backward pass (e.g. to inject an inf).
    """
    if amp.use_scaler and scaler is None:
        raise ValueError(f"precision={amp.precision!r} needs a loss scaler: pass scaler=LossScaler() "
                         "or torch.amp.GradScaler()")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not amp.pure:
        low = sorted({short_name(p.dtype) for p in params if p.dtype != torch.float32})
        if low:
            raise TypeError(f"AMP keeps fp32 master weights but the model has {low} parameters; "
                            "use a pure-* precision for a low-precision model")
    config = StepConfig(autocast_dtype=amp.autocast_dtype, clip=max_grad_norm)
    with tf32_matmuls() if amp.tf32 else nullcontext():  # covers forward and backward
        return train_step(model, optimizer, batch, config, scaler=scaler, after_backward=after_backward)


# ----------------------------------------------------------------------------- training runs
@dataclass
class TrainRun:
    """A training run: per-step losses, skipped flags and scales, the final validation loss and
    the trained model."""

    precision: str
    losses: list[float] = field(default_factory=list)
    skipped: list[bool] = field(default_factory=list)
    scales: list[float | None] = field(default_factory=list)
    val_loss: float = math.nan
    seconds: float = 0.0
    model: nn.Module | None = field(default=None, repr=False)


def build_gpt(cfg, seed: int | None = None, device: str = "cpu", amp: AmpConfig | None = None) -> nn.Module:  # noqa: ANN001
    """The course GPT with the initialisation of ``seed``, on ``device``; in ``amp.dtype`` if pure."""
    seed = seeds.resolve(seed, 0)
    torch.manual_seed(seed)
    model = GPT(cfg).to(device)
    if amp is not None and amp.pure:
        model = model.to(amp.dtype)
    return model


@torch.no_grad()
def val_loss_in(model: nn.Module, task, amp: AmpConfig, batches: int = 4, batch_size: int = 32,  # noqa: ANN001
             seed: int | None = None) -> float:
    """Mean validation loss over fixed batches, in the run's precision, on its device."""
    seed = seeds.resolve(seed, 1)
    return val_loss(model, task, batches=batches, batch_size=batch_size, seed=seed,
                        device=amp.device, autocast_dtype=amp.autocast_dtype)


def train_gpt(
    task,  # noqa: ANN001 - helpers.core.CharTask
    cfg,  # noqa: ANN001 - helpers.core.GPTConfig
    precision: str = "auto",
    steps: int = 100,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int | None = None,
    device: str = "cpu",
    scaler: str = "torch",
    max_grad_norm: float | None = 1.0,
    scaler_kwargs: dict[str, Any] | None = None,
    hook: Callable[[int, nn.Module], None] | None = None,
) -> TrainRun:
    """Train the course transformer for ``steps`` AdamW steps in ``precision``.

    The same ``seed`` gives the same initial weights and batches in every precision, so runs are
    directly comparable. fp16 under autocast uses a loss scaler (``scaler='torch'`` or
    ``'course'``); ``pure-*`` stores weights, gradients and optimizer state in low precision.
    ``hook(step, model)`` (optional) runs after the backward pass, before the optimizer step is
    taken, e.g. to inject an overflow."""
    seed = seeds.resolve(seed, 0)
    amp = choose_amp(device, precision)
    validate.positive_int("steps", steps)
    model = build_gpt(cfg, seed, device, amp)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sc = make_scaler(scaler, device, **(scaler_kwargs or {})) if amp.use_scaler else None
    g = torch.Generator().manual_seed(seed)
    run = TrainRun(precision=amp.precision)
    t0 = time.perf_counter()
    for step in range(steps):
        x, y = task.batch(batch_size, cfg.block_size, g)
        x, y = x.to(device), y.to(device)
        after = None if hook is None else (lambda s=step: hook(s, model))
        stats = amp_step(model, opt, (x, y), amp, sc, max_grad_norm, after)
        run.losses.append(stats.loss)
        run.skipped.append(stats.skipped)
        run.scales.append(stats.scale)
    run.seconds = time.perf_counter() - t0
    run.val_loss = val_loss_in(model, task, amp)
    run.model = model
    return run
