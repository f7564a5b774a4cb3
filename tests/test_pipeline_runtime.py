"""Both executors on real processes (CPU, gloo): every schedule with 2 and 4 processes is the
unsplit model -- bit for bit against gradient accumulation in one process, and within 4x the
rounding floor against full-batch training -- plus pipeline x data parallel, measured timelines,
activation memory and message counts, uneven micro-batches. Each test is one launch (start-up
paid once) and carries a timeout."""

from __future__ import annotations

import pytest
import torch

from helpers.pipeline import jobs
from helpers.pipeline.jobs import check_equivalence, make_job

COURSE = (("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("zbh1", 1), ("zbv", 2))
TORCH = (("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("zbv", 2), ("dualpipev", 2))


def equivalence_jobs(p: int, n_layer_plain: int, n_layer_two_chunks: int, m: int = 4) -> list[jobs.PipelineJob]:
    """Every schedule on both executors (two chunks per rank need 2 x p stages: more layers;
    DualPipeV needs m >= 2p micro-batches)."""
    return [
        make_job(name, max(m, 2 * p) if name == "dualpipev" else m, v, batch_size=max(8, 2 * p),
                 n_layer=n_layer_two_chunks if v > 1 else n_layer_plain, steps=3,
                 executor=executor, name=f"{executor}-{name}")
        for executor, names in (("course", COURSE), ("torch", TORCH)) for name, v in names
    ]


def assert_equivalent(run: jobs.PipelineRun, bit_identical: bool = True) -> None:
    eq = check_equivalence(run)
    assert eq.ok, f"{run.job.name}: {eq.rows()}"
    if bit_identical:  # the same arithmetic as gradient accumulation: every difference is 0.0
        assert eq.bit_identical, f"{run.job.name}: {eq.accum}"
    for k in eq.diffs:  # against full-batch training: at most 4x what accumulation alone changes
        assert eq.diffs[k] <= 4 * eq.floor[k], (run.job.name, k, eq.diffs[k], eq.floor[k])


@pytest.mark.timeout(150)
def test_two_processes_every_schedule_both_executors():
    js = equivalence_jobs(2, n_layer_plain=2, n_layer_two_chunks=2)
    # uneven micro-batches (10 rows in 4 chunks: 3, 3, 2, 2), weighted by size: still exact
    js.append(make_job("1f1b", 4, n_layer=2, batch_size=10, steps=2, name="ours-uneven"))
    js.append(make_job("zbh1", 4, n_layer=2, batch_size=10, steps=2, name="ours-uneven-zb"))
    # SGD: parameters are linear in the gradients
    js.append(make_job("1f1b", 4, n_layer=2, steps=3, optimizer="sgd", lr=0.1, name="ours-sgd"))
    # torch divides the summed gradients by m afterwards: exact only for m a power of two
    js += [make_job(s, 3, n_layer=2, batch_size=6, steps=2, executor="torch", name=f"torch-m3-{s}")
           for s in ("1f1b", "gpipe")]
    # lesson 08's options: bf16 autocast + checkpointing + clipping + LR schedule. Exact except
    # the parameters (the clipping norm's squares are summed per rank, then across ranks)
    from helpers.core import LRSchedule  # the capstone's schedule

    opts = dict(amp=True, clip=0.05, lr_schedule=LRSchedule("cosine", warmup=1))
    js.append(make_job("1f1b", 4, n_layer=2, steps=3, checkpoint=True, name="ours-all", **opts))
    js.append(make_job("zbh1", 4, n_layer=2, steps=3, name="ours-zb-amp-clip", **opts))
    runs = jobs.run(js, 2, timeout=30, deadline=140)
    for run in runs:
        m3 = run.job.name.startswith("torch-m3")
        assert_equivalent(run, bit_identical=run.job.clip is None and not m3)
        assert len(run.losses) == len(run.job.batches)
        if m3:
            eq = check_equivalence(run)
            assert eq.accum["logits"] == eq.accum["loss"] == 0.0 and eq.accum["grads"] > 0
    for run in runs[-2:]:
        eq = check_equivalence(run)
        assert eq.accum["logits"] == eq.accum["loss"] == eq.accum["grads"] == 0.0
        assert eq.accum["params"] < 1e-6  # at most rounding of the clip factor
    assert runs[-7].logits.shape[0] == 10


@pytest.mark.timeout(200)
def test_four_processes_every_schedule_both_executors_and_memory():
    js = equivalence_jobs(4, n_layer_plain=2, n_layer_two_chunks=6)
    mem = [make_job(name, 8, v, n_layer=6 if v > 1 else 2, steps=1, measure_memory=True,
                    return_state=False, name=f"memory-{name}")
           for name, v in (("gpipe", 1), ("1f1b", 1), ("zbh1", 1), ("interleaved", 2))]
    runs = jobs.run(js + mem, 4, timeout=30, deadline=190)
    for run in runs[: len(js)]:
        assert_equivalent(run)
    expected = {"gpipe": [8] * 4, "1f1b": [4, 3, 2, 1], "zbh1": [4, 4, 4, 4]}
    for run in runs[len(js):]:
        peak = run.schedule.peak_in_flight()
        if run.job.schedule in expected:
            assert peak == expected[run.job.schedule]
        # measured saved-activation peak = peak in flight x one micro-batch's bytes
        assert run.act_peak == [p * b for p, b in zip(peak, run.act_bytes, strict=True)]
        tl = run.timeline()
        for starts, ends in zip(tl.starts, tl.ends, strict=True):
            assert all(s <= e for s, e in zip(starts, ends, strict=True))
            assert all(e <= s2 + 1e-9 for e, s2 in zip(ends, starts[1:], strict=False))
        assert 0.0 <= tl.bubble < 1.0
        # messages each rank sent in the step, summed: the schedule's count
        sent = sum(r.messages["sent"] for r in run.ranks)
        assert sent == run.schedule.messages()["total"]
    gpipe, one_f, zb, inter = runs[len(js):]
    assert gpipe.act_peak[0] > one_f.act_peak[0]  # 1F1B holds fewer micro-batches on stage 0
    assert zb.ranks[0].rank_act_peak == one_f.ranks[0].rank_act_peak  # ZB-H1: 1F1B's peak...
    assert zb.ranks[3].rank_act_peak > one_f.ranks[3].rank_act_peak  # ...on every rank
    # interleaved, per rank (both chunks): rank 0 holds 11 half-stage micro-batches = 5.5
    # stages' worth, against 1F1B's 4; and it sends v = 2 times the messages
    assert inter.schedule.peak_in_flight_per_rank()[0] == 11
    assert inter.schedule.messages()["total"] == 2 * 8 * 7 and one_f.schedule.messages()["total"] == 2 * 8 * 3


@pytest.mark.timeout(150)
def test_pipeline_times_data_parallel_on_four_processes():
    """2 stages x 2 replicas: each replica runs half the batch; the stage's gradients are summed
    over its replica group. Equal to the unsplit model on the whole batch."""
    js = [make_job(s, 2, n_layer=2, batch_size=8, steps=3, dp=2, name=f"dp-{s}") for s in ("1f1b", "zbh1")]
    js.append(make_job("1f1b", 2, n_layer=2, batch_size=8, steps=3, dp=2, clip=0.05, amp=True,
                       name="dp-amp-clip"))
    js.append(make_job("zbh1", 2, n_layer=2, batch_size=7, steps=2, dp=2, name="dp-uneven"))
    runs = jobs.run(js, 4, timeout=30, deadline=140)
    for run in runs:
        eq = check_equivalence(run)
        assert eq.ok, eq.rows()
        # two replicas' sums add the same in either order: bit-identical to per-replica
        # accumulation summed (the parameters too, unless clipped)
        assert all(eq.accum[k] == 0.0 for k in ("logits", "loss", "grads")), (run.job.name, eq.accum)
        assert run.job.clip is not None or eq.bit_identical
        assert len(run.ranks) == 2 and len(run.replicas) == 1
        # both replicas end with the same weights
        other = {k: v for r in run.replicas[0] for k, v in r.params.items()}
        assert all(torch.equal(other[k], v) for k, v in run.params.items())


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
    ({"schedule": "dualpipev"}, "executor='course' runs schedules"),
    ({"schedule": "zbh1", "executor": "torch"}, "executor='torch' runs schedules"),
    ({"schedule": "zbh1", "checkpoint": True}, "checkpoint=True needs a schedule with a whole backward"),
    ({"optimizer": "lion"}, "optimizer must be one of"),
    ({"m": 0}, "n_microbatches must be a positive int"),
    ({"schedule": "1f1b", "n_chunks": 2}, "only 'interleaved' takes other values"),
    ({"dp": 0}, "dp must be a positive int"),
    ({"executor": "torch", "dp": 2}, "dp need executor='course'"),
    ({"save_every": 1}, "need save_dir"),
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
    ({"dp": 2}, 3, "world size 3 is not a multiple of dp=2"),
    ({"dp": 2, "batch_size": 6}, 4, "cannot feed dp=2 replicas x m=4"),
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


def test_equivalence_catches_a_difference():
    """The check can fail: a run whose gradients are off by one ulp-sized nudge is not exact."""
    job = make_job("1f1b", 4, n_layer=2, steps=1)
    ref = jobs.reference_run(job, microbatched=True)
    from helpers.pipeline.reference import Equivalence, exact_keys, max_differences  # the parts

    nudged = jobs.reference_run(job, microbatched=True)
    k = next(iter(nudged.grads))
    nudged.grads[k] = nudged.grads[k] * (1 + 2**-20)
    full = jobs.reference_run(job)
    eq = Equivalence(max_differences(nudged, full), max_differences(ref, full),
                     max_differences(nudged, ref), exact_keys(job))
    assert not eq.ok and not eq.bit_identical
