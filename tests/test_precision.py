import math

import pytest
import torch
import torch.nn as nn

from helpers import core
from helpers import precision as P


# ----------------------------------------------------------------------------- formats
def test_format_info_matches_ieee_values():
    f16 = P.format_info(torch.float16)
    assert (f16.bits, f16.exponent_bits, f16.mantissa_bits) == (16, 5, 10)
    assert f16.max == 65504.0
    assert f16.smallest_normal == 2.0**-14 and f16.smallest_subnormal == 2.0**-24
    assert f16.eps == 2.0**-10 and f16.has_inf
    bf16 = P.format_info(torch.bfloat16)
    assert (bf16.exponent_bits, bf16.mantissa_bits) == (8, 7)
    assert bf16.smallest_normal == 2.0**-126 and bf16.smallest_subnormal == 2.0**-133
    assert bf16.eps == 2.0**-7
    f32 = P.format_info(torch.float32)
    assert (f32.exponent_bits, f32.mantissa_bits) == (8, 23)
    assert f32.smallest_subnormal == 2.0**-149 and f32.eps == 2.0**-23
    for f in (f16, bf16, f32):
        assert f.finfo_agrees


@pytest.mark.skipif(not hasattr(torch, "float8_e4m3fn"), reason="no float8 in this torch")
def test_float8_formats():
    e4m3 = P.format_info(torch.float8_e4m3fn)
    assert (e4m3.exponent_bits, e4m3.mantissa_bits, e4m3.max) == (4, 3, 448.0)
    assert e4m3.smallest_subnormal == 2.0**-9 and not e4m3.has_inf
    e5m2 = P.format_info(torch.float8_e5m2)
    assert (e5m2.exponent_bits, e5m2.mantissa_bits, e5m2.max) == (5, 2, 57344.0)
    assert e5m2.smallest_subnormal == 2.0**-16 and e5m2.has_inf
    if hasattr(torch, "float8_e8m0fnu"):  # an exponent-only scale format: no subnormals
        e8m0 = P.format_info(torch.float8_e8m0fnu)
        assert (e8m0.exponent_bits, e8m0.mantissa_bits, e8m0.smallest_subnormal) == (8, 0, None)


def test_format_table_has_every_format():
    table = P.format_table()
    assert list(table["format"][:3]) == ["float32", "float16", "bfloat16"]
    assert len(table) == len(P.float_formats())


def test_representable_values_and_ulp():
    vals = P.representable_values(torch.float16)
    assert len(vals) == 1 + 1023 + 30 * 1024  # zero, subnormals, 30 binades of normals
    assert vals[0] == 0 and vals[-1] == 65504
    assert P.ulp(1.0, torch.float16) == 2.0**-10
    assert P.ulp(1.0, torch.bfloat16) == 2.0**-7
    assert P.ulp(1.0, torch.float32) == 2.0**-23
    assert P.ulp(1024.0, torch.float16) == 1.0
    assert P.ulp(0.0, torch.float16) == 2.0**-24


def test_spacing_curve_relative_gap_is_bounded_by_eps():
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        x, gap = P.spacing_curve(dt)
        info = P.format_info(dt)
        normal = x >= info.smallest_normal
        rel = gap[normal] / x[normal]
        assert float(rel.max()) <= info.eps and float(rel.min()) >= info.eps / 2 * 0.999
        assert torch.all(gap[~normal] == info.smallest_subnormal)


def test_small_updates_vanish_without_fp32_master_weights():
    delta = 1e-4  # below half an ulp of 1.0 in both half formats
    assert P.repeated_add(1.0, delta, 100, torch.bfloat16) == 1.0
    assert P.repeated_add(1.0, delta, 100, torch.float16) == 1.0
    assert P.repeated_add(1.0, delta, 100, torch.float32) == pytest.approx(1.01, rel=1e-5)
    half_ulp = P.ulp(1.0, torch.float16) / 2
    assert P.repeated_add(1.0, half_ulp, 1, torch.float16) == 1.0  # a tie rounds to even: 1.0
    assert P.repeated_add(1.0, half_ulp * 1.01, 1, torch.float16) == 1.0 + 2 * half_ulp


@pytest.mark.parametrize("bad, exc", [(torch.int32, TypeError), ("float16", TypeError)])
def test_format_functions_reject_non_float_dtypes(bad, exc):
    with pytest.raises(exc, match="floating-point torch.dtype"):
        P.format_info(bad)


def test_representable_values_refuses_wide_formats():
    with pytest.raises(ValueError, match="at most 16 bits"):
        P.representable_values(torch.float32)


# ----------------------------------------------------------------------------- names, devices
def test_resolve_dtype_names_and_errors():
    assert P.resolve_dtype("bf16") is torch.bfloat16
    assert P.resolve_dtype("Half") is torch.float16
    assert P.resolve_dtype(torch.float32) is torch.float32
    with pytest.raises(ValueError, match="unknown dtype name 'fp8'.*allowed"):
        P.resolve_dtype("fp8")
    with pytest.raises(ValueError, match="not a training dtype"):
        P.resolve_dtype(torch.float64)
    with pytest.raises(TypeError, match="str or torch.dtype"):
        P.resolve_dtype(16)


def test_cpu_choice_is_bf16_without_scaler():
    amp = P.choose_amp("cpu")
    assert (amp.precision, amp.dtype, amp.use_scaler, amp.autocast_dtype) == ("bf16", torch.bfloat16, False,
                                                                             torch.bfloat16)
    fp16 = P.choose_amp("cpu", "fp16")
    assert fp16.use_scaler and fp16.autocast_dtype is torch.float16
    pure = P.choose_amp("cpu", "pure-bf16")
    assert pure.pure and pure.autocast_dtype is None and not pure.use_scaler
    assert P.choose_amp("cpu", "fp32").autocast_dtype is None


@pytest.mark.parametrize("bf16_ok, expected, scaler", [(True, "bf16", False), (False, "fp16", True)])
def test_cuda_choice_depends_on_bf16_support(monkeypatch, bf16_ok, expected, scaler):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(P.amp, "autocast_supported", lambda device, dtype: dtype != torch.bfloat16 or bf16_ok)
    amp = P.choose_amp("cuda")
    assert (amp.precision, amp.use_scaler, amp.device) == (expected, scaler, "cuda")
    assert P.choose_amp("cuda", "tf32").tf32


def test_bad_precision_and_device_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown precision 'fp8'; allowed: auto, fp32"):
        P.choose_amp("cpu", "fp8")
    with pytest.raises(ValueError, match="device must be one of"):
        P.choose_amp("tpu")
    with pytest.raises(ValueError, match="tf32.*CUDA"):
        P.choose_amp("cpu", "tf32")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="cuda.*is_available"):
        P.choose_amp("cuda", "fp16")


def test_fp16_on_a_build_without_support_is_refused(monkeypatch):
    monkeypatch.setattr(P.amp, "autocast_supported", lambda device, dtype: dtype != torch.float16)
    with pytest.raises(ValueError, match="precision='fp16'.*float16 is not supported on device='cpu'"):
        P.choose_amp("cpu", "fp16")


def test_autocast_probe_detects_silent_fallback():
    assert P.autocast_supported("cpu", torch.bfloat16)
    # CPU autocast does not support float64: torch warns and falls back; the probe says no
    assert not P.autocast_supported("cpu", torch.float64)


def test_tf32_context_restores_setting():
    before = torch.backends.cuda.matmul.fp32_precision
    with P.tf32_matmuls():
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cuda.matmul.fp32_precision == before


# ----------------------------------------------------------------------------- loss scaler
@pytest.mark.parametrize("kwargs, match", [
    ({"init_scale": 0.0}, "init_scale"), ({"init_scale": -1.0}, "init_scale"),
    ({"init_scale": math.inf}, "init_scale"), ({"init_scale": math.nan}, "init_scale"),
    ({"init_scale": True}, "init_scale"), ({"growth_factor": 1.0}, "growth_factor"),
    ({"backoff_factor": 1.0}, "backoff_factor"), ({"backoff_factor": 0.0}, "backoff_factor"),
    ({"growth_interval": 0}, "growth_interval"), ({"growth_interval": 2.5}, "growth_interval"),
])
def test_scaler_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        P.LossScaler(**kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        P.make_scaler("torch", "cpu", **kwargs)  # validated before reaching GradScaler


def test_make_scaler_kinds():
    assert isinstance(P.make_scaler("course"), P.LossScaler)
    assert isinstance(P.make_scaler("torch", "cpu"), torch.amp.GradScaler)
    with pytest.raises(ValueError, match="'course' or 'torch'"):
        P.make_scaler("apex")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 1))


def _scaled_run(kind: str, precision: str, steps: int, inject: set[int], **scaler_kwargs):
    model = _mlp()
    amp = P.choose_amp("cpu", precision)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = P.make_scaler(kind, "cpu", **scaler_kwargs)
    g = torch.Generator().manual_seed(1)
    out = []
    for step in range(steps):
        x = torch.randn(16, 8, generator=g)
        y = x[:, :1] * 2 - x[:, 1:2]

        def poison(step=step):
            if step in inject:
                model[2].weight.grad[0, 0] = math.inf
        stats = P.amp_step(model, opt, lambda x=x, y=y: ((model(x) - y) ** 2).mean(), amp, scaler,
                           max_grad_norm=1.0, after_backward=poison)
        out.append((stats.scale, stats.skipped, scaler.get_scale()))
    return out, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("precision, kwargs", [
    # fp16 autocast from a huge scale: real overflows back the scale off, then it grows
    ("fp16", {"init_scale": 2.0**28, "growth_interval": 3}),
    # fp32 with non-power-of-two factors: the scale must be rounded to fp32 like torch's
    ("fp32", {"init_scale": 1000.0, "growth_factor": 1.7, "backoff_factor": 0.37, "growth_interval": 2}),
])
def test_scaler_matches_grad_scaler_step_by_step(precision, kwargs):
    steps, inject = 24, {15, 16}  # injected overflows after the scale has settled
    ours, p_ours = _scaled_run("course", precision, steps, inject, **kwargs)
    theirs, p_theirs = _scaled_run("torch", precision, steps, inject, **kwargs)
    assert ours == theirs  # scale used, skipped?, scale after update: at every step
    for a, b in zip(p_ours, p_theirs, strict=True):
        assert torch.equal(a, b)  # bit-identical weights
    skipped = [s for _, s, _ in ours]
    assert skipped[15] and skipped[16]
    assert any(skipped[:15]) == (precision == "fp16")  # natural overflows only in fp16
    assert not all(skipped)
    scales = [s for s, _, _ in ours]
    assert any(b > a for a, b in zip(scales, scales[1:], strict=False))  # it grew at least once


def test_scaler_never_grows_past_fp32_range():
    ours, _ = _scaled_run("course", "fp32", 3, set(), init_scale=2.0**127, growth_interval=1)
    theirs, _ = _scaled_run("torch", "fp32", 3, set(), init_scale=2.0**127, growth_interval=1)
    assert ours == theirs and all(s == 2.0**127 for s, _, _ in ours)


def test_scaler_call_order_errors():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    s = P.LossScaler()
    with pytest.raises(RuntimeError, match="update"):
        s.update()
    s.scale(model(torch.randn(2, 8)).sum()).backward()
    s.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt)
    assert s.step(opt)
    with pytest.raises(RuntimeError, match="step"):
        s.step(opt)
    event = s.update()
    assert event is not None and not event.skipped and s.history == [event]
    with pytest.raises(TypeError, match="tensor"):
        s.scale(1.0)


def test_scaler_refuses_fp16_gradients():
    model = _mlp().half()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    s = P.LossScaler()
    s.scale(model(torch.randn(2, 8, dtype=torch.float16)).float().sum()).backward()
    with pytest.raises(TypeError, match="fp32 master weights"):
        s.unscale_(opt)


def test_disabled_scaler_is_a_pass_through():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    s = P.LossScaler(enabled=False)
    loss = model(torch.randn(2, 8)).sum()
    assert s.scale(loss) is loss and s.get_scale() == 1.0
    loss.backward()
    assert s.step(opt) and s.update() is None


def test_scaler_state_dict_round_trip():
    a = P.LossScaler(init_scale=1024.0, growth_interval=7)
    b = P.LossScaler()
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()


# ----------------------------------------------------------------------------- AMP step
def test_clipping_sees_unscaled_gradients():
    """Same step with and without a scaler (powers of two are exact): same norm, same weights."""
    results = []
    for scaler in (None, P.LossScaler(init_scale=2.0**12)):
        model = _mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
        stats = P.amp_step(model, opt, lambda x=x, model=model: model(x).pow(2).mean(), P.choose_amp("cpu", "fp32"),
                           scaler, max_grad_norm=0.01)
        results.append((stats.grad_norm, [p.detach().clone() for p in model.parameters()]))
    (n0, w0), (n1, w1) = results
    assert n0 == n1 and n0 > 0.01  # clipping was active
    assert all(torch.equal(a, b) for a, b in zip(w0, w1, strict=True))


def test_amp_step_keeps_fp32_master_weights():
    model = _mlp()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stats = P.amp_step(model, opt, lambda: model(torch.randn(4, 8)).pow(2).mean(), P.choose_amp("cpu", "bf16"))
    assert not stats.skipped and stats.scale is None
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_amp_step_errors():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="needs a loss scaler"):
        P.amp_step(model, opt, lambda: model(torch.randn(2, 8)).sum(), P.choose_amp("cpu", "fp16"))
    with pytest.raises(ValueError, match="max_grad_norm"):
        P.amp_step(model, opt, lambda: model(torch.randn(2, 8)).sum(), P.choose_amp("cpu"), max_grad_norm=0)
    with pytest.raises(TypeError, match="scalar"):
        P.amp_step(model, opt, lambda: model(torch.randn(2, 8)), P.choose_amp("cpu"))
    low = _mlp().to(torch.bfloat16)
    opt_low = torch.optim.SGD(low.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="fp32 master weights.*bfloat16"):
        P.amp_step(low, opt_low, lambda: low(torch.randn(2, 8, dtype=torch.bfloat16)).sum(),
                   P.choose_amp("cpu", "bf16"))


@pytest.fixture(scope="module")
def task():
    return core.char_task()


def test_train_gpt_precisions_agree_early_and_pure_is_low_precision(task):
    cfg = task.config(n_layer=1, n_embd=32, block_size=16)
    fp32 = P.train_gpt(task, cfg, "fp32", steps=8, batch_size=8)
    bf16 = P.train_gpt(task, cfg, "bf16", steps=8, batch_size=8)
    pure = P.train_gpt(task, cfg, "pure-bf16", steps=8, batch_size=8)
    assert len(fp32.losses) == 8 and not any(fp32.skipped) and fp32.scales == [None] * 8
    assert fp32.losses[-1] < fp32.losses[0]
    for run in (bf16, pure):
        assert max(abs(a - b) for a, b in zip(run.losses, fp32.losses, strict=True)) < 0.05
    assert math.isfinite(pure.val_loss)
    with pytest.raises(ValueError, match="steps"):
        P.train_gpt(task, cfg, "fp32", steps=0)


# ----------------------------------------------------------------------------- inspection tools
def test_autocast_ops_records_dtypes_per_op():
    lin, ln = nn.Linear(8, 8), nn.LayerNorm(8)
    net = nn.ModuleList([lin, ln])
    x, y = torch.randn(4, 8), torch.randn(4, 8)

    def forward():
        h = lin(x)  # autocast casts to bf16
        return nn.functional.mse_loss(h, y), ln(x), ln(h)  # fp32-listed / input dtype / input dtype

    recs = P.autocast_ops(forward, "cpu", torch.bfloat16, model=net)
    assert [r.output_dtype for r in recs if r.op == "addmm"] == ["bfloat16"]
    assert [r.output_dtype for r in recs if r.op == "mse_loss"] == ["float32"]
    assert [r.output_dtype for r in recs if r.op == "native_layer_norm"] == ["float32", "bfloat16"]
    assert sum(r.casts_parameter for r in recs) == 2  # the Linear's weight and bias
    plain = P.autocast_ops(forward, "cpu", None, model=net)
    assert {r.output_dtype for r in plain} == {"float32"}
    table = P.op_summary(recs)
    assert "addmm" in set(table["op"]) and "t" not in set(table["op"])
    assert table.loc[table["op"] == "_to_copy", "weight casts"].sum() == 2


def test_gradient_underflow_and_its_fix():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    x = torch.randn(3, 4)
    loss_fn = lambda: net(x).float().sum() * 2.0**-26  # output gradient 2^-26 < fp16's 2^-24  # noqa: E731
    ref = P.gradient_probe(net, loss_fn)
    plain = P.gradient_probe(net, loss_fn, dtype=torch.float16)
    ours = P.gradient_probe(net, loss_fn, dtype=torch.float16, scaler=P.LossScaler())
    theirs = P.gradient_probe(net, loss_fn, dtype=torch.float16, scaler=torch.amp.GradScaler("cpu"))
    assert plain.activations["1"].dtype == torch.float16
    assert P.flushed_to_zero(plain, ref) > 0.5
    assert P.flushed_to_zero(ours, ref) == 0.0
    assert P.param_grad_error(plain, ref) > 0.5 > 0.01 > P.param_grad_error(ours, ref)
    for name in ours.params:
        assert torch.equal(ours.params[name], theirs.params[name])


def test_saved_breakdown_counts_autocast_weight_copies():
    net = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    x = torch.randn(512, 64)
    fp32 = P.saved_breakdown(net, lambda: net(x).sum())
    low = P.saved_breakdown(net, lambda: net(x).sum(), dtype=torch.bfloat16)
    assert fp32.weight_copies == 0 and fp32.total == 2 * 512 * 64 * 4
    # layer 2 needs its bf16 weight for the input gradient; layer 1's input needs none
    assert low.weight_copies == 64 * 64 * 2
    assert low.activations_only == fp32.total // 2


def test_timing_functions_run_on_cpu(task):
    t = P.matmul_times(n=32, dtypes=("fp32", "bf16"), repeats=2, number=2)
    assert set(t) == {"fp32", "bf16"} and all(v > 0 for v in t.values())
    cfg = task.config(n_layer=1, n_embd=16, block_size=8)
    rows = P.step_times(task, cfg, ("fp32", "bf16"), batch_size=2, repeats=1, steps=1)
    assert [r.precision for r in rows] == ["fp32", "bf16"]
    assert rows[0].ratio == 1.0 and all(r.peak_mib is None and r.ms_per_step > 0 for r in rows)
    with pytest.raises(ValueError, match="n must be"):
        P.matmul_times(n=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_step_times_on_cuda_reports_peak_memory(task):
    cfg = task.config(n_layer=1, n_embd=32, block_size=16)
    rows = P.step_times(task, cfg, ("fp32", "tf32", "bf16", "fp16"), device="cuda", batch_size=4,
                        repeats=1, steps=1)
    assert all(r.peak_mib is not None and r.peak_mib > 0 for r in rows)


def test_spacing_picture_has_two_panels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = P.plot_spacing()
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == len(fig.axes[0].get_legend().get_texts())
    plt.close(fig)
