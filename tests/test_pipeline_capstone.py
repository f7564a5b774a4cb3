"""Lesson 08's additions to the pipeline: bf16 autocast and block checkpointing inside each stage,
a learning-rate schedule, gradient clipping by the norm of the whole model across ranks, and a
progress report from the ranks. Multi-process tests are one launch each and carry a timeout."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from helpers import core, memory, training
from helpers.core import LRSchedule as Schedule
from helpers.pipeline import job as job_mod
from helpers.pipeline import jobs, launch, split
from helpers.pipeline.jobs import check_equivalence, make_job, reference_run


def test_new_fields_default_off_and_are_validated():
    job = make_job("1f1b", 4)
    assert (job.amp, job.checkpoint, job.lr_schedule, job.clip) == (False, False, None, None)
    with pytest.raises(ValueError, match=r"executor='torch' runs plain fp32 steps; amp, clip need "
                                         r"executor='course'"):
        make_job("1f1b", 4, executor="torch", amp=True, clip=1.0)
    with pytest.raises(ValueError, match="clip must be None or a number > 0, got 0"):
        make_job("1f1b", 4, clip=0)
    with pytest.raises(ValueError, match="clip must be None or a number > 0, got True"):
        make_job("1f1b", 4, clip=True)
    with pytest.raises(TypeError, match="lr_schedule must be a helpers.core.LRSchedule or None"):
        make_job("1f1b", 4, lr_schedule="cosine")
    with pytest.raises(TypeError, match="checkpoint must be a bool, got 'every'"):
        make_job("1f1b", 4, checkpoint="every")


def test_stage_forward_checkpointing_is_exact_and_keeps_less():
    torch.manual_seed(0)
    model = core.GPT(core.GPTConfig(vocab_size=27, n_layer=3, n_embd=32, block_size=16))
    bounds = [(0, 3), (3, 5)]
    x = torch.randint(27, (4, 16))
    outs, grads, saved = [], [], []
    for ck in (False, True):
        model.zero_grad(set_to_none=True)
        h = x
        with memory.record_saved_tensors(model) as log:
            for stage in split.stage_modules(model, bounds):
                h = split.stage_forward(stage, h, checkpoint=ck)
        h.float().pow(2).mean().backward()
        outs.append(h.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
        saved.append(log.total_bytes)
    assert torch.equal(outs[0], outs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
    assert saved[1] < 0.5 * saved[0]


def test_reference_run_follows_the_trainer_with_schedule_and_clipping():
    task = core.char_task()
    cfg = task.config(n_layer=2, n_embd=32, block_size=16)
    tc = training.TrainConfig(steps=6, batch_size=8, lr=6e-3, warmup=2, clip=0.5)
    trainer = training.Trainer(cfg, task, tc)
    state = {k: t.clone() for k, t in trainer.model.state_dict().items()}
    g = torch.Generator().manual_seed(tc.seed)
    data = tuple(task.batch(8, 16, g) for _ in range(6))
    job = jobs.PipelineJob(config=cfg, state=state, batches=data, lr=tc.lr, clip=tc.clip,
                           lr_schedule=Schedule("cosine", warmup=2))
    ref = reference_run(job)
    expected = trainer.run()
    assert ref.losses == expected  # the same core step: bit-identical
    plain = reference_run(replace(job, lr_schedule=None, clip=None))  # the defaults change nothing
    assert abs(plain.losses[-1] - expected[-1]) > 1e-3


def test_autocast_dtype_follows_the_job():
    job = make_job("1f1b", 4, amp=True)
    assert job_mod.autocast_dtype(job, "cpu") == torch.bfloat16
    assert job_mod.autocast_dtype(replace(job, amp=False), "cpu") is None
    with core.autocast("cpu", job_mod.autocast_dtype(job)):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


@pytest.mark.timeout(180)
def test_pipeline_with_amp_checkpointing_schedule_and_clipping():
    """Two processes: (a) SGD + schedule + a clip that bites: the pipeline's update equals the
    unsplit model's (clipping must use the global norm); (b) all three techniques with AdamW,
    against the same training in one process; (c) the progress report."""
    sched = Schedule("cosine", warmup=2)
    sgd = make_job("1f1b", 4, n_layer=2, steps=4, optimizer="sgd", lr=0.5, clip=0.05,
                   lr_schedule=sched, name="sgd-clip")
    full = make_job("1f1b", 4, n_layer=2, steps=4, amp=True, checkpoint=True, lr_schedule=sched,
                    clip=1.0, name="all")
    seen: list[list[tuple[int, int]]] = []
    per_rank = launch.spawn(jobs.run_jobs_on_rank, 2, ([sgd, full],), timeout=60, deadline=170,
                            on_progress=seen.append)
    runs = [jobs.PipelineRun(j, *j.plan(2), [per_rank[r][i] for r in range(2)])
            for i, j in enumerate([sgd, full])]
    eq = check_equivalence(runs[0])
    assert eq.ok, eq.rows()
    # the same arithmetic as gradient accumulation: exact, the clipped update to rounding
    assert eq.accum["logits"] == eq.accum["loss"] == eq.accum["grads"] == 0.0
    assert eq.diffs["params"] <= 4 * eq.floor["params"] and eq.accum["params"] <= 4 * eq.floor["params"]
    unclipped = reference_run(replace(sgd, clip=None))
    assert max(abs(a - b) for a, b in zip(unclipped.params["head.out.weight"].flatten(),
                                          runs[0].params["head.out.weight"].flatten(), strict=True)) > 1e-3
    # the same autocast, checkpointing, schedule and clip, unsplit: bf16 included, the losses and
    # step-0 gradients are gradient accumulation's bit for bit
    eq_all = check_equivalence(runs[1])
    assert eq_all.ok, eq_all.rows()
    assert eq_all.accum["loss"] == eq_all.accum["grads"] == eq_all.accum["logits"] == 0.0
    assert runs[1].losses[-1] < runs[1].losses[0]
    assert seen and all(len(pos) == 2 for pos in seen)
    assert all(0 <= j <= 1 and 0 <= s <= 4 for pos in seen for j, s in pos)


@pytest.mark.timeout(120)
def test_run_with_progress_bar(capsys):
    job = make_job("gpipe", 2, n_layer=2, steps=2, checkpoint=True, name="bar")
    (run,) = jobs.run([job], 2, timeout=60, deadline=110, progress=True)
    assert len(run.losses) == 2
    assert "pipeline, 2 processes" in capsys.readouterr().err
