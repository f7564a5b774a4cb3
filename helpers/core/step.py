"""The one training step. Every path in the course calls it or its two halves.

    optimizer.zero_grad()
    for each micro-batch (x_i, y_i) of the batch, weight w_i = |x_i| / |x|:   # forward_backward
        with autocast(dtype):   logits = run_layers(apply_checkpointing(layers, policy), x_i)
        loss_i = w_i * cross_entropy(logits, y_i)        # weights make the sum the full-batch mean
        (scaler.scale(loss_i) if scaler else loss_i).backward()         # gradients accumulate
    unscale, clip by the norm of ALL gradients (all ranks), step, update scale, step the LR  # finish_step

A pipeline stage runs the same pieces on its slice of ``model.layers()``: :func:`forward` of its
layers, :func:`microbatch_loss` on the last stage, ``backward`` with the gradient received, and
:func:`finish_step` with ``group`` set so the clipping norm is the whole model's. Mixed precision
(lesson 03), checkpointing (lesson 04) and micro-batches (lessons 05, 08) are options here; the
model never knows about them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn as nn

from helpers import validate
from helpers.core.checkpoint import Layer, Policy, apply_checkpointing, as_policy, run_layers
from helpers.core.model import GPT, lm_loss


class Scaler(Protocol):
    """What a loss scaler offers (``torch.amp.GradScaler`` and lesson 03's ``LossScaler``)."""

    def scale(self, loss: torch.Tensor) -> torch.Tensor: ...
    def unscale_(self, optimizer: torch.optim.Optimizer) -> object: ...
    def step(self, optimizer: torch.optim.Optimizer) -> object: ...
    def update(self) -> object: ...
    def get_scale(self) -> float: ...


def autocast(device: str | torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; for None or float32 a no-op context
    (an autocast region around it, if any, stays in force)."""
    if dtype is None or dtype == torch.float32:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


@dataclass(frozen=True)
class StepConfig:
    """How one training step runs (all off by default: a plain fp32 full-batch step)."""

    autocast_dtype: torch.dtype | None = None
    """Matmul precision under autocast (bf16, fp16); None or float32: no autocast."""
    checkpoint: Policy | str = "none"
    """Which transformer blocks to checkpoint (:class:`~helpers.core.checkpoint.Policy`)."""
    clip: float | None = None
    """Clip the gradient norm of the whole model to this value before stepping; None: no clip."""
    n_microbatches: int = 1
    """Split the batch into this many micro-batches (``Tensor.tensor_split``) and accumulate."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", as_policy(self.checkpoint))
        validate.optional_positive("clip", self.clip)
        validate.positive_int("n_microbatches", self.n_microbatches)
        if self.autocast_dtype is not None and not isinstance(self.autocast_dtype, torch.dtype):
            raise TypeError(f"autocast_dtype must be a torch.dtype or None, got {self.autocast_dtype!r}")


@dataclass(frozen=True)
class StepStats:
    """One training step: the (unscaled) loss, the gradient norm before clipping (None without
    clipping), whether the optimizer step was skipped (inf/NaN gradients) and the loss scale used
    (None: no scaler). ``logits``: the batch's logits, when asked for."""

    loss: float
    grad_norm: float | None
    skipped: bool
    scale: float | None
    logits: torch.Tensor | None = None


# --------------------------------------------------------------------------- the forward half
def microbatches(x: torch.Tensor, y: torch.Tensor, n: int) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """``(x_i, y_i, w_i)``: ``n`` micro-batches by ``Tensor.tensor_split`` (sizes differ by at
    most one, larger first) and each one's share of the batch, so ``sum w_i mean_i`` is the
    full-batch mean."""
    n = validate.positive_int("n_microbatches", n)
    if x.shape[0] < n:
        raise ValueError(f"a batch of {x.shape[0]} rows cannot be split into m={n} micro-batches: "
                         "need batch size >= m (uneven splits are fine: sizes differ by <= 1)")
    return [(a, b, a.shape[0] / x.shape[0]) for a, b in zip(x.tensor_split(n), y.tensor_split(n), strict=True)]


def microbatch_sizes(batch: int, n: int) -> list[int]:
    """Rows of each of the ``n`` micro-batches of a batch of ``batch`` rows (the split above)."""
    empty = torch.empty(batch, 0)
    return [xm.shape[0] for xm, _, _ in microbatches(empty, empty, n)]


def forward(layers: Sequence[Layer], x: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` through ``layers`` (already transformed by ``apply_checkpointing``) under autocast."""
    with autocast(x.device, autocast_dtype):
        return run_layers(layers, x)


def microbatch_loss(logits: torch.Tensor, y: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """The micro-batch's mean cross-entropy (fp32) times its share of the batch."""
    loss = lm_loss(logits, y)
    return loss if weight == 1.0 else loss * weight


def _layers(model: GPT | Sequence[nn.Module], policy: Policy) -> list[Layer]:
    if isinstance(model, nn.Sequential):  # a pipeline stage: its layers in order
        model = list(model)
    if isinstance(model, nn.Module) and not isinstance(model, GPT):
        raise TypeError(f"model must be a helpers.core.GPT or a sequence of its layers, got "
                        f"{type(model).__name__}")
    return apply_checkpointing(model, policy)


def forward_backward(
    model: GPT | Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, config: StepConfig | None = None,
    scaler: Scaler | None = None, keep_logits: bool = False,
) -> tuple[float, torch.Tensor | None]:
    """Forward and backward of every micro-batch, gradients accumulated in ``.grad`` (not zeroed
    here). Returns the batch loss (sum of the weighted micro-batch losses) and, with
    ``keep_logits``, the batch's logits (detached)."""
    config = config or StepConfig()
    layers = _layers(model, config.checkpoint)
    total, outs = 0.0, []
    for xm, ym, w in microbatches(x, y, config.n_microbatches):
        logits = forward(layers, xm, config.autocast_dtype)
        loss = microbatch_loss(logits, ym, w)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss.item()
        if keep_logits:
            outs.append(logits.detach())
    return total, (torch.cat(outs) if keep_logits else None)


# --------------------------------------------------------------------------- the update half
def clip_grad_norm(params: Sequence[torch.nn.Parameter], max_norm: float, group: Any = None) -> torch.Tensor:
    """Clip the gradients by the norm of ALL of them, torchtitan-style: each process's
    ``torch.nn.utils.get_total_norm``; with a process ``group`` the squares are summed over its
    ranks by one ``all_reduce``; then ``clip_grads_with_norm_``. Returns the norm before clipping.
    In one process this is exactly ``torch.nn.utils.clip_grad_norm_``."""
    max_norm = validate.positive_finite("max_norm", max_norm)
    device = params[0].device if params else torch.device("cpu")
    params = [p for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in params]) if params else torch.zeros((), device=device)
    if group is not None:  # every rank joins, with or without gradients of its own
        import torch.distributed as dist  # only pipeline ranks pass a group

        total = total.pow(2)
        dist.all_reduce(total, group=group)
        total = total.sqrt()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def finish_step(
    optimizer: torch.optim.Optimizer, clip: float | None = None, *, scaler: Scaler | None = None,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, group: Any = None,
) -> tuple[float | None, bool]:
    """Unscale (with a scaler), clip, step the optimizer (skipped by the scaler on inf/NaN),
    update the scale, step the LR schedule. Returns (norm before clipping or None, skipped)."""
    if scaler is not None and group is not None:
        raise ValueError("a loss scaler across ranks would need its inf/NaN check reduced over the "
                         "group; use bf16 (no scaler) for a distributed step")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    stepped: list[bool] = []
    handle = optimizer.register_step_post_hook(lambda *_: stepped.append(True))
    try:
        if scaler is not None:
            scaler.unscale_(optimizer)  # true gradients from here on: clip them
        norm = None if clip is None else float(clip_grad_norm(params, clip, group))
        if scaler is not None:
            scaler.step(optimizer)  # skipped if unscale_ found an inf/NaN
            scaler.update()
        else:
            optimizer.step()
    finally:
        handle.remove()
    if lr_scheduler is not None:
        lr_scheduler.step()
    return norm, not stepped


# --------------------------------------------------------------------------- the step
def train_step(
    model: GPT | Sequence[nn.Module],
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor] | Callable[[], torch.Tensor],
    config: StepConfig | None = None,
    *,
    scaler: Scaler | None = None,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    after_backward: Callable[[], None] | None = None,
    keep_logits: bool = False,
) -> StepStats:
    """One optimiser step of ``model`` on ``batch`` as ``config`` says (see the module docstring).

    ``batch``: ``(x, y)`` token ids, or a zero-argument function returning the scalar loss of a
    model that is not the course GPT (then ``config`` may not ask for checkpointing or
    micro-batches). ``after_backward()`` runs after the last backward, before unscaling and
    clipping (to read or alter the raw gradients)."""
    config = config or StepConfig()
    optimizer.zero_grad(set_to_none=True)
    scale = scaler.get_scale() if scaler is not None else None
    logits = None
    if callable(batch):
        if config.checkpoint.name != "none" or config.n_microbatches != 1:
            raise ValueError("a loss function batch runs the model as it is: checkpoint must be "
                             "'none' and n_microbatches 1")
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if not params:
            raise ValueError("the optimizer has no parameters")
        device = params[0].device
        with autocast(device, config.autocast_dtype):
            loss = batch()
        if not torch.is_tensor(loss) or loss.ndim != 0:
            raise TypeError("the loss function must return a scalar tensor")
        (scaler.scale(loss) if scaler is not None else loss).backward()
        value = float(loss.detach())
    else:
        x, y = batch
        value, logits = forward_backward(model, x, y, config, scaler, keep_logits)
    if after_backward is not None:
        after_backward()
    norm, skipped = finish_step(optimizer, config.clip, scaler=scaler, lr_scheduler=lr_scheduler)
    return StepStats(loss=value, grad_norm=norm, skipped=skipped, scale=scale, logits=logits)
