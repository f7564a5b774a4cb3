"""Both executors on real processes (CPU, gloo): equivalence with the unsplit model for every
schedule with 2 and 4 processes, measured timelines and activation memory, uneven micro-batches.
Each test is one launch (start-up paid once) and carries a timeout."""

from __future__ import annotations

import pytest
import torch

from helpers.pipeline import jobs
from helpers.pipeline.jobs import check_equivalence, make_job


def equivalence_jobs(n_layer_plain: int, n_layer_interleaved: int, m: int = 4) -> list[jobs.PipelineJob]:
    """Every schedule on both executors (interleaved needs 2 x p stages, so more layers)."""
    return [
        make_job(name, m, v, n_layer=n_layer_interleaved if v > 1 else n_layer_plain, steps=3,
                 executor=executor, name=f"{executor}-{name}")
        for executor in ("course", "torch")
        for name, v in (("gpipe", 1), ("1f1b", 1), ("interleaved", 2))
    ]


def assert_equivalent(run: jobs.PipelineRun) -> None:
    eq = check_equivalence(run)
    assert eq.ok, f"{run.job.name}: {eq.rows()}"
    # the tolerances are float-sized: step-0 quantities within 1e-5, parameters after three
    # Adam steps within a few times what gradient accumulation alone changes (see Equivalence)
    assert eq.diffs["logits"] <= 1e-5 and eq.diffs["grads"] <= 1e-5 and eq.diffs["loss"] <= 1e-5
    assert eq.diffs["params"] <= 4 * eq.floor["params"] + 1e-5


@pytest.mark.timeout(150)
def test_two_processes_every_schedule_both_executors():
    js = equivalence_jobs(n_layer_plain=2, n_layer_interleaved=2)
    # uneven micro-batches (10 rows in 4 chunks: 3, 3, 2, 2), weighted by size: still equal
    js.append(make_job("1f1b", 4, n_layer=2, batch_size=10, steps=2, name="ours-uneven"))
    # SGD: parameters are linear in the gradients, so they agree to float precision too
    js.append(make_job("1f1b", 4, n_layer=2, steps=3, optimizer="sgd", lr=0.1, name="ours-sgd"))
    runs = jobs.run(js, 2, timeout=30, deadline=140)
    for run in runs:
        assert_equivalent(run)
        assert len(run.losses) == len(run.job.batches)
    sgd = check_equivalence(runs[-1])
    assert sgd.diffs["params"] <= 1e-6
    assert runs[-2].logits.shape[0] == 10


@pytest.mark.timeout(150)
def test_four_processes_every_schedule_both_executors_and_memory():
    js = equivalence_jobs(n_layer_plain=2, n_layer_interleaved=6)
    mem = [make_job(name, 8, n_layer=2, steps=1, measure_memory=True, return_state=False,
                    name=f"memory-{name}") for name in ("gpipe", "1f1b")]
    runs = jobs.run(js + mem, 4, timeout=30, deadline=140)
    for run in runs[: len(js)]:
        assert_equivalent(run)
    for run in runs[len(js):]:
        peak = run.schedule.peak_in_flight()  # gpipe: m everywhere; 1f1b: p - r on stage r
        assert peak == ([8] * 4 if run.job.schedule == "gpipe" else [4, 3, 2, 1])
        # measured saved-activation peak = simulated peak in flight x one micro-batch's bytes
        assert run.act_peak == [p * b for p, b in zip(peak, run.act_bytes, strict=True)]
        tl = run.timeline()
        for starts, ends in zip(tl.starts, tl.ends, strict=True):
            assert all(s <= e for s, e in zip(starts, ends, strict=True))
            assert all(e <= s2 + 1e-9 for e, s2 in zip(ends, starts[1:], strict=False))
        assert 0.0 <= tl.bubble < 1.0
    gpipe, one_f = runs[len(js):]
    assert gpipe.act_peak[0] > one_f.act_peak[0]  # 1F1B holds fewer micro-batches on stage 0


@pytest.mark.timeout(60)
def test_single_rank_is_gradient_accumulation():
    run = jobs.run(make_job("gpipe", 3, n_layer=2, batch_size=6, steps=2), 1, deadline=50)[0]
    assert_equivalent(run)
    assert run.timeline().bubble == pytest.approx(0.0, abs=0.2)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 3, "m": 4}, "batch of 3 rows cannot be split into m=4"),
    ({"executor": "torch", "batch_size": 10, "m": 4}, "divisible by m"),
    ({"executor": "deepspeed"}, "executor must be one of"),
    ({"schedule": "zero-bubble"}, "schedule must be one of"),
    ({"optimizer": "lion"}, "optimizer must be one of"),
    ({"m": 0}, "n_microbatches must be a positive int"),
    ({"schedule": "1f1b", "n_chunks": 2}, "needs schedule='interleaved'"),
])
def test_job_bad_input(kwargs, match):
    m = kwargs.pop("m", 4)
    with pytest.raises(ValueError, match=match):
        make_job(n_microbatches=m, **kwargs)


@pytest.mark.parametrize("job_kw, world, match", [
    ({"schedule": "1f1b", "n_microbatches": 2}, 4, "m=2 < p=4"),
    ({"bounds": ((0, 2), (2, 4))}, 3, "world size 3 does not match the job's 2 stages"),
    ({"schedule": "gpipe"}, 5, "cannot split 4 layers into 5 stages"),
    ({"schedule": "interleaved", "n_chunks": 2}, 3, "multiple of p"),
    ({"fault": jobs.Fault(rank=5)}, 2, "fault rank 5"),
])
@pytest.mark.timeout(30)
def test_plan_bad_input_fails_before_any_process(job_kw, world, match):
    job = make_job(n_layer=2, **job_kw)
    with pytest.raises(ValueError, match=match):
        jobs.run(job, world)


def test_reference_microbatched_equals_full_batch_to_rounding():
    job = make_job("gpipe", 4, n_layer=2, steps=1)
    diffs = jobs.max_differences(jobs.reference_run(job, microbatched=True), jobs.reference_run(job))
    assert diffs["logits"] == 0.0 and diffs["grads"] < 1e-6 and diffs["loss"] < 1e-6
    assert torch.equal(jobs.reference_run(job).logits, jobs.reference_run(job).logits)
