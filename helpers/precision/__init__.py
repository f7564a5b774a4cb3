"""Mixed precision, lesson 03: number formats, autocast op by op, loss scaling, AMP training.

- :mod:`~helpers.precision.formats`: fp32, fp16, bf16 and every float8 dtype this torch has
  (bits, range, smallest normal and subnormal, machine epsilon), read from ``torch.finfo`` and
  cross-checked by enumerating the bit patterns of the narrow formats; rounding and spacing.
- :mod:`~helpers.precision.ops`: every aten op of a forward pass with its dtypes (autocast).
- :mod:`~helpers.precision.scaler`: :class:`LossScaler`, dynamic loss scaling written out with
  the interface and decisions of ``torch.amp.GradScaler``.
- :mod:`~helpers.precision.amp`: :func:`choose_amp` (CUDA: bf16 where supported, else fp16
  with a scaler; CPU: bf16), :func:`amp_step` (the core training step in a precision) and
  :func:`train_gpt` (any precision, pure low precision included).
- :mod:`~helpers.precision.rounding`: bf16 weights without master weights, round-to-nearest or
  stochastic rounding (:class:`BF16AdamW`).
- :mod:`~helpers.precision.emulate`: CUDA autocast's op lists on a CPU (:func:`cuda_autocast`).
- :mod:`~helpers.precision.probes`: gradient underflow and saved bytes by dtype.
- :mod:`~helpers.precision.timing`: matmul and step times (and CUDA peak memory).
- :mod:`~helpers.precision.plots`: the spacing picture.
"""

from __future__ import annotations

from helpers.precision.amp import (
    AmpConfig,
    StepStats,
    TrainRun,
    amp_step,
    autocast_supported,
    build_gpt,
    choose_amp,
    tf32_matmuls,
    train_gpt,
    val_loss_in,
)
from helpers.precision.emulate import cuda_autocast
from helpers.precision.formats import (
    DEVICES,
    DTYPE_NAMES,
    FLOAT8_NAMES,
    PRECISIONS,
    FormatInfo,
    check_device,
    float_formats,
    format_info,
    format_table,
    repeated_add,
    representable_values,
    resolve_dtype,
    round_to,
    short_name,
    spacing_curve,
    ulp,
)
from helpers.precision.ops import (
    VIEW_OPS,
    OpRecord,
    autocast_context,
    autocast_ops,
    op_summary,
    record_ops,
)
from helpers.precision.plots import (
    plot_spacing,
)
from helpers.precision.probes import (
    GradProbe,
    SavedBreakdown,
    flushed_to_zero,
    gradient_probe,
    param_grad_error,
    saved_breakdown,
)
from helpers.precision.rounding import BF16AdamW, stochastic_round_bf16
from helpers.precision.scaler import (
    LossScaler,
    ScalerEvent,
    make_scaler,
)
from helpers.precision.timing import (
    StepTiming,
    matmul_times,
    step_times,
)

__all__ = [
    "BF16AdamW",
    "cuda_autocast",
    "stochastic_round_bf16",
    "AmpConfig",
    "DEVICES",
    "DTYPE_NAMES",
    "FLOAT8_NAMES",
    "FormatInfo",
    "GradProbe",
    "LossScaler",
    "OpRecord",
    "PRECISIONS",
    "SavedBreakdown",
    "ScalerEvent",
    "StepStats",
    "StepTiming",
    "TrainRun",
    "VIEW_OPS",
    "amp_step",
    "autocast_context",
    "autocast_ops",
    "autocast_supported",
    "build_gpt",
    "check_device",
    "choose_amp",
    "val_loss_in",
    "float_formats",
    "flushed_to_zero",
    "format_info",
    "format_table",
    "gradient_probe",
    "make_scaler",
    "matmul_times",
    "op_summary",
    "param_grad_error",
    "plot_spacing",
    "record_ops",
    "repeated_add",
    "representable_values",
    "resolve_dtype",
    "round_to",
    "saved_breakdown",
    "short_name",
    "spacing_curve",
    "step_times",
    "tf32_matmuls",
    "train_gpt",
    "ulp",
]
