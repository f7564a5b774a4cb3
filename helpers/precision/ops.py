"""Autocast, op by op: every aten op of a forward pass with its input and output dtypes (a
``TorchDispatchMode``), and the table of them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from helpers.core.step import autocast
from helpers.precision.formats import check_device, short_name

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


autocast_context = autocast  # the one autocast helper, under the name lesson 03 uses


def autocast_ops(fn: Callable[[], Any], device: str = "cpu", dtype: torch.dtype | None = torch.bfloat16,
                 model: nn.Module | None = None) -> list[OpRecord]:
    """Run ``fn()`` under autocast (``dtype`` None: no autocast) and record its aten ops."""
    check_device(device)
    with record_ops(model) as rec, autocast_context(device, dtype):
        fn()
    return rec.records


def op_summary(records: Iterable[OpRecord], include_views: bool = False):  # noqa: ANN201
    """Ops grouped by name: calls, input dtypes, output dtype (a DataFrame, in first-seen order)."""
    import pandas as pd  # heavy: only the table needs pandas

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
