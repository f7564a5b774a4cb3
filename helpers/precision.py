"""Mixed precision, lesson 03: number formats, autocast op by op, loss scaling, AMP training.

Four parts, each usable on its own:

- **formats**: :func:`format_info` / :func:`format_table` describe fp32, fp16, bf16 and every
  float8 dtype this torch has (bits, range, smallest normal and subnormal, machine epsilon), read
  from ``torch.finfo`` and cross-checked by enumerating the bit patterns of the narrow formats;
  :func:`representable_values` and :func:`spacing_curve` feed the spacing picture.
- **autocast, op by op**: :func:`autocast_ops` records every aten op of a forward pass with its
  input and output dtypes (a ``TorchDispatchMode``); :func:`op_summary` makes the table.
- **loss scaling**: :class:`LossScaler`, dynamic loss scaling written out, with the interface
  and the decisions of ``torch.amp.GradScaler`` (scale, check for inf/NaN, unscale, skip, back
  off, grow), so either can drive :func:`amp_step`.
- **training**: :func:`choose_amp` picks the autocast dtype per device (CUDA: bf16 where
  supported, else fp16 with a scaler; CPU: bf16), :func:`amp_step` is one AMP step (autocast,
  scaled backward, unscale, clip, step, fp32 master weights), :func:`train_gpt` trains the course
  transformer in any precision including *pure* low precision, and :func:`step_times` /
  :func:`matmul_times` measure speed and (on CUDA) peak memory.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import seeds

# ----------------------------------------------------------------------------- names and dtypes
#: accepted names for the three training dtypes
DTYPE_NAMES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}

#: float8 formats, in display order; those this torch build lacks are skipped
FLOAT8_NAMES = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu")

#: precisions :func:`choose_amp` / :func:`train_gpt` accept. ``tf32`` is fp32 storage with
#: TensorFloat-32 matmuls (CUDA only); ``pure-*`` stores the whole model in low precision.
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16", "pure-bf16", "pure-fp16")

DEVICES = ("cpu", "cuda")


def short_name(dtype: torch.dtype) -> str:
    """'float32', 'bfloat16', 'float8_e4m3fn', ... (the dtype without ``torch.``)."""
    return str(dtype).replace("torch.", "")


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """``'fp16'``/``'float16'``/``'half'``/``torch.float16`` -> ``torch.float16`` (also fp32, bf16)."""
    if isinstance(name, torch.dtype):
        if name in DTYPE_NAMES.values():
            return name
        raise ValueError(f"dtype={name!r} is not a training dtype; allowed: float32, float16, bfloat16")
    if not isinstance(name, str):
        raise TypeError(f"dtype must be a str or torch.dtype, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype name {name!r}; allowed: {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[key]


def float_formats() -> list[torch.dtype]:
    """fp32, fp16, bf16 and every float8 dtype this torch build has."""
    out = [torch.float32, torch.float16, torch.bfloat16]
    out += [getattr(torch, n) for n in FLOAT8_NAMES if hasattr(torch, n)]
    return out


# ----------------------------------------------------------------------------- formats
def _check_float_dtype(dtype: torch.dtype, max_bits: int | None = None) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if max_bits is not None and dtype.itemsize * 8 > max_bits:
        raise ValueError(f"dtype={short_name(dtype)} has {dtype.itemsize * 8} bits; "
                         f"only formats of at most {max_bits} bits can be enumerated")
    return dtype


def representable_values(dtype: torch.dtype) -> torch.Tensor:
    """Every finite, non-negative value of a format of at most 16 bits, sorted (float64).

    Built by reinterpreting every bit pattern (``view``), so it is exact: fp16 has 31,744 of them
    (zero, 1,023 subnormals, 30 binades of 1,024 normals), an 8-bit format at most 255."""
    _check_float_dtype(dtype, max_bits=16)
    bits = dtype.itemsize * 8
    int_dtype = torch.int16 if bits == 16 else torch.uint8
    patterns = torch.arange(2**bits, dtype=torch.int32).to(int_dtype)
    values = patterns.view(dtype).double()
    values = values[torch.isfinite(values) & (values >= 0)]
    return torch.unique(values)  # sorted; +0 and -0 are one value


def ulp(x: float, dtype: torch.dtype) -> float:
    """Unit in the last place at ``|x|``: the gap from ``|x|`` (rounded to ``dtype``) to the next
    representable number above it."""
    _check_float_dtype(dtype)
    v = torch.tensor(abs(float(x)), dtype=torch.float64).to(dtype)
    if not torch.isfinite(v):
        raise ValueError(f"x={x!r} is not finite in {short_name(dtype)}")
    if dtype.itemsize * 8 <= 16:
        vals = representable_values(dtype)
        above = vals[vals > float(v)]
        if len(above) == 0:
            raise ValueError(f"x={x!r} is the largest finite {short_name(dtype)}")
        return float(above[0]) - float(v)
    nxt = torch.nextafter(v, torch.tensor(math.inf, dtype=dtype))
    return float(nxt.double() - v.double())


@dataclass(frozen=True)
class FormatInfo:
    """One floating-point format. ``eps`` is measured (next value after 1, minus 1);
    ``finfo_eps`` is what ``torch.finfo`` reports; they differ only where finfo is wrong."""

    name: str
    bits: int
    exponent_bits: int
    mantissa_bits: int
    max: float
    smallest_normal: float
    smallest_subnormal: float | None  # None: the format has no subnormals
    eps: float
    finfo_eps: float
    has_inf: bool

    @property
    def decimal_digits(self) -> float:
        """Significant decimal digits, log10(2^(mantissa bits + 1))."""
        return (self.mantissa_bits + 1) * math.log10(2)

    @property
    def finfo_agrees(self) -> bool:
        return self.eps == self.finfo_eps


def format_info(dtype: torch.dtype) -> FormatInfo:
    """Bits, range, smallest normal/subnormal and epsilon of ``dtype`` (torch.finfo, checked).

    For formats of at most 16 bits the subnormal and epsilon come from enumerating every value;
    for wider ones from ``torch.nextafter``."""
    _check_float_dtype(dtype)
    fi = torch.finfo(dtype)
    bits = fi.bits
    if bits <= 16:
        vals = representable_values(dtype)
        positive = vals[vals > 0]
        smallest = float(positive[0])
        eps = float(vals[vals > 1][0]) - 1.0
        patterns = torch.arange(2**bits, dtype=torch.int32).to(torch.int16 if bits == 16 else torch.uint8)
        has_inf = bool(torch.isinf(patterns.view(dtype).double()).any())
    else:
        zero, one = torch.zeros((), dtype=dtype), torch.ones((), dtype=dtype)
        smallest = float(torch.nextafter(zero, one))
        eps = float(torch.nextafter(one, 2 * one)) - 1.0
        has_inf = True
    mantissa = round(-math.log2(eps))
    signed = fi.min < 0
    return FormatInfo(
        name=short_name(dtype), bits=bits, exponent_bits=bits - mantissa - int(signed),
        mantissa_bits=mantissa, max=float(fi.max), smallest_normal=float(fi.smallest_normal),
        smallest_subnormal=None if smallest >= float(fi.smallest_normal) else smallest,
        eps=eps, finfo_eps=float(fi.eps), has_inf=has_inf,
    )


def format_table(dtypes: Sequence[torch.dtype] | None = None):  # noqa: ANN201 - pandas.DataFrame
    """The formats as a DataFrame (values formatted to 4 significant digits)."""
    import pandas as pd

    rows = []
    for dt in dtypes if dtypes is not None else float_formats():
        f = format_info(dt)
        rows.append({
            "format": f.name, "bits": f.bits, "exp/mant": f"{f.exponent_bits}/{f.mantissa_bits}",
            "max": f"{f.max:.5g}", "smallest normal": f"{f.smallest_normal:.4g}",
            "smallest subnormal": "none" if f.smallest_subnormal is None else f"{f.smallest_subnormal:.4g}",
            "eps": f"{f.eps:.4g}", "digits": round(f.decimal_digits, 1),
            "inf": "yes" if f.has_inf else "no",
        })
    return pd.DataFrame(rows)


def spacing_curve(dtype: torch.dtype, lo: float = 1e-45, hi: float = 1e39,
                  points: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, gap): representable positive values in [lo, hi] and the gap to the next one.

    Exact for formats of at most 16 bits (every value); for wider formats ``points`` values
    spread log-uniformly over the range, rounded to the format, with their ulp."""
    _check_float_dtype(dtype)
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo!r}, hi={hi!r}")
    if dtype.itemsize * 8 <= 16:
        vals = representable_values(dtype)
        vals = vals[vals > 0]
        gaps = vals[1:] - vals[:-1]
        x = vals[:-1]
    else:
        fi = torch.finfo(dtype)
        a = max(lo, format_info(dtype).smallest_subnormal or float(fi.tiny))
        b = min(hi, float(fi.max) / 2)
        x = torch.logspace(math.log10(a), math.log10(b), points, dtype=torch.float64).to(dtype)
        nxt = torch.nextafter(x, torch.full_like(x, math.inf))
        x, gaps = x.double(), (nxt.double() - x.double())
    keep = (x >= lo) & (x <= hi)
    return x[keep], gaps[keep]


def round_to(x: float, dtype: torch.dtype) -> float:
    """What ``torch.tensor(x).to(dtype)`` stores for the Python float ``x`` (round to nearest,
    ties to even; inf beyond the range, 0 below half the smallest subnormal), as a Python float."""
    _check_float_dtype(dtype)
    return float(torch.tensor(float(x), dtype=torch.float64).to(dtype).double())


def repeated_add(w0: float, delta: float, steps: int, dtype: torch.dtype) -> float:
    """Apply ``w <- w + delta`` ``steps`` times with ``w`` stored in ``dtype``; the final ``w``.

    The master-weight lesson: in bf16/fp16 an update smaller than half an ulp of ``w`` is rounded
    away every time, so the weight never moves; an fp32 copy accumulates it."""
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    w = torch.tensor(w0, dtype=dtype)
    d = torch.tensor(delta, dtype=torch.float32)
    for _ in range(steps):
        w = (w.float() + d).to(dtype)  # the update computed exactly, then stored in dtype
    return float(w)


# ----------------------------------------------------------------------------- autocast op by op
#: ops that only re-view or alias data; left out of :func:`op_summary` by default
VIEW_OPS = frozenset({"view", "_unsafe_view", "t", "transpose", "expand", "alias", "detach",
                      "split", "permute", "reshape", "unsqueeze", "squeeze", "slice", "select",
                      "as_strided", "clone", "contiguous", "arange"})


@dataclass(frozen=True)
class OpRecord:
    """One aten op run during a forward pass."""

    op: str
    input_dtypes: tuple[str, ...]
    output_dtype: str
    casts_parameter: bool = False  # a dtype cast whose input is a model parameter


class _OpRecorder(TorchDispatchMode):
    def __init__(self, params: set[int]) -> None:
        super().__init__()
        self.params = params
        self.records: list[OpRecord] = []
        self.weight_copies: set[int] = set()  # storages of low-precision parameter copies

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        tensors = [a for a in args if torch.is_tensor(a)]
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        out_dtype = short_name(first.dtype) if torch.is_tensor(first) else type(out).__name__
        name = func.overloadpacket.__name__
        cast = name == "_to_copy" and bool(tensors) and id(tensors[0]) in self.params
        if cast and torch.is_tensor(out):
            self.weight_copies.add(out.untyped_storage().data_ptr())
        self.records.append(OpRecord(name, tuple(short_name(t.dtype) for t in tensors), out_dtype, cast))
        return out


@contextmanager
def record_ops(model: nn.Module | None = None) -> Iterator[_OpRecorder]:
    """Record every aten op (name, input dtypes, output dtype) run inside the block.

    Yields the recorder: ``.records`` (list of :class:`OpRecord`) and ``.weight_copies``
    (storage pointers of dtype casts of ``model``'s parameters, i.e. autocast's weight copies)."""
    params = {id(p) for p in model.parameters()} if model is not None else set()
    with _OpRecorder(params) as rec:
        yield rec


def autocast_context(device: str, dtype: torch.dtype | None):  # noqa: ANN201 - context manager
    """``torch.autocast(device, dtype)``, or a no-op context for ``dtype`` None / float32."""
    if dtype is None or dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def autocast_ops(fn: Callable[[], Any], device: str = "cpu", dtype: torch.dtype | None = torch.bfloat16,
                 model: nn.Module | None = None) -> list[OpRecord]:
    """Run ``fn()`` under autocast (``dtype`` None: no autocast) and record its aten ops."""
    _check_device(device)
    with record_ops(model) as rec, autocast_context(device, dtype):
        fn()
    return rec.records


def op_summary(records: Iterable[OpRecord], include_views: bool = False):  # noqa: ANN201
    """Ops grouped by name: calls, input dtypes, output dtype (a DataFrame, in first-seen order)."""
    import pandas as pd

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        if not include_views and r.op in VIEW_OPS:
            continue
        ins = "+".join(sorted(set(d for d in r.input_dtypes if d not in ("int64", "bool")))) or "-"
        key = (r.op, f"{ins}->{r.output_dtype}")
        row = rows.setdefault(key, {"op": r.op, "inputs": ins, "output": r.output_dtype, "calls": 0,
                                    "weight casts": 0})
        row["calls"] += 1
        row["weight casts"] += int(r.casts_parameter)
    return pd.DataFrame(list(rows.values()))


# ----------------------------------------------------------------------------- loss scaling
def _f32(x: float) -> float:
    """Round a Python float to float32 (the scale lives in a float32 tensor in torch)."""
    return float(torch.tensor(x, dtype=torch.float64).to(torch.float32))


@dataclass(frozen=True)
class ScalerEvent:
    """What one :meth:`LossScaler.update` decided."""

    scale: float       # the scale the step's loss was multiplied by
    found_inf: bool    # an inf/NaN was found in the gradients
    skipped: bool      # optimizer.step() was skipped (same as found_inf)
    new_scale: float   # the scale for the next step


class LossScaler:
    """Dynamic loss scaling, from scratch, with ``torch.amp.GradScaler``'s interface and rules.

    Per step: ``scale(loss).backward()`` (gradients come out multiplied by S), ``unscale_(opt)``
    (divide by S, note any inf/NaN), ``step(opt)`` (skip the optimizer if any), ``update()``:

    - inf/NaN found  -> S <- S * backoff_factor, and the count of good steps restarts;
    - otherwise      -> after ``growth_interval`` consecutive good steps, S <- S * growth_factor
      (unless that overflows fp32).

    The scale is kept in fp32 and unscaling multiplies by fp32(1/S), as GradScaler does, so
    both produce bit-identical gradients and the same scale sequence.
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True) -> None:
        if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) \
                or not math.isfinite(init_scale) or init_scale <= 0:
            raise ValueError(f"init_scale must be a finite number > 0, got {init_scale!r}")
        if not isinstance(growth_factor, (int, float)) or not growth_factor > 1.0:
            raise ValueError(f"growth_factor must be > 1.0, got {growth_factor!r}")
        if not isinstance(backoff_factor, (int, float)) or not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor!r}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, int) or growth_interval < 1:
            raise ValueError(f"growth_interval must be a positive int, got {growth_interval!r}")
        self.enabled = bool(enabled)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self._scale = _f32(float(init_scale))
        self._growth_tracker = 0  # consecutive steps without inf/NaN
        self._found_inf: dict[int, bool] = {}  # per optimizer, this iteration
        self._stepped: set[int] = set()
        self.history: list[ScalerEvent] = []

    # -- the interface of torch.amp.GradScaler
    def get_scale(self) -> float:
        return self._scale if self.enabled else 1.0

    def is_enabled(self) -> bool:
        return self.enabled

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss * S`` (S as a float32 tensor, like GradScaler)."""
        if not torch.is_tensor(loss):
            raise TypeError(f"loss must be a tensor, got {type(loss).__name__}")
        if not self.enabled:
            return loss
        return loss * torch.tensor(self._scale, dtype=torch.float32, device=loss.device)

    def unscale_(self, optimizer: torch.optim.Optimizer) -> bool:
        """Divide the optimizer's gradients by S in place; return whether any is inf/NaN."""
        if not self.enabled:
            return False
        key = id(optimizer)
        if key in self._stepped:
            raise RuntimeError("unscale_() is being called after step().")
        if key in self._found_inf:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        inv_scale = _f32(1.0 / self._scale)  # fp32(1/S), the reciprocal taken in float64
        found_inf = False
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if p.grad.dtype == torch.float16:
                        raise TypeError(
                            "refusing to unscale float16 gradients: keep fp32 master weights "
                            "(autocast on an fp32 model) so gradients are fp32")
                    if not bool(torch.isfinite(p.grad).all()):
                        found_inf = True
                    p.grad.mul_(inv_scale)
        self._found_inf[key] = found_inf
        return found_inf

    def step(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> bool:
        """Unscale (if not done yet) and run ``optimizer.step()`` unless an inf/NaN was found.
        Returns True when the optimizer stepped."""
        if not self.enabled:
            optimizer.step(*args, **kwargs)
            return True
        key = id(optimizer)
        if key in self._stepped:
            raise RuntimeError("step() has already been called since the last update().")
        if key not in self._found_inf:
            self.unscale_(optimizer)
        self._stepped.add(key)
        if self._found_inf[key]:
            return False
        optimizer.step(*args, **kwargs)
        return True

    def update(self) -> ScalerEvent | None:
        """Back off after an inf/NaN, grow after ``growth_interval`` good steps; log the decision."""
        if not self.enabled:
            return None
        if not self._found_inf:
            raise RuntimeError("update() called before unscale_() or step() in this iteration")
        found_inf = any(self._found_inf.values())
        old = self._scale
        if found_inf:
            self._scale = _f32(self._scale * self.backoff_factor)
            self._growth_tracker = 0
        else:
            good = self._growth_tracker + 1
            if good == self.growth_interval:
                grown = _f32(self._scale * self.growth_factor)
                if math.isfinite(grown):  # never grow past fp32's range
                    self._scale = grown
                self._growth_tracker = 0
            else:
                self._growth_tracker = good
        self._found_inf, self._stepped = {}, set()
        event = ScalerEvent(scale=old, found_inf=found_inf, skipped=found_inf, new_scale=self._scale)
        self.history.append(event)
        return event

    def state_dict(self) -> dict[str, float | int]:
        return {"scale": self._scale, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval,
                "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self._scale = _f32(float(state["scale"]))
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])
        self._growth_tracker = int(state["_growth_tracker"])


def make_scaler(kind: str, device: str = "cpu", **kwargs: Any) -> LossScaler | torch.amp.GradScaler:
    """``kind='ours'`` -> :class:`LossScaler`; ``'torch'`` -> ``torch.amp.GradScaler(device)``.
    ``kwargs``: init_scale, growth_factor, backoff_factor, growth_interval (validated by ours)."""
    if kind not in ("ours", "torch"):
        raise ValueError(f"scaler kind must be 'ours' or 'torch', got {kind!r}")
    _check_device(device)
    ours = LossScaler(**kwargs)  # validates the arguments for both kinds
    if kind == "ours":
        return ours
    return torch.amp.GradScaler(device, **kwargs)


# ----------------------------------------------------------------------------- choosing the dtype
def _check_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
    return device


def autocast_supported(device: str, dtype: torch.dtype) -> bool:
    """Whether autocast on ``device`` really computes a matmul in ``dtype`` (probed: builds
    that lack support warn and silently fall back to fp32)."""
    _check_device(device)
    if device == "cuda" and dtype == torch.bfloat16:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback warning is the answer we probe for
        try:
            a = torch.ones(2, 2, device=device)
            with torch.autocast(device_type=device, dtype=dtype):
                out = a @ a
        except RuntimeError:
            return False
    return out.dtype == dtype


@dataclass(frozen=True)
class AmpConfig:
    """How to run a training step: autocast dtype (float32 = off), scaler, TF32, pure."""

    precision: str           # one of PRECISIONS except 'auto'
    device: str
    dtype: torch.dtype       # compute dtype of matmuls (autocast) or storage dtype (pure)
    use_scaler: bool         # fp16 under autocast needs dynamic loss scaling
    tf32: bool = False
    pure: bool = False       # the whole model stored in ``dtype`` (no fp32 master weights)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return None if self.pure or self.dtype == torch.float32 else self.dtype


def choose_amp(device: str = "cpu", precision: str = "auto") -> AmpConfig:
    """The AMP recipe for ``device``. ``'auto'``: CUDA -> bf16 if the GPU supports it, else fp16
    with a loss scaler; CPU -> bf16. Explicit precisions are checked against the device."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    _check_device(device)
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if autocast_supported("cuda", torch.bfloat16) else "fp16"
        else:
            precision = "bf16"
    if precision == "fp32":
        return AmpConfig("fp32", device, torch.float32, use_scaler=False)
    if precision == "tf32":
        if device != "cuda":
            raise ValueError("precision='tf32' is a CUDA matmul mode; on device='cpu' use 'fp32' or 'bf16'")
        return AmpConfig("tf32", device, torch.float32, use_scaler=False, tf32=True)
    pure = precision.startswith("pure-")
    dtype = DTYPE_NAMES[precision.removeprefix("pure-")]
    if not pure and not autocast_supported(device, dtype):
        raise ValueError(f"precision={precision!r}: autocast to {short_name(dtype)} is not supported on "
                         f"device={device!r} with this torch build/hardware; use 'auto' or 'fp32'")
    return AmpConfig(precision, device, dtype, use_scaler=(dtype == torch.float16 and not pure), pure=pure)


@contextmanager
def tf32_matmuls(enabled: bool = True) -> Iterator[None]:
    """Allow (or forbid) TensorFloat-32 for CUDA fp32 matmuls inside the block; restore after."""
    matmul = torch.backends.cuda.matmul
    old = matmul.fp32_precision
    matmul.fp32_precision = "tf32" if enabled else "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision = old


# ----------------------------------------------------------------------------- the AMP step
@dataclass(frozen=True)
class StepStats:
    """One training step: the (unscaled) loss, the gradient norm before clipping, whether the
    optimizer step was skipped (inf/NaN gradients) and the loss scale used (None: no scaler)."""

    loss: float
    grad_norm: float | None
    skipped: bool
    scale: float | None


def amp_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[], torch.Tensor],
    amp: AmpConfig,
    scaler: LossScaler | torch.amp.GradScaler | None = None,
    max_grad_norm: float | None = None,
    after_backward: Callable[[], None] | None = None,
) -> StepStats:
    """One mixed-precision training step.

    ``loss_fn()`` runs the forward pass (under autocast here) and returns the scalar loss.
    With a scaler: ``scale(loss).backward()``, ``unscale_`` (so clipping sees true gradients),
    clip, ``step`` (skipped on inf/NaN), ``update``. The parameters are the fp32 master weights:
    autocast casts copies of them to low precision for the matmuls; the optimizer updates fp32.
    ``after_backward()`` (optional) runs right after the backward pass (e.g. to inject an inf).
    """
    if amp.use_scaler and scaler is None:
        raise ValueError(f"precision={amp.precision!r} needs a loss scaler: pass scaler=LossScaler() "
                         "or torch.amp.GradScaler()")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not amp.pure:
        low = sorted({short_name(p.dtype) for p in params if p.dtype != torch.float32})
        if low:
            raise TypeError(f"AMP keeps fp32 master weights but the model has {low} parameters; "
                            "use a pure-* precision for a low-precision model")
    stepped: list[bool] = []
    handle = optimizer.register_step_post_hook(lambda *_: stepped.append(True))
    try:
        with tf32_matmuls() if amp.tf32 else nullcontext():  # covers forward and backward
            optimizer.zero_grad(set_to_none=True)
            with autocast_context(amp.device, amp.autocast_dtype):
                loss = loss_fn()
            if not torch.is_tensor(loss) or loss.ndim != 0:
                raise TypeError("loss_fn must return a scalar tensor")
            scale = scaler.get_scale() if scaler is not None else None
            (scaler.scale(loss) if scaler is not None else loss).backward()
            if after_backward is not None:
                after_backward()
            if scaler is not None:
                scaler.unscale_(optimizer)  # true gradients from here on: clip them
            norm = None
            if max_grad_norm is not None:
                norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
            if scaler is not None:
                scaler.step(optimizer)  # skipped if unscale_ found an inf/NaN
                scaler.update()
            else:
                optimizer.step()
    finally:
        handle.remove()
    return StepStats(loss=float(loss.detach()), grad_norm=norm, skipped=not stepped, scale=scale)


# ----------------------------------------------------------------------------- training runs
@dataclass
class TrainRun:
    """A training run: per-step losses, skipped flags and scales, the final validation loss and
    the trained model."""

    precision: str
    losses: list[float] = field(default_factory=list)
    skipped: list[bool] = field(default_factory=list)
    scales: list[float | None] = field(default_factory=list)
    val_loss: float = math.nan
    seconds: float = 0.0
    model: nn.Module | None = field(default=None, repr=False)


def build_gpt(cfg, seed: int | None = None, device: str = "cpu", amp: AmpConfig | None = None) -> nn.Module:  # noqa: ANN001
    """The course GPT with the initialisation of ``seed``, on ``device``; in ``amp.dtype`` if pure."""
    seed = seeds.resolve(seed, 0)
    from helpers.models import GPT

    torch.manual_seed(seed)
    model = GPT(cfg).to(device)
    if amp is not None and amp.pure:
        model = model.to(amp.dtype)
    return model


@torch.no_grad()
def evaluate(model: nn.Module, task, amp: AmpConfig, batches: int = 4, batch_size: int = 32,  # noqa: ANN001
             seed: int | None = None) -> float:
    """Mean validation loss over fixed batches, in the run's precision, on its device."""
    seed = seeds.resolve(seed, 1)
    from helpers.models import evaluate as evaluate_gpt

    return evaluate_gpt(model, task, batches=batches, batch_size=batch_size, seed=seed,
                        device=amp.device, autocast_dtype=amp.autocast_dtype)


def train_gpt(
    task,  # noqa: ANN001 - helpers.models.CharTask
    cfg,  # noqa: ANN001 - helpers.models.GPTConfig
    precision: str = "auto",
    steps: int = 100,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int | None = None,
    device: str = "cpu",
    scaler: str = "torch",
    max_grad_norm: float | None = 1.0,
    scaler_kwargs: dict[str, Any] | None = None,
    hook: Callable[[int, nn.Module], None] | None = None,
) -> TrainRun:
    """Train the course transformer for ``steps`` AdamW steps in ``precision``.

    The same ``seed`` gives the same initial weights and batches in every precision, so runs are
    directly comparable. fp16 under autocast uses a loss scaler (``scaler='torch'`` or
    ``'ours'``); ``pure-*`` stores weights, gradients and optimizer state in low precision.
    ``hook(step, model)`` (optional) runs after the backward pass, before the optimizer step is
    taken, e.g. to inject an overflow."""
    seed = seeds.resolve(seed, 0)
    amp = choose_amp(device, precision)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    model = build_gpt(cfg, seed, device, amp)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sc = make_scaler(scaler, device, **(scaler_kwargs or {})) if amp.use_scaler else None
    g = torch.Generator().manual_seed(seed)
    run = TrainRun(precision=amp.precision)
    t0 = time.perf_counter()
    for step in range(steps):
        x, y = task.batch(batch_size, cfg.block_size, g)
        x, y = x.to(device), y.to(device)
        after = None if hook is None else (lambda s=step: hook(s, model))
        stats = amp_step(model, opt, lambda x=x, y=y: model(x, y)[1], amp, sc, max_grad_norm, after)
        run.losses.append(stats.loss)
        run.skipped.append(stats.skipped)
        run.scales.append(stats.scale)
    run.seconds = time.perf_counter() - t0
    run.val_loss = evaluate(model, task, amp)
    run.model = model
    return run


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
    _check_device(device)
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
    from helpers.memory import record_saved_tensors

    _check_device(device)
    with record_saved_tensors(model) as log, record_ops(model) as ops, autocast_context(device, dtype):
        loss_fn()
    copies = sum(r.nbytes for r in log.unique if r.storage in ops.weight_copies)
    return SavedBreakdown(total=log.total_bytes, weight_copies=copies, by_dtype=log.by_dtype())


# ----------------------------------------------------------------------------- speed
def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_times(n: int = 256, dtypes: Sequence[str] = ("fp32", "bf16", "fp16"), device: str = "cpu",
                 repeats: int = 5, number: int = 10, seed: int | None = None) -> dict[str, float]:
    """Seconds per ``n x n`` matmul for each dtype: median of ``repeats`` rounds of ``number``
    products, the dtypes interleaved within each round so machine noise hits all alike."""
    seed = seeds.resolve(seed, 0)
    _check_device(device)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    pairs = {name: (a.to(resolve_dtype(name)), b.to(resolve_dtype(name))) for name in dtypes}
    times: dict[str, list[float]] = {name: [] for name in dtypes}
    for x, y in pairs.values():  # warm-up
        x @ y
    for _ in range(repeats):
        for name, (x, y) in pairs.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(number):
                x @ y
            _sync(device)
            times[name].append((time.perf_counter() - t0) / number)
    return {name: statistics.median(t) for name, t in times.items()}


@dataclass(frozen=True)
class StepTiming:
    """Median time of one training step in one precision; ``ratio`` is relative to the first
    precision measured; ``peak_mib`` is CUDA peak allocated memory of a step (None on CPU)."""

    precision: str
    ms_per_step: float
    ratio: float
    peak_mib: float | None


def step_times(task, cfg, precisions: Sequence[str] = ("fp32", "bf16", "fp16"),  # noqa: ANN001
               device: str = "cpu", batch_size: int = 16, repeats: int = 3, steps: int = 3,
               warmup: int = 1, seed: int | None = None) -> list[StepTiming]:
    """Time AMP training steps of the course GPT in each precision (interleaved, median), and
    on CUDA the peak memory of one step with only that precision's model alive.

    On a GPU use ``("fp32", "tf32", "bf16", "fp16")``; fp16 runs with ``torch.amp.GradScaler``."""
    seed = seeds.resolve(seed, 0)
    from helpers.memory import MiB, cuda_peak_bytes

    amps = {p: choose_amp(device, p) for p in precisions}
    g = torch.Generator().manual_seed(seed)
    x, y = task.batch(batch_size, cfg.block_size, g)
    x, y = x.to(device), y.to(device)

    def make(p: str) -> Callable[[], StepStats]:
        amp = amps[p]
        model = build_gpt(cfg, seed, device, amp)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sc = make_scaler("torch", device) if amp.use_scaler else None
        return lambda: amp_step(model, opt, lambda: model(x, y)[1], amp, sc, max_grad_norm=1.0)

    peaks: dict[str, float | None] = {p: None for p in precisions}
    if device == "cuda":
        for p in precisions:
            step = make(p)
            step()  # optimizer state exists from here on
            peaks[p] = cuda_peak_bytes(step) / MiB
            del step
            torch.cuda.empty_cache()
    steppers = {p: make(p) for p in precisions}
    for p in precisions:
        for _ in range(warmup):
            steppers[p]()
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(repeats):
        for p in precisions:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                steppers[p]()
            _sync(device)
            times[p].append((time.perf_counter() - t0) / steps)
    med = {p: statistics.median(t) for p, t in times.items()}
    base = med[precisions[0]]
    return [StepTiming(p, 1000 * med[p], med[p] / base, peaks[p]) for p in precisions]


# ----------------------------------------------------------------------------- pictures
def plot_spacing(dtypes: Sequence[torch.dtype] | None = None, figsize: tuple[float, float] = (9.0, 3.4)):  # noqa: ANN201
    """Two panels: the relative spacing of representable numbers against their magnitude (range
    and precision at a glance), and every float8 number between 1 and 8."""
    import matplotlib.pyplot as plt

    dtypes = list(dtypes) if dtypes is not None else [torch.float32, torch.bfloat16, torch.float16] + [
        getattr(torch, n) for n in ("float8_e5m2", "float8_e4m3fn") if hasattr(torch, n)]
    colors = {dt: f"C{i}" for i, dt in enumerate(dtypes)}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=figsize, gridspec_kw={"width_ratios": [3, 2]})
    for dt in dtypes:
        x, gap = spacing_curve(dt)
        ax1.loglog(x.numpy(), (gap / x).numpy(), lw=1.2, color=colors[dt], label=short_name(dt))
    ax1.set(xlabel="magnitude |x|", ylabel="gap to next number / |x|",
            title="relative spacing: width = range, height = precision")
    ax1.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 0.12), ncol=2)
    narrow = [dt for dt in dtypes if dt.itemsize == 1]
    for i, dt in enumerate(narrow):
        vals = representable_values(dt)
        vals = vals[(vals >= 1) & (vals <= 8)].numpy()
        ax2.plot(vals, [i] * len(vals), "|", ms=14, mew=1.5, color=colors[dt])
    ax2.set(yticks=range(len(narrow)), yticklabels=[short_name(d) for d in narrow], xlabel="x",
            title="every float8 number in [1, 8]", ylim=(-0.6, len(narrow) - 0.4), xticks=[1, 2, 4, 8])
    ax2.grid(False)
    fig.tight_layout()
    return fig
