"""Number formats (lesson 03): names of the training dtypes, and fp32, fp16, bf16 and every
float8 dtype described from ``torch.finfo`` and cross-checked by enumerating bit patterns;
rounding, ulp and the spacing of representable values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from helpers import validate

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
    import pandas as pd  # heavy: only the table needs pandas

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
    """What ``dtype`` stores for the Python float ``x``, as a Python float: round to nearest, ties
    to even; inf from half an ulp above the largest finite value, 0 at or below half the smallest
    subnormal. Torch casts a float64 to fp16/bf16 through fp32, so for values that are not fp32
    numbers the result can differ from a single correctly rounded step (e.g. 65519.999999 -> inf)."""
    _check_float_dtype(dtype)
    return float(torch.tensor(float(x), dtype=torch.float64).to(dtype).double())


def repeated_add(w0: float, delta: float, steps: int, dtype: torch.dtype) -> float:
    """Apply ``w <- w + delta`` ``steps`` times with ``w`` stored in ``dtype``; the final ``w``.

    The master-weight lesson: in bf16/fp16 an update smaller than half an ulp of ``w`` is rounded
    away every time, so the weight never moves; an fp32 copy accumulates it."""
    validate.integer("steps", steps, 0)
    w = torch.tensor(w0, dtype=dtype)
    d = torch.tensor(delta, dtype=torch.float32)
    for _ in range(steps):
        w = (w.float() + d).to(dtype)  # the update computed exactly, then stored in dtype
    return float(w)


def check_device(device: str) -> str:
    """``device`` if it is 'cpu' or an available 'cuda', else a ValueError."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
    return device
