"""CUDA autocast's op policy, emulated on a CPU (lesson 03 §6, lesson 04 §1).

CPU and CUDA autocast cast the same matrix products down (``mm``, ``addmm``, ``bmm``, ``linear``,
``matmul``, ``scaled_dot_product_attention``), but their *fp32 lists* differ: CUDA autocast also
runs ``softmax``, ``log_softmax``, ``layer_norm`` and the other ops of its "ops that can autocast
to float32" list in fp32 (torch.amp documentation, *CUDA Ops that can autocast to float32*);
CPU autocast lets ``softmax`` follow its (bf16) input. That changes what backward saves: on
CUDA, the T×T attention probabilities are kept in fp32 *and* as the bf16 copy ``att @ v``
needs. And CUDA's fused dropout keeps a one-byte mask where the CPU keeps a float one.
:func:`cuda_autocast` runs CPU autocast and, on top, forces the functions of CUDA's fp32
list to fp32 and runs dropout as ``native_dropout``, so saved-tensor hooks can count a GPU's activation bytes on any machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from helpers import validate

#: the functions (by name) of CUDA autocast's fp32 list that a transformer's forward calls; the
#: full list (torch.amp docs) also holds losses and special functions the course model never uses
CUDA_FP32_FUNCTIONS = frozenset({
    "softmax", "log_softmax", "layer_norm", "group_norm", "cross_entropy", "nll_loss", "mse_loss",
    "l1_loss", "smooth_l1_loss", "kl_div", "binary_cross_entropy_with_logits", "exp", "log", "log1p",
    "expm1", "pow", "rsqrt", "reciprocal", "cumsum", "cumprod", "prod", "sum", "norm", "logsumexp",
    "softplus", "cosine_similarity", "cdist",
})


def _to_fp32(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_to_fp32(v) for v in value)
    return value


def _dropout_args(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
                  ) -> tuple[torch.Tensor, float, bool]:
    return input, p, training


class _ForceFP32(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) == "dropout":  # CUDA's fused dropout keeps a bool mask
            x, p, training = _dropout_args(*args, **kwargs)
            if training and p > 0:
                return torch.native_dropout(x, p, True)[0]
        if getattr(func, "__name__", None) in CUDA_FP32_FUNCTIONS:
            args, kwargs = _to_fp32(args), {k: _to_fp32(v) for k, v in kwargs.items()}
        return func(*args, **kwargs)


@contextmanager
def cuda_autocast(dtype: torch.dtype = torch.bfloat16) -> Iterator[None]:
    """CPU autocast to ``dtype`` with CUDA autocast's fp32 list enforced (see the module doc),
    and dropout as CUDA runs it (``native_dropout``: a one-byte mask; other random draws)."""
    validate.choice("dtype", dtype, (torch.bfloat16, torch.float16))
    with torch.autocast("cpu", dtype=dtype), _ForceFP32():
        yield
