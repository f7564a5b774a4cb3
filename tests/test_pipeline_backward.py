"""The split backward (B, then W) gives loss.backward()'s gradients bit for bit, doing no extra
weight-gradient work in B."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from helpers import core
from helpers.core.step import forward, microbatch_loss
from helpers.pipeline.backward import OutputCapture, backward_input, backward_weight, weight_modules


def _models(seed: int = 0):
    task = core.char_task()
    cfg = task.config(n_layer=2, n_embd=32, n_head=4, block_size=16)
    torch.manual_seed(seed)
    a = core.GPT(cfg)
    b = core.GPT(cfg)
    b.load_state_dict(a.state_dict())
    return task, a, b


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("seed", [0, 1])
def test_split_equals_backward_bit_for_bit(dtype, seed):
    task, a, b = _models(seed)
    x, y = task.batch(6, 16, torch.Generator().manual_seed(seed + 10))
    for xm, ym in zip(x.tensor_split(3), y.tensor_split(3), strict=True):  # accumulate 3 micro-batches
        microbatch_loss(forward(a.layers(), xm, dtype), ym, len(xm) / len(x)).backward()
    cap = OutputCapture(nn.Sequential(*b.layers()))
    for i, (xm, ym) in enumerate(zip(x.tensor_split(3), y.tensor_split(3), strict=True)):
        with cap.record() as log:
            loss = microbatch_loss(forward(b.layers(), xm, dtype), ym, len(xm) / len(x))
        g_inp, g_out = backward_input(loss, None, None, log)
        assert g_inp is None and (i > 0 or all(p.grad is None for p in b.parameters()))  # B: no dW
        backward_weight(log, g_out)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa.grad, pb.grad), name


def test_b_computes_no_weight_gradient_and_the_input_gradient():
    task, a, b = _models()
    stage = nn.Sequential(*b.layers()[1:3])  # two blocks: a middle stage
    h = b.layers()[0](task.batch(2, 16, torch.Generator().manual_seed(3))[0]).detach()
    ref_in = h.clone().requires_grad_(True)
    ref_out = stage(ref_in)
    g = torch.randn_like(ref_out)
    ref_out.backward(g)
    ref_grads = [p.grad.clone() for p in stage.parameters()]
    for p in stage.parameters():
        p.grad = None
    cap = OutputCapture(stage)
    inp = h.clone().requires_grad_(True)
    with cap.record() as log:
        out = stage(inp)
    g_inp, g_out = backward_input(out, g, inp, log)
    assert all(p.grad is None for p in stage.parameters())  # B left the weights alone
    assert torch.equal(g_inp, ref_in.grad)
    backward_weight(log, g_out)
    assert all(torch.equal(p.grad, r) for p, r in zip(stage.parameters(), ref_grads, strict=True))
    cap.remove()


def test_weight_modules_cover_every_parameter_and_reject_odd_outputs():
    _, a, _ = _models()
    mods = weight_modules(a)
    assert {id(p) for m in mods for p in m.parameters(recurse=False)} == {id(p) for p in a.parameters()}

    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return x * self.w, x

    cap = OutputCapture(Pair())
    with pytest.raises(TypeError, match="one tensor output"), cap.record():
        cap.modules[0](torch.ones(2))
