"""bf16 weights without fp32 master weights: round-to-nearest against stochastic rounding
(lesson 03 §3).

An update smaller than half an ulp of a bf16 weight is lost under round-to-nearest, every step.
*Stochastic rounding* rounds up with probability equal to the fraction of the gap covered, so
the rounded weight is right **in expectation** and small updates accumulate on average (Gupta
et al. 2015, *Deep Learning with Limited Numerical Precision*; Zamirai et al. 2020, *Revisiting
BFloat16 Training*, use it for bf16 weights). For bf16 it is three lines on fp32 bits: add
random 16 low bits, then truncate them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from helpers import validate

ROUNDINGS = ("nearest", "stochastic")


def stochastic_round_bf16(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` rounded to bf16, up or down at random with the probabilities that make it unbiased."""
    bits = x.detach().float().contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, bits.shape, dtype=torch.int32, device=x.device, generator=generator)
    return ((bits + noise) & -65536).view(torch.float32).to(torch.bfloat16)  # low 16 bits cleared: exact


class BF16AdamW(torch.optim.Optimizer):
    """AdamW for a model stored in bf16, without master weights: each step computes the update in
    fp32 (moments kept in fp32) and writes the new weight back to bf16 by ``rounding``. The fp32
    copy is rebuilt from the bf16 weight every step, so it carries no extra precision between steps."""

    def __init__(self, params: Iterable[torch.nn.Parameter], rounding: str = "nearest", seed: int = 0,
                 **adamw_kwargs: object) -> None:
        params = list(params)
        if any(p.dtype != torch.bfloat16 for p in params):
            raise TypeError("BF16AdamW needs bf16 parameters (build the model with precision 'pure-bf16')")
        self.rounding = validate.choice("rounding", rounding, ROUNDINGS)
        super().__init__(params, {})
        self.shadows = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        self.inner = torch.optim.AdamW(self.shadows, **adamw_kwargs)
        self.generator = torch.Generator(device=params[0].device if params else "cpu").manual_seed(seed)

    @torch.no_grad()
    def step(self, closure: object = None) -> None:
        params = [p for g in self.param_groups for p in g["params"]]
        for p, s in zip(params, self.shadows, strict=True):
            s.copy_(p)
            s.grad = None if p.grad is None else p.grad.float()
        self.inner.step()
        for p, s in zip(params, self.shadows, strict=True):
            p.copy_(stochastic_round_bf16(s, self.generator) if self.rounding == "stochastic" else s)
