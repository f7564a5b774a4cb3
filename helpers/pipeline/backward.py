"""The backward of a stage split in two, for the zero-bubble schedules (Qi et al. 2023, section 2):

- ``B`` -- the gradient of the stage's **input** (what the previous stage is waiting for);
- ``W`` -- the gradient of the **weights** of its linear layers, ``dW = g^T x``, needed by nobody
  until the optimiser step, so it can run whenever a rank would idle.

How: :func:`defer_weight_gradients` makes every ``nn.Linear`` of a stage run through
:class:`DeferredLinear`, an autograd function whose backward computes the input's gradient
``g W`` and, instead of ``g^T x``, leaves a note -- the layer's input ``x`` and output gradient
``g`` -- in a :class:`WeightGradStore`. ``B`` is then an ordinary ``backward`` of the stage
(which frees its graph as usual: what stays until ``W`` is only those inputs and gradients,
the memory Qi et al. count for W), and ``W`` runs the notes. LayerNorm and embedding weights,
small, get their gradients in ``B``, as in the zero-bubble authors' Megatron-LM implementation
(its ``WeightGradStore``). Outside :meth:`WeightGradStore.deferring` a note runs at once, so a
patched layer also works in an ordinary backward.

The products are the ones autograd's own linear backward runs (``grad.mm(W)`` and
``x^T.mm(grad)``, in the autocast dtype, then cast to the parameter's), so the gradients are
bit-identical to ``loss.backward()``'s (tested, fp32 and bf16 autocast). The notes keep every
linear layer's input until ``W``, which would undo what checkpointing saves, so the pipeline
jobs allow a split backward only with ``checkpoint=False``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


class WeightGradStore:
    """Weight-gradient work left by ``B``, per key (e.g. ``(micro-batch, stage)``), for ``W``."""

    def __init__(self) -> None:
        self.pending: dict[Hashable, list[Callable[[], None]]] = {}
        self._key: Hashable | None = None

    @contextmanager
    def deferring(self, key: Hashable) -> Iterator[None]:
        """Inside the block, linear layers' weight gradients are noted under ``key``."""
        if key in self.pending:
            raise ValueError(f"weight gradients for {key!r} are already waiting")
        self.pending[key] = []
        self._key = key
        try:
            yield
        finally:
            self._key = None

    def put(self, work: Callable[[], None]) -> None:
        if self._key is None:
            work()  # an ordinary backward: no one asked to defer
        else:
            self.pending[self._key].append(work)

    def run(self, key: Hashable) -> int:
        """``W``: run the work noted under ``key``; returns how many layers it was."""
        work = self.pending.pop(key)
        with torch.no_grad():  # like backward itself: no graph for the gradients' arithmetic
            for w in work:
                w()
        return len(work)


def _accumulate(p: torch.Tensor, g: torch.Tensor) -> None:
    g = g.to(p.dtype)
    if p.grad is None:
        p.grad = g.contiguous()
    else:
        p.grad.add_(g)


class DeferredLinear(torch.autograd.Function):
    """``F.linear`` whose backward defers the weight gradient to a :class:`WeightGradStore`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                store: WeightGradStore) -> torch.Tensor:
        dev = x.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        xc, wc = x.to(dtype), weight.to(dtype)  # what autocast would multiply
        bc = None if bias is None else bias.to(dtype)
        with torch.autocast(dev, enabled=False):
            out = F.linear(xc, wc, bc)
        ctx.save_for_backward(xc, wc)
        ctx.store, ctx.params = store, (weight, bias)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        xc, wc = ctx.saved_tensors
        weight, bias = ctx.params
        g2 = grad.reshape(-1, grad.shape[-1])
        gx = g2.mm(wc).view(*grad.shape[:-1], wc.shape[1])  # B: the input's gradient, now
        x2 = xc.detach().reshape(-1, xc.shape[-1])

        def weight_gradient() -> None:  # W: the same products as autograd's linear backward
            _accumulate(weight, x2.t().mm(g2).t())
            if bias is not None:
                _accumulate(bias, g2.sum(0))

        ctx.store.put(weight_gradient)
        return gx, None, None, None


def _deferred_forward(module: nn.Linear, store: WeightGradStore, x: torch.Tensor) -> torch.Tensor:
    return DeferredLinear.apply(x, module.weight, module.bias, store)


def defer_weight_gradients(stage: nn.Module, store: WeightGradStore) -> list[nn.Linear]:
    """Route every ``nn.Linear`` of ``stage`` through :class:`DeferredLinear` (its parameters,
    names and state dict unchanged); returns the layers. :func:`restore` undoes it."""
    layers = [m for m in stage.modules() if isinstance(m, nn.Linear)]
    for m in layers:
        m.forward = partial(_deferred_forward, m, store)  # type: ignore[method-assign]
    return layers


def restore(layers: list[nn.Linear]) -> None:
    """Give the layers back their own ``forward``."""
    for m in layers:
        m.__dict__.pop("forward", None)
