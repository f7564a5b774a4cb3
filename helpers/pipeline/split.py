"""Split the course transformer into pipeline stages.

``model.layers()`` is the flat list ``[embed, block_0, ..., block_{n-1}, head]``; any contiguous
slice of it is a valid stage (the embedding and the head count as layers). :func:`partition`
cuts a list of per-layer costs into ``n`` contiguous parts minimising the largest part (exact,
by dynamic programming); the costs are parameter counts or measured forward+backward times
(:func:`layer_costs`). :func:`plan_stages` returns the plan with each stage's parameters and
memory; :func:`stage_modules` builds the stage modules (sharing the model's parameters).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from helpers import validate
from helpers.core.checkpoint import apply_checkpointing, block_policy
from helpers.core.step import forward
from helpers.memory import record_saved_tensors

BALANCE = ("params", "time")


@dataclass(frozen=True)
class StageInfo:
    """One stage: layers ``[start, stop)`` of ``model.layers()`` and what it holds."""

    index: int
    start: int
    stop: int
    layer_names: tuple[str, ...]
    params: int
    param_bytes: int
    cost: float

    @property
    def training_bytes(self) -> int:
        """Parameters + gradients + Adam's two moments (4 copies of the parameters)."""
        return 4 * self.param_bytes


def layer_names(model: nn.Module | int) -> list[str]:
    """Readable names of ``model.layers()``: ``embed``, ``block0``, ..., ``head``
    (``model`` may also be the number of layers)."""
    n = (model if isinstance(model, int) else len(model.layers())) - 2  # type: ignore[operator]
    return ["embed", *[f"block{i}" for i in range(n)], "head"]


def partition(costs: Sequence[float], n: int) -> list[tuple[int, int]]:
    """Cut ``costs`` into ``n`` contiguous non-empty parts minimising the largest part's sum.

    Returns ``[(start, stop), ...]``. Ties go to the earliest cut, so results are deterministic."""
    validate.integer("n (number of stages)", n, 1)
    L = len(costs)
    if n > L:
        raise ValueError(f"cannot split {L} layers into {n} stages: more stages than layers "
                         f"(at most {L}; the embedding and the head count as layers)")
    if any(c < 0 for c in costs):
        raise ValueError(f"layer costs must be >= 0, got {list(costs)!r}")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + float(c))
    inf = float("inf")
    # best[k][j]: minimal max-part for the first j layers in k parts; cut[k][j]: where part k starts
    best = [[inf] * (L + 1) for _ in range(n + 1)]
    cut = [[0] * (L + 1) for _ in range(n + 1)]
    best[0][0] = 0.0
    for k in range(1, n + 1):
        for j in range(k, L - (n - k) + 1):
            for i in range(k - 1, j):
                val = max(best[k - 1][i], prefix[j] - prefix[i])
                if val < best[k][j] - 1e-12 * max(1.0, val):
                    best[k][j], cut[k][j] = val, i
    bounds = []
    j = L
    for k in range(n, 0, -1):
        i = cut[k][j]
        bounds.append((i, j))
        j = i
    return bounds[::-1]


def layer_costs(model: nn.Module, balance: str = "params",
                sample: torch.Tensor | None = None, repeats: int = 5) -> list[float]:
    """Cost of each of ``model.layers()``: its parameter count (``balance='params'``) or its
    median forward+backward time in seconds on ``sample`` token ids (``balance='time'``)."""
    if balance not in BALANCE:
        raise ValueError(f"balance must be one of {BALANCE}, got {balance!r}")
    layers = model.layers()  # type: ignore[operator]
    if balance == "params":
        return [float(sum(p.numel() for p in layer.parameters())) for layer in layers]
    if sample is None:
        raise ValueError("balance='time' needs a sample batch of token ids (sample=...)")
    costs = []
    h = sample
    for layer in layers:
        x = h.detach().requires_grad_(h.is_floating_point())
        times = []
        layer(x).float().sum().backward()  # warm-up, untimed
        for _ in range(repeats):
            t = time.perf_counter()
            out = layer(x)
            out.float().sum().backward()
            times.append(time.perf_counter() - t)
        layer.zero_grad(set_to_none=True)
        costs.append(statistics.median(times))
        with torch.no_grad():
            h = layer(x)
    return costs


def balanced_bounds(model: nn.Module, n_stages: int) -> list[tuple[int, int]]:
    """Stage bounds over ``model.layers()`` balancing parameter counts: the split every
    pipeline job (and the capstone's ledger) uses unless given explicit bounds."""
    return partition(layer_costs(model, "params"), n_stages)


def plan_stages(model: nn.Module, n_stages: int, balance: str | Sequence[float] = "params",
                sample: torch.Tensor | None = None) -> list[StageInfo]:
    """Partition ``model.layers()`` into ``n_stages`` contiguous stages.

    ``balance``: ``'params'``, ``'time'`` (needs ``sample``), or explicit per-layer costs."""
    layers = model.layers()  # type: ignore[operator]
    if isinstance(balance, str):
        costs = layer_costs(model, balance, sample)
    else:
        costs = [float(c) for c in balance]
        if len(costs) != len(layers):
            raise ValueError(f"balance: need one cost per layer ({len(layers)}), got {len(costs)}")
    names = layer_names(model)
    out = []
    for idx, (a, b) in enumerate(partition(costs, n_stages)):
        params = [p for layer in layers[a:b] for p in layer.parameters()]
        out.append(StageInfo(
            index=idx, start=a, stop=b, layer_names=tuple(names[a:b]),
            params=sum(p.numel() for p in params),
            param_bytes=sum(p.numel() * p.element_size() for p in params),
            cost=float(sum(costs[a:b])),
        ))
    return out


def bounds_of(plan: Sequence[StageInfo]) -> list[tuple[int, int]]:
    return [(s.start, s.stop) for s in plan]


def check_bounds(bounds: Sequence[tuple[int, int]], n_layers: int) -> list[tuple[int, int]]:
    """Check that ``bounds`` tile ``range(n_layers)`` with contiguous non-empty stages."""
    bounds = [(int(a), int(b)) for a, b in bounds]
    expect = 0
    for a, b in bounds:
        if a != expect or b <= a:
            raise ValueError(f"stage bounds must be contiguous and non-empty, got {bounds}")
        expect = b
    if expect != n_layers:
        raise ValueError(f"stage bounds {bounds} do not cover all {n_layers} layers")
    return bounds


def stage_modules(model: nn.Module, bounds: Sequence[tuple[int, int]]) -> list[nn.Sequential]:
    """One ``nn.Sequential`` per stage, sharing (not copying) the model's layers."""
    layers = model.layers()  # type: ignore[operator]
    check_bounds(bounds, len(layers))
    return [nn.Sequential(*layers[a:b]) for a, b in bounds]


def stage_forward(stage: nn.Module, x: torch.Tensor, checkpoint: bool = False,
                  autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Run a stage (an ``nn.Sequential`` of layers) on ``x`` with the core step's forward.
    ``checkpoint=True`` wraps each transformer block in ``torch.utils.checkpoint``
    (non-reentrant): the stage keeps only the blocks' inputs for backward and recomputes their
    insides (lesson 04). The recomputation runs under the same autocast state."""
    return forward(apply_checkpointing(list(stage), block_policy(checkpoint)), x, autocast_dtype)


class CoreStage(nn.Module):
    """A stage as a module whose forward is :func:`stage_forward` (for ``PipelineStage``)."""

    def __init__(self, stage: nn.Sequential, checkpoint: bool = False,
                 autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.stage, self.checkpoint, self.autocast_dtype = stage, checkpoint, autocast_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stage_forward(self.stage, x, self.checkpoint, self.autocast_dtype)


def param_names(model: nn.Module, module: nn.Module) -> dict[str, str]:
    """Map ``module``'s parameter names to the full model's names (by identity)."""
    full = {id(p): name for name, p in model.named_parameters()}
    return {name: full[id(p)] for name, p in module.named_parameters()}


def stage_table(plan: Sequence[StageInfo], activation_bytes: Sequence[int] | None = None
                ) -> list[dict[str, object]]:
    """Rows for display: layers, parameters, training memory (MiB), activations per micro-batch."""
    rows = []
    for i, s in enumerate(plan):
        row: dict[str, object] = {
            "stage": s.index, "layers": ", ".join(s.layer_names), "params": s.params,
            "params MiB": round(s.param_bytes / 2**20, 3),
            "params+grads+Adam MiB": round(s.training_bytes / 2**20, 3),
        }
        if activation_bytes is not None:
            row["activations/micro-batch MiB"] = round(activation_bytes[i] / 2**20, 3)
        rows.append(row)
    return rows


def stage_activation_bytes(model: nn.Module, bounds: Sequence[tuple[int, int]],
                           idx: torch.Tensor) -> list[int]:
    """Bytes each stage saves for backward on input ``idx`` (one micro-batch), measured with
    :func:`helpers.memory.record_saved_tensors` (the stage's input counts, parameters do not)."""
    out = []
    h: torch.Tensor = idx
    for stage in stage_modules(model, bounds):
        x = h.detach().requires_grad_(h.is_floating_point())
        with record_saved_tensors(stage) as log:
            h = stage(x)
        out.append(log.total_bytes)
    return out
