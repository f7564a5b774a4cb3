"""The split backward (B, then W) gives loss.backward()'s gradients bit for bit, frees the
graph in B (only the linear layers' inputs and output gradients wait for W), and computes no
weight gradient of a linear layer in B."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from helpers import core, memory
from helpers.core.step import forward, microbatch_loss
from helpers.pipeline.backward import WeightGradStore, defer_weight_gradients, restore


def _models(seed: int = 0, bias: bool = True):
    task = core.char_task()
    cfg = task.config(n_layer=2, n_embd=32, n_head=4, block_size=16, bias=bias)
    torch.manual_seed(seed)
    a = core.GPT(cfg)
    b = core.GPT(cfg)
    b.load_state_dict(a.state_dict())
    return task, a, b


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("seed, bias", [(0, True), (1, False)])
def test_split_equals_backward_bit_for_bit(dtype, seed, bias):
    task, a, b = _models(seed, bias)
    x, y = task.batch(6, 16, torch.Generator().manual_seed(seed + 10))
    parts = list(zip(x.tensor_split(3), y.tensor_split(3), strict=True))
    for xm, ym in parts:  # accumulate 3 micro-batches
        microbatch_loss(forward(a.layers(), xm, dtype), ym, len(xm) / len(x)).backward()
    store = WeightGradStore()
    layers = defer_weight_gradients(nn.Sequential(*b.layers()), store)
    for i, (xm, ym) in enumerate(parts):
        loss = microbatch_loss(forward(b.layers(), xm, dtype), ym, len(xm) / len(x))
        with store.deferring(i):
            loss.backward()  # B
        assert all(lin.weight.grad is None for lin in layers) or i > 0  # B left dW alone
    for i in range(3):
        assert store.run(i) == len(layers)  # W
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa.grad, pb.grad), name
        assert pb.grad.grad_fn is None and not pb.grad.requires_grad
    restore(layers)
    assert all("forward" not in lin.__dict__ for lin in layers)


def test_b_frees_the_graph_and_w_frees_its_notes():
    _, a, _ = _models()
    stage = nn.Sequential(*a.layers()[1:3])  # two blocks
    h = torch.randn(4, 16, 32)
    store = WeightGradStore()
    layers = defer_weight_gradients(stage, store)
    with memory.track_live_tensors(stage) as tr:
        inp = h.clone().requires_grad_(True)
        out = stage(inp)
        tr.mark("forward")
        with store.deferring(0):
            out.backward(torch.ones_like(out))
        del out
        tr.mark("B")
        store.run(0)
        tr.mark("W")
    # after W only the input and its gradient are left, as after an ordinary backward
    assert tr.log.bytes_at("W") == 2 * inp.numel() * 4
    assert tr.log.bytes_at("B") > tr.log.bytes_at("W")  # the notes (inputs, output gradients)
    assert not store.pending
    restore(layers)


def test_outside_deferring_the_work_runs_at_once_and_bad_keys():
    _, a, b = _models()
    store = WeightGradStore()
    layers = defer_weight_gradients(nn.Sequential(*b.layers()), store)
    x = torch.zeros(2, 16, dtype=torch.long)
    a(x)[0].sum().backward()
    b(x)[0].sum().backward()  # an ordinary backward: nothing deferred
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with store.deferring("k"):
        pass
    with pytest.raises(ValueError, match="already waiting"), store.deferring("k"):
        pass
    restore(layers)
