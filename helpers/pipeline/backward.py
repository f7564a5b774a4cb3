"""The backward of a stage split in two, for the zero-bubble schedules (Qi et al. 2023, section 2):

- ``B`` -- the gradient of the stage's **input** (what the previous stage is waiting for), and
  of the output of every module that owns parameters;
- ``W`` -- the gradient of the **weights**, from those module outputs: ``dW = g^T x`` for a
  linear layer, needed by nobody until the optimiser step, so it can run whenever a rank idles.

Both are ``torch.autograd.grad`` calls on the stage's graph, which ``B`` keeps
(``retain_graph=True``) for ``W``::

    B:  (dL/dx, dL/do_1, ..., dL/do_k) = autograd.grad(out, [x, o_1, ..., o_k], g, retain_graph=True)
    W:  for each module j:  dL/dtheta_j = autograd.grad(o_j, theta_j, dL/do_j)

``o_j`` is the output of module ``j`` (a ``Linear``, ``LayerNorm`` or ``Embedding``), captured
by a forward hook. In ``B`` autograd skips every weight-gradient product (nothing asks for a
parameter), and in ``W`` it only walks from ``o_j`` to ``theta_j``, so the two together do the
work of one backward, no more -- and the same floating-point operations: the gradients are
bit-identical to ``loss.backward()``'s (tested). This is what torch.distributed.pipelining's
``stage_backward_input`` / ``stage_backward_weight`` do, at module instead of autograd-node
granularity. Checkpointed blocks rebuild their graph inside backward, so their outputs cannot be
captured in forward: a split backward needs ``checkpoint=False``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn


def weight_modules(stage: nn.Module) -> list[nn.Module]:
    """The modules of ``stage`` that own parameters directly, in forward order of definition.

    Raises ValueError if some parameter is owned by a module without a tensor output."""
    mods = [m for m in stage.modules() if any(True for _ in m.parameters(recurse=False))]
    owned = {id(p) for m in mods for p in m.parameters(recurse=False)}
    if owned != {id(p) for p in stage.parameters()}:
        raise ValueError("some parameters are not owned by any module (cannot split backward)")
    return mods


class OutputCapture:
    """Forward hooks on a stage's weight modules that record their outputs while active."""

    def __init__(self, stage: nn.Module) -> None:
        self.modules = weight_modules(stage)
        self._log: list[tuple[nn.Module, torch.Tensor]] | None = None
        self._handles = [m.register_forward_hook(self._hook) for m in self.modules]

    def _hook(self, module: nn.Module, _inputs: Any, output: Any) -> None:
        if self._log is None:
            return
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"{type(module).__name__} returns {type(output).__name__}: a split "
                            "backward needs weight modules with one tensor output")
        self._log.append((module, output))

    @contextmanager
    def record(self) -> Iterator[list[tuple[nn.Module, torch.Tensor]]]:
        """Collect (module, output) pairs of the forward run inside the block."""
        log: list[tuple[nn.Module, torch.Tensor]] = []
        self._log = log
        try:
            yield log
        finally:
            self._log = None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def backward_input(out: torch.Tensor, grad: torch.Tensor | None, inp: torch.Tensor | None,
                   captured: list[tuple[nn.Module, torch.Tensor]]
                   ) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
    """``B``: the gradient of ``inp`` (None for token ids) and of every captured output.

    ``out`` is the stage's output (the last stage's: its scalar loss, ``grad=None``)."""
    outputs = [o for _, o in captured if o.requires_grad]
    inputs = ([inp] if inp is not None else []) + outputs
    grads = torch.autograd.grad(out, inputs, grad_outputs=grad, retain_graph=True, allow_unused=True)
    g_inp = grads[0] if inp is not None else None
    rest = iter(grads[1:] if inp is not None else grads)
    return g_inp, [next(rest) if o.requires_grad else None for _, o in captured]


def backward_weight(captured: list[tuple[nn.Module, torch.Tensor]],
                    grads: list[torch.Tensor | None]) -> None:
    """``W``: accumulate every weight gradient into ``.grad`` from the captured outputs."""
    for (module, o), g in zip(captured, grads, strict=True):
        if g is None:
            continue
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        for p, gp in zip(params, torch.autograd.grad(o, params, g, allow_unused=True), strict=True):
            if gp is None:
                continue
            if p.grad is None:
                p.grad = gp
            else:
                p.grad.add_(gp)
