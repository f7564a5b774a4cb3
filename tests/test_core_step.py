"""helpers.core.step, .checkpoint and .lr: the one training step and the transformations it applies."""

from __future__ import annotations

import pytest
import torch

from helpers import core
from helpers.core.step import microbatch_sizes


@pytest.fixture(scope="module")
def task():
    return core.char_task()


def _model(task, seed=0, **kw):
    torch.manual_seed(seed)
    return core.GPT(task.config(n_layer=3, n_embd=32, block_size=16, **kw))


def _batch(task, rows=6, seed=1):
    return task.batch(rows, 16, torch.Generator().manual_seed(seed))


def _grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def test_microbatches_follow_tensor_split_and_weights_sum_to_one():
    x = torch.arange(7 * 3).view(7, 3)
    parts = core.microbatches(x, x, 3)
    assert [len(a) for a, _, _ in parts] == [len(c) for c in x.tensor_split(3)] == [3, 2, 2]
    assert sum(w for _, _, w in parts) == pytest.approx(1.0)
    assert microbatch_sizes(7, 3) == [3, 2, 2]
    with pytest.raises(ValueError, match="batch of 2 rows cannot be split into m=3"):
        core.microbatches(x[:2], x[:2], 3)


@pytest.mark.parametrize("n", [2, 4, 6])
def test_accumulated_microbatches_give_the_full_batch_gradient(task, n):
    x, y = _batch(task)
    full, acc = _model(task), _model(task)
    loss_full, _ = core.forward_backward(full, x, y)
    loss_acc, _ = core.forward_backward(acc, x, y, core.StepConfig(n_microbatches=n))  # 6 rows: uneven for 4
    assert loss_acc == pytest.approx(loss_full, abs=1e-6)
    for k, g in _grads(full).items():
        torch.testing.assert_close(_grads(acc)[k], g, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("policy", ["every", "sqrt", core.Policy("every", impl="torch"), "selective"])
def test_checkpointing_changes_no_gradient(task, policy):
    x, y = _batch(task)
    plain, ck = _model(task), _model(task)
    core.forward_backward(plain, x, y)
    core.forward_backward(ck, x, y, core.StepConfig(checkpoint=policy))
    for k, g in _grads(plain).items():
        assert torch.equal(_grads(ck)[k], g), k  # the same kernels recomputed: bit-identical


def test_apply_checkpointing_wraps_only_blocks_and_shares_parameters(task):
    model = _model(task)
    layers = core.apply_checkpointing(model, "every")
    assert layers[0] is model.embed and layers[-1] is model.head and len(layers) == 5
    assert core.apply_checkpointing(model, "none") == model.layers()
    stage = model.layers()[2:]  # a pipeline stage: two blocks and the head
    assert len(core.apply_checkpointing(stage, "every")) == 3
    with pytest.raises(ValueError, match="contiguous"):
        core.apply_checkpointing([model.blocks[0], model.head, model.blocks[1]], "every")


def test_train_step_clips_the_whole_model_and_steps_the_schedule(task):
    x, y = _batch(task)
    model = _model(task)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = core.LRSchedule("cosine", warmup=2).to_torch(opt, 10)
    stats = core.train_step(model, opt, (x, y), core.StepConfig(clip=1e-3), lr_scheduler=sched)
    assert stats.grad_norm > 1e-3 and not stats.skipped and stats.scale is None
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert float(after) == pytest.approx(1e-3, rel=1e-3)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * core.LRSchedule("cosine", warmup=2).factors(10)[1])


def test_clip_grad_norm_is_torchs_in_one_process():
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b, strict=True):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    assert torch.equal(core.clip_grad_norm(a, 0.5), torch.nn.utils.clip_grad_norm_(b, 0.5))
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a, b, strict=True))
    big = core.clip_grad_norm(a, 100.0)  # below the limit: the norm is reported, nothing changes
    torch.testing.assert_close(big, torch.tensor(0.5), rtol=1e-5, atol=0)
    assert torch.equal(a[0].grad, b[0].grad)


def test_train_step_with_a_loss_function_and_a_scaler():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    stats = core.train_step(lin, opt, lambda: lin(torch.ones(2, 4)).pow(2).mean(), scaler=scaler)
    assert stats.scale == 8.0 and not stats.skipped
    with pytest.raises(ValueError, match="checkpoint must be 'none' and n_microbatches 1"):
        core.train_step(lin, opt, lambda: lin(torch.ones(2, 4)).sum(), core.StepConfig(n_microbatches=2))
    with pytest.raises(TypeError, match="scalar tensor"):
        core.train_step(lin, opt, lambda: lin(torch.ones(2, 4)))
    with pytest.raises(TypeError, match="helpers.core.GPT or a sequence"):
        core.train_step(lin, opt, (torch.ones(2, 4), torch.ones(2, 4)))


def test_autocast_for_fp32_leaves_an_outer_region_alone():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with core.autocast("cpu", None):
            assert torch.is_autocast_enabled("cpu")
        with core.autocast("cpu", torch.float32):
            assert torch.is_autocast_enabled("cpu")
    with core.autocast("cpu", torch.bfloat16):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"clip": 0}, ValueError, "clip must be a finite number > 0"),
    ({"n_microbatches": 0}, ValueError, "n_microbatches must be a positive int"),
    ({"checkpoint": "sometimes"}, ValueError, "policy name must be one of"),
    ({"autocast_dtype": "bf16"}, TypeError, "autocast_dtype must be a torch.dtype"),
])
def test_step_config_rejects_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        core.StepConfig(**kwargs)


def test_lr_schedule_to_torch_gives_its_factors():
    sched = core.LRSchedule("cosine", warmup=3, min_factor=0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    torch_sched = sched.to_torch(opt, 12)
    seen = []
    for _ in range(14):  # two steps past the end: the last factor holds
        seen.append(opt.param_groups[0]["lr"] / 2.0)
        opt.step()
        torch_sched.step()
    expected = list(sched.factors(12)) + [sched.factors(12)[-1]] * 2
    assert seen == pytest.approx(expected, rel=1e-12)


def test_the_one_step_is_what_the_trainer_and_the_pipeline_reference_run(task):
    """Trainer.step and the pipeline's reference are core.train_step: same losses, bit for bit."""
    from helpers import training
    from helpers.pipeline import jobs

    cfg = task.config(n_layer=2, n_embd=32, block_size=16)
    tc = training.TrainConfig(steps=4, batch_size=8, lr=6e-3, warmup=1, clip=0.5, checkpoint=True, amp=True)
    trainer = training.Trainer(cfg, task, tc)
    state = {k: t.clone() for k, t in trainer.model.state_dict().items()}
    g = torch.Generator().manual_seed(tc.seed)
    data = tuple(task.batch(8, 16, g) for _ in range(4))
    job = jobs.PipelineJob(config=cfg, state=state, batches=data, lr=tc.lr, clip=tc.clip, amp=True,
                           checkpoint=True, lr_schedule=tc.lr_schedule())
    assert jobs.reference_run(job).losses == trainer.run()


def test_a_pipeline_stage_runs_the_same_step(task):
    x, y = _batch(task)
    whole, staged = _model(task), _model(task)
    core.forward_backward(whole, x, y)
    core.forward_backward(torch.nn.Sequential(*staged.layers()), x, y)  # a stage holding every layer
    for k, g in _grads(whole).items():
        assert torch.equal(_grads(staged)[k], g), k


def test_a_loss_scaler_is_refused_across_ranks():
    lin = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="loss scaler across ranks"):
        core.finish_step(opt, scaler=torch.amp.GradScaler("cpu"), group=object())
