"""fp8 training, emulated on any CPU (lesson 03 §8).

An fp8 matmul as Hopper-class GPUs run it (and torchao's ``convert_to_float8_training`` drives):
scale each operand so that its largest magnitude (``amax``) lands at the format's largest
finite value, cast to fp8, multiply with **fp32 accumulation**, divide the product by the two
scales. Forward operands in E4M3 (more precision), gradients in E5M2 (more range)
(Micikevicius et al. 2022, *FP8 Formats for Deep Learning*, §3). Scales are computed from the
current tensor ("dynamic"/"current" scaling; torchao's default recipes), either one per tensor
(``'tensor'``) or one per row of each operand (``'row'``, which factors out of the sum: row i of
A and row j of Bᵀ). Here the fp8 values are real ``float8_*`` tensors, upcast to fp32 for the
product: the rounding is exactly fp8's; only the speed is not (that needs fp8 Tensor Cores).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from helpers import validate

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2
GRANULARITIES = ("tensor", "row")


def quantize(x: torch.Tensor, dtype: torch.dtype = E4M3, granularity: str = "tensor") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x * scale)`` cast to fp8, and ``scale`` (fp32; one per tensor, or per row: shape (..., 1))."""
    validate.choice("dtype", dtype, (E4M3, E5M2))
    validate.choice("granularity", granularity, GRANULARITIES)
    x = x.float()
    amax = x.abs().amax() if granularity == "tensor" else x.abs().amax(dim=-1, keepdim=True)
    scale = torch.finfo(dtype).max / amax.clamp(min=1e-12)
    return (x * scale).clamp(-torch.finfo(dtype).max, torch.finfo(dtype).max).to(dtype), scale


def fp8_mm(a: torch.Tensor, b_t: torch.Tensor, a_dtype: torch.dtype = E4M3, b_dtype: torch.dtype = E4M3,
           granularity: str = "tensor") -> torch.Tensor:
    """``a @ b_t.T`` (a: (M, K), b_t: (N, K)) with both operands quantised to fp8, fp32 accumulation."""
    qa, sa = quantize(a, a_dtype, granularity)
    qb, sb = quantize(b_t, b_dtype, granularity)
    out = qa.float() @ qb.float().T
    return out / (sa * (sb if granularity == "tensor" else sb.T))


class _Fp8Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, granularity: str) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x, weight)
        ctx.granularity = granularity
        x2 = x.reshape(-1, x.shape[-1])
        return fp8_mm(x2, weight, E4M3, E4M3, granularity).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        g = grad_out.reshape(-1, grad_out.shape[-1])
        x2 = x.reshape(-1, x.shape[-1])
        grad_x = fp8_mm(g, weight.T, E5M2, E4M3, ctx.granularity)  # dY W: gradients in E5M2
        grad_w = fp8_mm(g.T, x2.T, E5M2, E4M3, ctx.granularity)  # dY^T X
        return grad_x.reshape(x.shape), grad_w, None


class Fp8Linear(nn.Linear):
    """``nn.Linear`` whose matmuls run in emulated fp8 (bias added in fp32)."""

    granularity: str = "tensor"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _Fp8Linear.apply(x, self.weight, self.granularity)
        return y if self.bias is None else y + self.bias


def convert_to_fp8_emulation(model: nn.Module, granularity: str = "tensor",
                             module_filter_fn: Callable[[nn.Module, str], bool] | None = None) -> nn.Module:
    """Swap every ``nn.Linear`` (for which ``module_filter_fn(module, name)`` is true; default:
    every Linear whose both sizes are multiples of 16, as fp8 kernels need) for an
    :class:`Fp8Linear` sharing its parameters, in place, like torchao's
    ``convert_to_float8_training``. Returns ``model``."""
    validate.choice("granularity", granularity, GRANULARITIES)
    keep = module_filter_fn or (lambda m, name: m.in_features % 16 == 0 and m.out_features % 16 == 0)
    for name, module in list(model.named_modules()):
        if type(module) is nn.Linear and keep(module, name):
            module.__class__ = Fp8Linear
            module.granularity = granularity
    return model


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """||approx - exact|| / ||exact|| (Frobenius)."""
    return float((approx.float() - exact.float()).norm() / exact.float().norm())


__all__ = ["E4M3", "E5M2", "GRANULARITIES", "Fp8Linear", "convert_to_fp8_emulation", "fp8_mm", "quantize",
           "relative_error"]
