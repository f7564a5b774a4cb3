"""Speed: matmul times per dtype and interleaved training-step times per precision (with CUDA
peak memory when there is a GPU)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from helpers import (
    seeds,
    validate,
)
from helpers.core import StepStats
from helpers.memory import MiB, cuda_peak_bytes
from helpers.precision.amp import amp_step, build_gpt, choose_amp
from helpers.precision.formats import check_device, resolve_dtype
from helpers.precision.scaler import make_scaler


# ----------------------------------------------------------------------------- speed
def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_times(n: int = 256, dtypes: Sequence[str] = ("fp32", "bf16", "fp16"), device: str = "cpu",
                 repeats: int = 5, number: int = 10, seed: int | None = None) -> dict[str, float]:
    """Seconds per ``n x n`` matmul for each dtype: median of ``repeats`` rounds of ``number``
    products, the dtypes interleaved within each round so machine noise hits all alike."""
    seed = seeds.resolve(seed, 0)
    check_device(device)
    validate.positive_int("n", n)
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
    amps = {p: choose_amp(device, p) for p in precisions}
    g = torch.Generator().manual_seed(seed)
    x, y = task.batch(batch_size, cfg.block_size, g)
    x, y = x.to(device), y.to(device)

    def make(p: str) -> Callable[[], StepStats]:
        amp = amps[p]
        model = build_gpt(cfg, seed, device, amp)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sc = make_scaler("torch", device) if amp.use_scaler else None
        return lambda: amp_step(model, opt, (x, y), amp, sc, max_grad_norm=1.0)

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
