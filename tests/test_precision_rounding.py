"""Stochastic rounding to bf16 and the bf16 AdamW without master weights."""

import pytest
import torch

from helpers import core
from helpers import precision as P


def test_stochastic_rounding_is_unbiased_and_lands_on_neighbours():
    x = torch.full((200_000,), 1 + 2**-10)  # 1/8 of the way from 1 to the next bf16, 1 + 2^-7
    r = P.stochastic_round_bf16(x, torch.Generator().manual_seed(0)).float()
    assert set(r.unique().tolist()) == {1.0, 1 + 2**-7}
    assert abs(r.mean().item() - (1 + 2**-10)) < 3e-5  # unbiased (std of the mean ~ 1.6e-5)
    assert x.to(torch.bfloat16).float().unique().tolist() == [1.0]  # round to nearest: the update is lost
    exact = torch.tensor([1.0, -2.5, 0.0, 2**-130])  # representable values stay as they are
    assert torch.equal(P.stochastic_round_bf16(exact).float(), exact.to(torch.bfloat16).float())
    neg = P.stochastic_round_bf16(-x[:1000], torch.Generator().manual_seed(1)).float()
    assert set(neg.unique().tolist()) == {-1.0, -(1 + 2**-7)}


def test_bf16_adamw_small_updates_survive_only_with_stochastic_rounding():
    moved = {}
    for rounding in ("nearest", "stochastic"):
        w = torch.nn.Parameter(torch.ones(4096, dtype=torch.bfloat16))
        opt = P.BF16AdamW([w], rounding=rounding, lr=1e-3, weight_decay=0.0)
        for _ in range(50):
            w.grad = -torch.ones_like(w)  # every step pushes w up by ~lr, below half an ulp of 1.0
            opt.step()
        moved[rounding] = w.float().mean().item() - 1.0
    assert moved["nearest"] == 0.0
    assert abs(moved["stochastic"] - 50 * 1e-3) < 0.01


def test_bf16_adamw_checks_its_input():
    task = core.char_task()
    fp32 = core.GPT(task.config(n_layer=1, n_embd=16, n_head=2, block_size=8))
    with pytest.raises(TypeError, match="needs bf16 parameters"):
        P.BF16AdamW(fp32.parameters())
    with pytest.raises(ValueError, match="rounding must be one of"):
        P.BF16AdamW(fp32.to(torch.bfloat16).parameters(), rounding="up")
