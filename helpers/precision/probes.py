"""What low precision does to gradients (underflow to zero, error of parameter gradients) and
what a step saves for backward, by dtype."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from helpers.memory import record_saved_tensors
from helpers.precision.formats import check_device
from helpers.precision.ops import autocast_context, record_ops
from helpers.precision.scaler import LossScaler


# ----------------------------------------------------------------------------- gradient underflow
@dataclass
class GradProbe:
    """Gradients of one backward pass: of every ``nn.Linear`` output (in the dtype backward
    computed them, still multiplied by the loss scale) and of every parameter (unscaled, fp32)."""

    activations: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor]
    scale: float


def gradient_probe(
    model: nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    scaler: LossScaler | torch.amp.GradScaler | None = None,
) -> GradProbe:
    """One forward (under autocast to ``dtype``; None = fp32) and backward, recording gradients.

    With a ``scaler`` the loss is scaled before backward and the parameter gradients unscaled
    after it (``scaler.unscale_``), exactly as in training; the model is not updated."""
    check_device(device)
    acts: dict[str, torch.Tensor] = {}
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            def fwd(mod: nn.Module, args: object, out: torch.Tensor, name: str = name) -> None:
                if out.requires_grad:
                    out.register_hook(lambda g: acts.__setitem__(name, g.detach().clone()))
            handles.append(mod.register_forward_hook(fwd))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.0)  # only a container of parameters for unscale_
    try:
        model.zero_grad(set_to_none=True)
        with autocast_context(device, dtype):
            loss = loss_fn()
        scale = scaler.get_scale() if scaler is not None else 1.0
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(opt)
    finally:
        for h in handles:
            h.remove()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return GradProbe(activations=acts, params=grads, scale=scale)


def flushed_to_zero(probe: GradProbe, reference: GradProbe) -> float:
    """Fraction of activation-gradient elements that are exactly 0 in ``probe`` but not in the
    fp32 ``reference``: gradients that underflowed."""
    lost = total = 0
    for name, ref in reference.activations.items():
        g = probe.activations[name]
        lost += int(((g == 0) & (ref != 0)).sum())
        total += ref.numel()
    return lost / total


def param_grad_error(probe: GradProbe, reference: GradProbe) -> float:
    """Relative L2 error of all parameter gradients against the fp32 ``reference``."""
    num = sum(float((probe.params[n].double() - r.double()).norm() ** 2) for n, r in reference.params.items())
    den = sum(float(r.double().norm() ** 2) for r in reference.params.values())
    return math.sqrt(num / den)


# ----------------------------------------------------------------------------- memory
@dataclass(frozen=True)
class SavedBreakdown:
    """Bytes saved for backward by one forward pass: total (parameters excluded), of which the
    low-precision copies of weights that autocast made and saved, and the split by dtype."""

    total: int
    weight_copies: int
    by_dtype: dict[str, int]

    @property
    def activations_only(self) -> int:
        return self.total - self.weight_copies


def saved_breakdown(model: nn.Module, loss_fn: Callable[[], torch.Tensor], device: str = "cpu",
                    dtype: torch.dtype | None = None) -> SavedBreakdown:
    """Run ``loss_fn()`` under autocast to ``dtype`` and account what it saved for backward."""
    check_device(device)
    with record_saved_tensors(model) as log, record_ops(model) as ops, autocast_context(device, dtype):
        loss_fn()
    copies = sum(r.nbytes for r in log.unique if r.storage in ops.weight_copies)
    return SavedBreakdown(total=log.total_bytes, weight_copies=copies, by_dtype=log.by_dtype())
