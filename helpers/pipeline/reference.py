"""The unsplit model trained in one process on a job's batches (:func:`reference_run`, the
core training step), and the equivalence check of a pipeline run against it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from helpers.core import apply_checkpointing, train_step
from helpers.core.step import finish_step, forward, microbatch_loss, microbatches
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
    accumulation: the same mathematics as the pipeline, in one process). With ``job.dp``
    replicas: each replica's rows accumulated separately, then the replicas' gradients and
    losses added in replica order (what the all-reduce computes)."""
    with torch_threads(threads):
        if microbatched and job.dp > 1:
            return _replicated_run(job)
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


def _replicated_run(job: PipelineJob) -> Reference:
    """Gradient accumulation per data-parallel replica, then the replicas summed in order."""
    model = build_model(job)
    params = list(model.parameters())
    opt = make_optimizer(job, params)
    lr_sched = make_lr_scheduler(job, opt)
    config = step_config(job)
    layers = apply_checkpointing(model, config.checkpoint)
    losses, logits, grads = [], [], {}
    for step, (x, y) in enumerate(job.batches):
        total, summed = 0.0, None
        for xs, ys in zip(x.tensor_split(job.dp), y.tensor_split(job.dp), strict=True):
            opt.zero_grad(set_to_none=True)
            part = 0.0
            for xm, ym, _ in microbatches(xs, ys, job.n_microbatches):
                out = forward(layers, xm, config.autocast_dtype)
                loss = microbatch_loss(out, ym, len(xm) / len(x))  # share of the WHOLE batch
                loss.backward()
                part += loss.item()
                if step == 0:
                    logits.append(out.detach())
            mine = [p.grad.detach().clone() for p in params]
            summed = mine if summed is None else [a + b for a, b in zip(summed, mine, strict=True)]
            total += part
        for p, g in zip(params, summed, strict=True):
            p.grad = g
        if step == 0:
            grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
        finish_step(opt, job.clip, lr_scheduler=lr_sched)
        opt.zero_grad(set_to_none=True)
        losses.append(total)
    return Reference(losses, torch.cat(logits), grads, {k: p.detach().clone() for k, p in model.named_parameters()})


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
    """A pipeline run against the unsplit model, in two ways.

    ``accum``: pipeline vs the unsplit model trained with the same micro-batches in one process
    (gradient accumulation; with data parallelism, per replica and then summed) -- the same
    arithmetic in the same order, so the quantities in ``exact`` must be **bit-identical**
    (difference exactly 0). What is not in ``exact``: the parameters when gradients are clipped
    (the clipping norm's squares are summed per rank, then across ranks); with more than 2
    replicas the loss, gradients and parameters (an all-reduce may add 3 or more terms in any
    grouping; 2 terms add the same either way); and for torch's executor with ``m`` not a power of
    two the gradients and parameters (it divides the summed gradients by ``m`` afterwards, which is
    exact only for powers of two).

    ``diffs``: pipeline vs full-batch training of the unsplit model; ``floor``: gradient
    accumulation vs full-batch -- the same mathematics, only the order of float additions
    differs. Each difference must be at most ``factor x floor``. (Adam divides by the root of
    the squared-gradient average, so where a gradient is tiny, rounding moves the update a
    lot: after several Adam steps the floor for parameters is well above the gradients'.)"""

    diffs: dict[str, float]
    floor: dict[str, float]
    accum: dict[str, float]
    exact: tuple[str, ...]
    factor: float = 4.0
    atol: float = 0.0

    def tolerance(self, key: str) -> float:
        return max(self.atol, self.factor * self.floor[key])

    def passes(self, key: str) -> bool:
        if key in self.exact and self.accum[key] != 0.0:
            return False
        return self.diffs[key] <= self.tolerance(key)

    @property
    def ok(self) -> bool:
        return all(self.passes(k) for k in self.diffs)

    @property
    def bit_identical(self) -> bool:
        """Every quantity equal to gradient accumulation's, bit for bit."""
        return all(d == 0.0 for d in self.accum.values())

    def rows(self) -> list[dict[str, object]]:
        return [{"quantity": k, "vs accumulation": f"{self.accum[k]:.1e}",
                 "must be 0": "yes" if k in self.exact else "no",
                 "vs full batch": f"{self.diffs[k]:.1e}", "rounding floor": f"{self.floor[k]:.1e}",
                 "tolerance": f"{self.tolerance(k):.1e}", "equal": "yes" if self.passes(k) else "NO"}
                for k in self.diffs]

    def summary(self) -> str:
        detail = ", ".join(f"{k} {d:.1e}" for k, d in self.diffs.items())
        same = "bit-identical to gradient accumulation" if self.bit_identical else (
            "exact where expected" if all(self.accum[k] == 0.0 for k in self.exact) else "NOT exact")
        return f"max |diff| vs unsplit: {detail}; {same} -> {'equal' if self.ok else 'NOT EQUAL'}"


def exact_keys(job: PipelineJob) -> tuple[str, ...]:
    """The quantities a pipeline run of ``job`` must reproduce bit for bit (see Equivalence)."""
    m = job.n_microbatches
    if job.dp > 2:
        return ("logits",)
    if job.executor == "torch" and m & (m - 1):
        return ("logits", "loss")
    return ("logits", "loss", "grads") if job.clip is not None else ("logits", "loss", "grads", "params")


def check_equivalence(run: PipelineRun, factor: float = 4.0, atol: float = 0.0) -> Equivalence:
    """Compare ``run`` with the unsplit model (see :class:`Equivalence`)."""
    if not run.job.return_state:
        raise ValueError("run the job with return_state=True to check equivalence")
    if run.job.config.dropout > 0:
        raise ValueError(f"equivalence needs dropout=0, got {run.job.config.dropout}: with dropout "
                         "each micro-batch draws its own random masks")
    full = reference_run(run.job)
    accum = reference_run(run.job, microbatched=True)
    return Equivalence(max_differences(run, full), max_differences(accum, full),
                       max_differences(run, accum), exact_keys(run.job), factor, atol)
