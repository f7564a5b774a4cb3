"""The unsplit model trained in one process on a job's batches (:func:`reference_run`, the
core training step), and the equivalence check of a pipeline run against it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from helpers.core import train_step
from helpers.pipeline.job import (
    PipelineJob,
    PipelineRun,
    build_model,
    make_lr_scheduler,
    make_optimizer,
    step_config,
    torch_threads,
)


@dataclass
class Reference:
    """The unsplit model trained on the same batches in one process."""

    losses: list[float]
    logits: torch.Tensor
    grads: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor]


def reference_run(job: PipelineJob, microbatched: bool = False, threads: int = 1) -> Reference:
    """Train the unsplit model on the job's batches in this process (with ``threads`` threads,
    like one rank; on a busy CPU more threads can be far slower for a small model).

    ``microbatched=False``: one full-batch step per batch (the model as you would train it).
    ``microbatched=True``: the same ``m`` micro-batches as the pipeline, losses weighted by
    their share of the batch, gradients accumulated in micro-batch order (plain gradient
    accumulation: the same mathematics as the pipeline, in one process)."""
    with torch_threads(threads):
        return _reference_run(job, microbatched)


def _reference_run(job: PipelineJob, microbatched: bool) -> Reference:
    model = build_model(job)
    opt = make_optimizer(job, list(model.parameters()))
    lr_sched = make_lr_scheduler(job, opt)
    config = step_config(job, microbatched=microbatched)
    losses, logits, grads = [], None, {}

    def keep_grads() -> None:  # step 0's gradients, before clipping
        grads.update({k: p.grad.detach().clone() for k, p in model.named_parameters()})

    for step, batch in enumerate(job.batches):
        first = step == 0
        stats = train_step(model, opt, batch, config, lr_scheduler=lr_sched, keep_logits=first,
                           after_backward=keep_grads if first else None)
        if first:
            logits = stats.logits.clone()
        losses.append(stats.loss)
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    return Reference(losses, logits, grads, params)  # type: ignore[arg-type]


def max_differences(run: PipelineRun | Reference, ref: PipelineRun | Reference) -> dict[str, float]:
    """Largest absolute differences between two runs (pipeline or reference): logits and
    every parameter's gradient at step 0, the loss at every step, every parameter at the end."""
    if set(run.grads) != set(ref.grads) or set(run.params) != set(ref.params):
        missing = sorted(set(ref.params) - set(run.params))
        raise ValueError(f"the runs do not cover the same parameters (missing {missing[:3]})")

    def worst(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        return max(float((a[k] - b[k]).abs().max()) for k in b)

    return {
        "logits": float((run.logits - ref.logits).abs().max()),  # type: ignore[operator]
        "loss": max(abs(a - b) for a, b in zip(run.losses, ref.losses, strict=True)),
        "grads": worst(run.grads, ref.grads),
        "params": worst(run.params, ref.params),
    }


@dataclass
class Equivalence:
    """A pipeline run against the unsplit model, with the float-rounding floor for scale.

    ``diffs``: pipeline vs unsplit full-batch training. ``floor``: the unsplit model trained
    with the same micro-batches (gradient accumulation, one process) vs full-batch -- the
    same mathematics, only the order of float additions differs. A quantity passes when its
    difference is at most ``max(atol, factor * floor)``. (Adam divides by the root of the
    squared-gradient average, so where a gradient is tiny, rounding moves the update a lot:
    after several Adam steps the floor for parameters is well above the gradients'.)"""

    diffs: dict[str, float]
    floor: dict[str, float]
    atol: float
    factor: float

    def tolerance(self, key: str) -> float:
        return max(self.atol, self.factor * self.floor[key])

    @property
    def ok(self) -> bool:
        return all(self.diffs[k] <= self.tolerance(k) for k in self.diffs)

    def rows(self) -> list[dict[str, object]]:
        return [{"quantity": k, "pipeline vs unsplit": f"{self.diffs[k]:.1e}",
                 "rounding floor": f"{self.floor[k]:.1e}", "tolerance": f"{self.tolerance(k):.1e}",
                 "equal": "yes" if self.diffs[k] <= self.tolerance(k) else "NO"}
                for k in self.diffs]

    def summary(self) -> str:
        detail = ", ".join(f"{k} {d:.1e}" for k, d in self.diffs.items())
        return f"max |diff| vs unsplit: {detail} -> {'equal' if self.ok else 'NOT EQUAL'}"


def check_equivalence(run: PipelineRun, atol: float = 1e-5, factor: float = 4.0) -> Equivalence:
    """Compare ``run`` with the unsplit model (see :class:`Equivalence`)."""
    if not run.job.return_state:
        raise ValueError("run the job with return_state=True to check equivalence")
    if run.job.config.dropout > 0:
        raise ValueError(f"equivalence needs dropout=0, got {run.job.config.dropout}: with dropout "
                         "each micro-batch draws its own random masks")
    full = reference_run(run.job)
    floor = max_differences(reference_run(run.job, microbatched=True), full)
    return Equivalence(max_differences(run, full), floor, atol, factor)
