import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from helpers import checkpointing as ck
from helpers import core, memory

T, B = 16, 4


@pytest.fixture(scope="module")
def task():
    return core.char_task()


@pytest.fixture(scope="module")
def batch(task):
    return task.batch(B, T, torch.Generator().manual_seed(0))


def gpt(task, n_layer=3, dropout=0.0, **kw):
    torch.manual_seed(0)
    return core.GPT(task.config(n_layer=n_layer, n_embd=32, n_head=4, block_size=T, dropout=dropout, **kw))


def grads_after(model, batch, policy, seed=1, autocast_dtype=None):
    """Fresh copy of ``model`` after one forward/backward under ``policy``; also returns the loss
    and the CPU RNG state afterwards."""
    m = copy.deepcopy(model)
    torch.manual_seed(seed)
    loss = ck.grad_step(m, *batch, policy=policy, autocast_dtype=autocast_dtype)
    return m, loss, torch.get_rng_state()


# --------------------------------------------------------------------------- gradient equality
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_scratch_equals_plain_and_torch(task, batch, dropout):
    model = gpt(task, dropout=dropout)
    plain, loss0, rng0 = grads_after(model, batch, "none")
    for policy in (ck.Policy("every"), ck.Policy("every", impl="torch")):
        m, loss, rng = grads_after(model, batch, policy)
        assert loss == loss0
        assert ck.max_grad_difference(plain, m) <= 1e-7, policy.label
        # the recomputation runs in a forked RNG: later random draws are not shifted
        assert torch.equal(rng, rng0)


def test_without_rng_preservation_dropout_masks_differ(task, batch):
    noisy = gpt(task, dropout=0.1)
    plain, _, rng0 = grads_after(noisy, batch, "none")
    m, _, rng = grads_after(noisy, batch, ck.Policy("every", preserve_rng_state=False))
    assert ck.max_grad_difference(plain, m) > 1e-3  # recomputed with other masks: wrong gradients
    assert not torch.equal(rng, rng0)  # and the recomputation consumed random numbers
    # without randomness in the model, preserving the RNG state does not matter
    clean = gpt(task, dropout=0.0)
    plain, _, _ = grads_after(clean, batch, "none")
    m, _, _ = grads_after(clean, batch, ck.Policy("every", preserve_rng_state=False))
    assert ck.max_grad_difference(plain, m) <= 1e-7


@pytest.mark.parametrize(
    "policy",
    [ck.Policy("every"), ck.Policy("every_kth", k=2), ck.Policy("segments", k=2), ck.Policy("sqrt"),
     ck.Policy("segments", k=3, impl="torch"), ck.Policy("selective")],
    ids=lambda p: p.label,
)
def test_every_policy_gives_plain_gradients_with_dropout(task, batch, policy):
    model = gpt(task, n_layer=4, dropout=0.1)
    plain, loss0, _ = grads_after(model, batch, "none")
    m, loss, _ = grads_after(model, batch, policy)
    assert loss == pytest.approx(loss0, abs=1e-6)
    assert ck.max_grad_difference(plain, m) <= 1e-6


@pytest.mark.parametrize("impl", ["scratch", "torch"])
def test_recomputation_runs_under_the_forward_autocast(task, batch, impl):
    model = gpt(task)
    plain, _, _ = grads_after(model, batch, "none", autocast_dtype=torch.bfloat16)
    m, _, _ = grads_after(model, batch, ck.Policy("every", impl=impl), autocast_dtype=torch.bfloat16)
    assert ck.max_grad_difference(plain, m) <= 1e-7


def test_function_level_equals_torch_checkpoint_with_dropout_and_extra_args():
    w = torch.randn(8, 8, requires_grad=True)

    def fn(x, scale, bias):
        h = F.dropout(torch.tanh(x @ w) * scale, p=0.3, training=True)
        return (h + bias).sin()

    x = torch.randn(5, 8, requires_grad=True)
    bias = torch.randn(8)  # a tensor input that needs no gradient
    results = []
    for run in (lambda: ck.checkpoint(fn, x, 2.0, bias), lambda: torch_checkpoint(fn, x, 2.0, bias, use_reentrant=False),
                lambda: fn(x, 2.0, bias)):
        torch.manual_seed(3)
        x.grad = w.grad = None
        out = run()
        out.pow(2).sum().backward()
        results.append((out.detach(), x.grad.clone(), w.grad.clone()))
    for got in results[:2]:
        for a, b in zip(got, results[2], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_tuple_outputs_and_unused_output():
    x = torch.randn(4, 3, requires_grad=True)
    a, b = ck.checkpoint(lambda t: (t.exp(), t * 3), x)
    a.sum().backward()  # b unused: its gradient is None
    torch.testing.assert_close(x.grad, x.detach().exp())


def test_checkpoint_saves_only_its_inputs():
    net = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16))
    x = torch.randn(32, 16, requires_grad=True)
    plain = memory.saved_activation_bytes(net, lambda: net(x).sum())
    kept = memory.saved_activation_bytes(net, lambda: ck.checkpoint(net, x).sum())
    assert kept == memory.tensor_bytes(x) == 32 * 16 * 4
    assert plain == (32 * 16 + 2 * 32 * 64) * 4  # x (fc), fc output (GELU), GELU output (2nd Linear)


def test_no_grad_mode_runs_plainly_and_bad_arguments():
    x = torch.randn(3, requires_grad=True)
    with torch.no_grad():
        assert not ck.checkpoint(torch.sin, x).requires_grad
    with pytest.raises(ValueError, match="requires_grad"):
        ck.checkpoint(torch.sin, torch.randn(3))
    with pytest.raises(TypeError, match="fn must be callable"):
        ck.checkpoint(3, x)
    with pytest.raises(TypeError, match="preserve_rng_state"):
        ck.checkpoint(torch.sin, x, preserve_rng_state="yes")


# --------------------------------------------------------------------------- policies and plans
def test_plans():
    def layout(policy, n):
        return [(s.start, s.stop, s.checkpointed) for s in ck.plan(policy, n)]

    assert layout("none", 4) == [(0, 4, False)]
    assert layout("every", 3) == [(0, 1, True), (1, 2, True), (2, 3, True)]
    assert layout("selective", 2) == [(0, 1, True), (1, 2, True)]
    assert [s.checkpointed for s in ck.plan(ck.Policy("every_kth", k=3), 7)] == [1, 0, 0, 1, 0, 0, 1]
    assert layout(ck.Policy("segments", k=3), 7) == [(0, 3, True), (3, 5, True), (5, 7, True)]
    assert [len(s) for s in ck.plan("sqrt", 16)] == [4, 4, 4, 4]
    assert [len(s) for s in ck.plan("sqrt", 10)] == [4, 3, 3]
    assert ck.sqrt_segments(1) == 1 and ck.sqrt_segments(32) == 6
    assert ck.Policy("selective").impl == "torch" and ck.Policy("every").impl == "scratch"
    assert ck.Policy("segments", k=4, impl="torch").label == "segments(k=4)/torch"


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: ck.plan(ck.Policy("segments", k=5), 4), ValueError, r"between 1 and n_blocks=4, got k=5"),
        (lambda: ck.Policy("segments", k=0), ValueError, r"k must be a positive int, got 0"),
        (lambda: ck.Policy("segments"), ValueError, r"needs k"),
        (lambda: ck.Policy("every_kth", k=-1), ValueError, r"k must be a positive int, got -1"),
        (lambda: ck.plan(ck.Policy("every_kth", k=9), 4), ValueError, r"got k=9"),
        (lambda: ck.Policy("every", k=2), ValueError, r"takes no k"),
        (lambda: ck.Policy("sometimes"), ValueError, r"policy name must be one of .*'sometimes'"),
        (lambda: ck.plan("sometimes", 4), ValueError, r"one of"),
        (lambda: ck.Policy("every", impl="jax"), ValueError, r"impl must be one of"),
        (lambda: ck.Policy("selective", impl="scratch"), ValueError, r"needs impl='torch'"),
        (lambda: ck.plan("every", 0), ValueError, r"n_blocks must be a positive int, got 0"),
        (lambda: ck.as_policy(3), TypeError, r"policy must be a Policy"),
        (lambda: ck.time_steps({"a": lambda: None}, repeats=0), ValueError, r"repeats"),
    ],
)
def test_bad_input_gives_clear_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_wrapper_validates_against_its_model_and_matches_forward(task, batch):
    model = gpt(task, n_layer=3)
    with pytest.raises(ValueError, match="n_blocks=3"):
        ck.CheckpointedGPT(model, ck.Policy("segments", k=4))
    with pytest.raises(TypeError, match="GPT"):
        ck.CheckpointedGPT(nn.Linear(2, 2))
    wrapped = ck.CheckpointedGPT(model, "sqrt")
    assert sum(p.numel() for p in wrapped.parameters()) == model.num_params()
    torch.testing.assert_close(wrapped(*batch)[1], model(*batch)[1], rtol=0, atol=0)


# --------------------------------------------------------------------------- memory
def test_memory_what_shrinks_and_what_does_not(task, batch):
    model = gpt(task, n_layer=4)
    m = {p: ck.measure_memory(model, *batch, p) for p in ("none", "every", "sqrt", "selective")}
    x_bytes = B * T * 32 * 4  # one block input (residual stream), fp32
    # weight gradients are the same size whatever the policy: checkpointing does not touch them
    assert len({r.grads for r in m.values()}) == 1 and m["none"].grads == memory.grad_bytes(model)
    assert m["every"].peak < m["sqrt"].peak < m["none"].peak
    assert m["every"].peak < m["selective"].peak < m["none"].peak
    assert m["none"].recomputed_blocks == 0
    assert m["every"].recomputed_blocks == m["sqrt"].recomputed_blocks == 4  # one extra forward
    # 'every' keeps exactly one input per block more than the plain run keeps outside the blocks
    five = ck.measure_memory(gpt(task, n_layer=5), *batch, "every")
    assert five.saved - m["every"].saved == x_bytes
    # the scratch implementation and torch's keep the same tensors alive
    torch_every = ck.measure_memory(model, *batch, ck.Policy("every", impl="torch"))
    assert abs(torch_every.peak - m["every"].peak) <= 2 * x_bytes


def test_sqrt_segments_memory_grows_like_sqrt_n(task, batch):
    ns = np.array([1, 4, 9, 16])
    peaks = [ck.measure_memory(gpt(task, n_layer=int(n)), *batch, "sqrt").peak for n in ns]
    plain = [ck.measure_memory(gpt(task, n_layer=int(n)), *batch, "none").peak for n in ns]
    slope = np.polyfit(np.log(ns[1:]), np.log(peaks[1:]), 1)[0]
    slope_plain = np.polyfit(np.log(ns[1:]), np.log(plain[1:]), 1)[0]
    assert 0.35 < slope < 0.65 and slope_plain > 0.85


def test_memory_model_predicts_measured_peaks(task, batch):
    h = torch.randn(B, T, 32, requires_grad=True)
    block = gpt(task, n_layer=1).blocks[0]
    with memory.record_saved_tensors(block) as log:  # the block's weights are not activations
        block(h)
    b, c = memory.tensor_bytes(h), log.total_bytes
    fixed = ck.fit_power_law([4, 9, 16], [ck.measure_memory(gpt(task, n_layer=n), *batch, "sqrt").peak
                                          for n in (4, 9, 16)]).fixed
    model = gpt(task, n_layer=6)
    for policy in ["none", "every", "sqrt", ck.Policy("segments", k=4), ck.Policy("every_kth", k=2)]:
        measured = ck.measure_memory(model, *batch, policy).peak
        assert ck.predict_peak(policy, 6, fixed, b, c) == pytest.approx(measured, rel=0.02), policy
    assert ck.predict_peak("every", 4, 0, 1, 10) == 4 + 10  # four inputs kept, one block recomputed
    assert ck.predict_peak(ck.Policy("segments", k=2), 4, 0, 1, 10) == 2 + 20
    assert ck.predict_peak("none", 4, 5, 1, 10) == 45
    with pytest.raises(ValueError, match="input_bytes must be >= 0"):
        ck.predict_peak("every", 4, 0, -1, 10)


def test_schedule_counts_recomputation():
    events = ck.recompute_order(ck.Policy("segments", k=2), 4)
    assert [p for p, _ in events].count("recompute") == 4
    assert events[4:8] == [("recompute", 2), ("recompute", 3), ("backward", 3), ("backward", 2)]
    assert [p for p, _ in ck.recompute_order(ck.Policy("every_kth", k=2), 4)].count("recompute") == 2
    assert "recompute" not in [p for p, _ in ck.recompute_order("none", 3)]


def test_live_tensor_tracker_counts_allocations_and_frees():
    x = torch.randn(100, 100, requires_grad=True)
    with memory.track_live_tensors() as tracker:
        y = x.exp().sin().sum()  # exp's output is saved; sin's output is freed at once
        tracker.mark("forward end")
        y.backward()
    log = tracker.log
    assert log.bytes_at("forward end") == 40_000 + 4  # exp output + the scalar y
    assert log.peak_bytes() == 3 * 40_000 + 8  # during backward: exp out, cos, product, y, grad seed
    with pytest.raises(ValueError, match="mark must be one of"):
        log.bytes_at("nowhere")
    events = len(log.events)
    del y
    x.grad = None  # tensors made inside the region and freed after it: the log has ended
    assert len(log.events) == events
    net = nn.Linear(100, 100)
    with memory.track_live_tensors(net) as tracker:
        net(x).sum().backward()
    assert tracker.log.peak_bytes(include_grads=True) - tracker.log.peak_bytes() == memory.grad_bytes(net)
    with pytest.raises(TypeError, match="nn.Module"):
        memory.track_live_tensors("net")


def test_time_steps_interleaves_and_pairs_ratios():
    calls = []
    t = ck.time_steps({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4 and set(t.samples) == {"a", "b"} and len(t.samples["a"]) == 3
    fake = ck.Timings({"a": [1.0, 2.0, 10.0], "b": [1.5, 3.0, 14.0]})  # load drifts; the ratio does not
    assert fake.median("a") == 2.0 and fake.ratio("b", "a") == 1.5
    with pytest.raises(ValueError, match="name must be one of"):
        fake.ratio("c", "a")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_dropout_gradients_match(task):
    model = gpt(task, dropout=0.1).cuda()
    x, y = (t.cuda() for t in task.batch(B, T, torch.Generator().manual_seed(0)))
    plain, _, _ = grads_after(model, (x, y), "none")
    m, _, _ = grads_after(model, (x, y), "every")
    assert ck.max_grad_difference(plain, m) <= 1e-6
    assert math.isfinite(ck.measure_memory(model, x, y, "every").peak)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_selective_policies_korthikanti(dropout):
    """Korthikanti et al. §5: recomputing the attention core removes the a s^2 b term (same kept
    bytes at the same s*b whatever T) for two extra batched matmuls per block; gradients exact."""
    task = core.char_task()
    kept, grads = {}, {}
    for T, B in ((64, 8), (256, 2)):  # the same s * b
        torch.manual_seed(0)
        model = core.GPT(task.config(n_layer=2, n_embd=32, n_head=4, block_size=T, dropout=dropout))
        x, y = task.batch(B, T, torch.Generator().manual_seed(0))
        for keep in (None, *ck.SELECTIVE_KEEPS):
            policy = ck.Policy("none") if keep is None else ck.Policy("selective", keep=keep)
            m = ck.measure_memory(model, x, y, policy)
            kept[T, keep] = m.forward_end
            kept[T, keep, "matmuls"] = m.matmuls
            torch.manual_seed(3)
            ck.grad_step(model, x, y, policy)
            grads[T, keep] = [p.grad.clone() for p in model.parameters()]
        for keep in ck.SELECTIVE_KEEPS:
            assert all(torch.equal(a, b) for a, b in zip(grads[T, None], grads[T, keep], strict=True))
        assert kept[T, "korthikanti", "matmuls"] == kept[T, None, "matmuls"] + 2 * 2  # Q K^T and att @ v
        assert kept[T, "core", "matmuls"] == kept[T, None, "matmuls"] + 2  # early stop: att @ v not rerun
        assert kept[T, "linear"] < kept[T, "core"] < kept[T, "korthikanti"] < kept[T, None]
    assert abs(kept[256, "korthikanti"] / kept[64, "korthikanti"] - 1) < 0.01  # no T^2 term left
    assert abs(kept[256, "core"] / kept[64, "core"] - 1) < 0.01
    assert kept[256, None] > 1.8 * kept[64, None]  # plain: the T^2 term doubles it
    if dropout == 0:
        assert kept[256, "matmuls"] > 0.8 * kept[256, None]  # keeping the T x T scores saves little


def test_selective_keep_is_validated():
    with pytest.raises(ValueError, match="keep must be one of"):
        ck.Policy("selective", keep="everything")
    with pytest.raises(ValueError, match="takes no keep"):
        ck.Policy("every", keep="linear")
    assert ck.Policy("selective").keep == "korthikanti" and ck.Policy("selective").label == "selective(korthikanti)"
