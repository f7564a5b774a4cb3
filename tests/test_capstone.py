"""Lesson 08 glue: same start and data as the Trainer, agreement of the combinations (one launch
of two processes), exact memory ledgers, the decision guide, and bad input."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from helpers import checkpointing, core, memory, training
from helpers.lessons import capstone
from helpers.pipeline import jobs


@pytest.fixture(scope="module")
def task():
    return core.char_task()


def tiny_spec(task, steps: int = 8, **train) -> capstone.RunSpec:
    return capstone.RunSpec(
        model=task.config(n_layer=2, n_embd=32, n_head=4, block_size=16),
        train=training.TrainConfig(steps=steps, batch_size=8, lr=6e-3, warmup=3, **train),
        stages=2, m=4)


class RecordingTask(core.CharTask):
    """The char task, remembering every batch it hands out."""

    def batch(self, batch_size, block_size, generator, split="train"):
        out = super().batch(batch_size, block_size, generator, split)
        self.seen.append(out)
        return out


def test_same_start_and_same_batches_as_the_trainer(task):
    spec = tiny_spec(task, steps=5)
    rec = RecordingTask(task.tokenizer, task.train, task.val)
    rec.seen = []
    trainer = training.Trainer(spec.model, rec, spec.train)
    start = capstone.initial_state(spec)
    for k, t in trainer.model.state_dict().items():
        assert torch.equal(t, start[k]), k
    trainer.run()
    data = capstone.batches(task, spec)
    assert len(data) == len(rec.seen) == 5
    for (x, y), (a, b) in zip(data, rec.seen, strict=True):
        assert torch.equal(x, a) and torch.equal(y, b)


def test_run_spec_rejects_bad_input(task):
    cfg, tc = task.config(n_layer=2, n_embd=32, block_size=16), training.TrainConfig(batch_size=8)
    with pytest.raises(ValueError, match=r"batch_size \(8\) must be divisible by m \(3\)"):
        capstone.RunSpec(cfg, tc, m=3)
    with pytest.raises(ValueError, match="stages=5 exceeds the model's 4 layers"):
        capstone.RunSpec(cfg, tc, stages=5)
    with pytest.raises(ValueError, match="dropout must be 0"):
        capstone.RunSpec(replace(cfg, dropout=0.1), tc)
    with pytest.raises(ValueError, match="m must be a positive int, got 0"):
        capstone.RunSpec(cfg, tc, m=0)
    with pytest.raises(TypeError, match="model must be a helpers.core.GPTConfig"):
        capstone.RunSpec({"n_layer": 2}, tc)
    with pytest.raises(ValueError, match="schedule"):
        capstone.RunSpec(cfg, tc, schedule="zigzag")
    with pytest.raises(ValueError, match=r"combination must be one of .*'fast'"):
        capstone.combination("fast")
    spec = tiny_spec(task)
    with pytest.raises(ValueError, match="pipelined: use train_pipeline"):
        capstone.train_single(task, spec, capstone.combination("all"))
    with pytest.raises(ValueError, match=r"steps must be in \[1, 8\], got 9"):
        capstone.train_single(task, spec, capstone.combination("plain"), steps=9)
    with pytest.raises(ValueError, match="single-process combinations only"):
        capstone.run_combinations(task, spec, steps={"pipeline": 3})


def test_single_process_combinations(task):
    spec = tiny_spec(task)
    plain = capstone.train_single(task, spec, capstone.combination("plain"))
    ckpt = capstone.train_single(task, spec, capstone.combination("checkpoint"))
    amp = capstone.train_single(task, spec, capstone.combination("amp"), steps=4)
    ctl = capstone.train_single(task, spec, capstone.combination("plain"), round_start_to=torch.bfloat16)
    # the Trainer itself gives the same losses
    assert plain.losses == training.Trainer(spec.model, task, spec.train).run()
    agree = capstone.loss_agreement({"plain": plain, "checkpoint": ckpt, "amp": amp, "control": ctl})
    assert agree["checkpoint"].max_abs == 0.0 and agree["plain"].max_abs == 0.0
    assert agree["amp"].steps == 4 and 0 < agree["amp"].max_abs < 0.05
    assert 0 < agree["control"].max_abs < 0.05 and "rounded to bfloat16" in ctl.combo.label
    assert len(plain.step_times) == 8 and plain.step_s > 0 and plain.tokens_per_s > 0
    final = plain.model(spec.model)
    assert core.val_loss(final, task, batches=1) == pytest.approx(
        core.val_loss(_trained(spec, task), task, batches=1))


def _trained(spec, task):
    t = training.Trainer(spec.model, task, spec.train)
    t.run()
    return t.model


def test_loss_agreement_and_batch_noise_on_known_curves():
    combo = capstone.combination("plain")

    def run(losses):
        return capstone.CurveRun(combo, list(losses), [0.1] * len(losses), 100)

    ref = [3.0, 2.0, 1.5, 1.0]
    agree = capstone.loss_agreement({"plain": run(ref), "b": run([3.0, 2.1, 1.4, 1.0]), "c": run([2.5])})
    assert agree["b"].max_abs == pytest.approx(0.1) and agree["b"].mean_abs == pytest.approx(0.05)
    assert agree["b"].final_abs == 0.0 and agree["c"].steps == 1 and agree["c"].max_abs == 0.5
    with pytest.raises(ValueError, match="reference must be one of"):
        capstone.loss_agreement({"b": run(ref)})
    with pytest.raises(ValueError, match="has 5 losses; need 1..4"):
        capstone.loss_agreement({"plain": run(ref), "long": run(ref + [0.5])})
    # a straight line plus alternating +-0.1: the scatter around a moving average is about 0.1
    line = [2.0 - 0.001 * t + (0.1 if t % 2 else -0.1) for t in range(200)]
    assert capstone.batch_noise(line, window=25) == pytest.approx(0.1, rel=0.05)
    with pytest.raises(ValueError, match="need at least 50 losses"):
        capstone.batch_noise(line[:40], window=25)


def test_ledgers_are_measured_live_peaks(task):
    spec = tiny_spec(task)
    names = ("plain", "amp", "accumulate", "checkpoint")
    leds = capstone.all_ledgers(task, spec, names)
    plain, amp, acc, ckpt = (leds[n][0] for n in names)
    model = core.GPT(spec.model)
    model.load_state_dict(capstone.initial_state(spec))
    x, y = capstone.batches(task, spec)[0]
    # parameters, gradients, AdamW state: helpers.memory's ledger of the whole model
    ref = memory.memory_ledger(model, lambda: model(x, y)[1],
                               torch.optim.AdamW(model.parameters(), weight_decay=0.0))
    for led in (plain, amp, acc, ckpt):
        assert (led.parameters, led.gradients, led.optimizer_state) == (ref.parameters, ref.gradients,
                                                                        ref.optimizer_state)
    assert ref.optimizer_state == 2 * ref.parameters + 4 * len(list(model.parameters()))  # moments + step
    # activations = the live peak, which lesson 04's measure_memory also finds, through its own
    # forward (same tracker, another code path)
    for led, policy in ((plain, "none"), (ckpt, core.block_policy(True))):
        assert led.activations == checkpointing.measure_memory(model, x, y, policy).peak
    # the peak holds more than what the forward saved: backward's own tensors (with
    # checkpointing: the recomputed block's inside, at least one plain block's saved bytes)
    saved = {n: capstone.saved_activation_peaks(spec, capstone.combination(n), x, y)[0] for n in names}
    assert all(leds[n][0].activations > saved[n] for n in names)
    one_block = (saved["plain"] - saved["checkpoint"]) / spec.model.n_layer
    assert ckpt.activations >= saved["checkpoint"] + one_block
    assert saved["plain"] == ref.activations  # the saved-tensor count agrees with helpers.memory's
    assert ckpt.activations < amp.activations < plain.activations and acc.activations < plain.activations
    # the step's highest point: params + Adam + the live peak with the gradients as they appear;
    # below the sum of the parts (not every gradient exists at the activations' peak)
    for led in (plain, amp, acc, ckpt):
        assert led.parameters + led.optimizer_state + led.activations < led.peak <= led.total
    rows = capstone.ledger_rows(leds, spec)
    assert [r["process"] for r in rows] == [0, 0, 0, 0]
    assert rows[0]["layers"] == "embed..head" and rows[3]["total MiB"] > 0
    with pytest.raises(ValueError, match=r"x and y must both be \(8, T\)"):
        capstone.stage_ledgers(spec, capstone.combination("plain"), x[:4], y[:4])
    with pytest.raises(ValueError, match="pass rank_peaks"):
        capstone.stage_ledgers(spec, capstone.combination("pipeline"), x, y)


def _ledgers(**needs):
    """One-ledger-per-process dicts with given totals (all in activations), in bytes."""
    return {n: [memory.Ledger(0, 0, 0, b) for b in v] for n, v in needs.items()}


def test_recommend_follows_memory_then_time():
    leds = _ledgers(plain=[100], amp=[70], checkpoint=[30], pipeline=[30, 25], all=[14, 13])
    rec = capstone.recommend(leds, 150, 1, fast_low_precision=True)
    assert (rec.choice, rec.bound) == ("amp", "compute") and "bf16 units" in rec.reason
    assert capstone.recommend(leds, 150, 1, fast_low_precision=False).choice == "plain"
    assert "data parallelism" in capstone.recommend(leds, 150, 4, fast_low_precision=False).reason
    assert capstone.recommend(leds, 80, 1, True).choice == "amp"
    assert capstone.recommend(leds, 80, 1, False).choice == "checkpoint"
    assert capstone.recommend(leds, 40, 2, True).choice == "checkpoint"  # one device before two
    nothing = capstone.recommend(leds, 20, 1, True)
    assert nothing.choice is None and nothing.label == "none fits" and nothing.bound == "memory"
    assert "all three, needs 0.00 MiB per device on 2 device(s)" in nothing.reason
    assert capstone.recommend(leds, 20, 2, True).choice == "all"
    assert capstone.recommend(_ledgers(plain=[100], pipeline=[30, 25]), 40, 2, True).choice == "pipeline"
    with pytest.raises(ValueError, match="must include 'plain'"):
        capstone.recommend(_ledgers(amp=[1]), 10, 1, True)
    with pytest.raises(ValueError, match="device_bytes must be a positive number, got -1"):
        capstone.recommend(leds, -1, 1, True)
    with pytest.raises(ValueError, match="devices must be a positive int, got 0"):
        capstone.recommend(leds, 10, 0, True)
    # gradient accumulation: before checkpointing (no recompute), after plain and AMP; stacked
    # set-ups on one device before a pipeline on two
    acc = _ledgers(plain=[100], amp=[70], accumulate=[50], checkpoint=[30], pipeline=[30, 25], all=[14, 13])
    stacked = {**acc, **_ledgers(**{"accumulate+checkpoint": [20]})}
    assert capstone.recommend(stacked, 25, 2, True).choice == "accumulate+checkpoint"
    assert capstone.recommend(acc, 60, 1, False).choice == "accumulate"
    assert capstone.recommend(acc, 60, 1, True).choice == "accumulate"
    assert capstone.recommend(acc, 80, 1, True).choice == "amp"
    assert "ZeRO / FSDP" in capstone.recommend(acc, 28, 2, True).reason  # a pipeline chosen
    assert "ZeRO / FSDP" in capstone.recommend(acc, 10, 2, True).reason  # nothing fits


def test_sample_words_progress_and_no_notebook_side_effects(task, capsys):
    model = core.GPT(task.config(n_layer=1, n_embd=16, block_size=16))
    a, b = capstone.sample(model, task, length=20), capstone.sample(model, task, length=20)
    assert a == b and a.startswith("the ") and len(a) == 24
    assert capstone.real_word_share("the dog sees a qzx tre", "the dog sees a tree") == 0.8
    assert capstone.real_word_share("", "the") == 0.0
    with capstone.progress_bar(3, "x", enabled=False) as bar:
        bar.update(1)
        bar.set_postfix(loss="1.0")
    with capstone.progress_bar(2, "y") as bar:
        bar.update(2)
    capstone.clear_cell_output()  # outside a notebook: nothing happens
    assert capsys.readouterr().out == ""


@pytest.mark.timeout(240)
def test_pipelined_combinations_agree_with_plain_and_catch_bugs(task):
    """One launch of two processes: the fp32 pipeline and all-three runs against the Trainer,
    the ranks' activation peaks against stage_ledgers, and two deliberately broken pipelines
    (no learning-rate schedule; the batches in another order) that the comparison must flag."""
    spec = tiny_spec(task, steps=12, clip=0.2)  # a small clip so that clipping matters
    good = [capstone.pipeline_job(task, spec, capstone.combination(n)) for n in ("pipeline", "all")]
    mem = [capstone.pipeline_job(task, spec, capstone.combination(n), measure_memory=True, steps=2)
           for n in ("pipeline", "all")]
    broken = [replace(good[0], lr_schedule=None, name="no schedule"),
              replace(good[0], batches=good[0].batches[::-1], name="batches reordered")]
    runs = jobs.run(good + mem + broken, 2, timeout=60, deadline=220)
    plain = capstone.train_single(task, spec, capstone.combination("plain"))
    curves = {"plain": plain}
    for name, run in zip(("pipeline", "all", "no schedule", "batches reordered"), runs[:2] + runs[4:],
                         strict=True):
        curves[name] = capstone.CurveRun(capstone.combination("pipeline"), run.losses, run.step_times, 128)
    agree = capstone.loss_agreement(curves)
    assert agree["pipeline"].max_abs <= 1e-5
    assert 0 < agree["all"].max_abs <= 0.05
    for name in ("no schedule", "batches reordered"):
        assert agree[name].max_abs > 10 * agree["all"].max_abs, name
    peaks = {n: capstone.RankPeaks(r.act_peak, r.live_peak, r.live_peak_with_grads)
             for n, r in zip(("pipeline", "all"), runs[2:4], strict=True)}
    leds = capstone.all_ledgers(task, spec, ("pipeline", "all"), rank_peaks=peaks)
    x, y = capstone.batches(task, spec)[0]
    for name, run in zip(("pipeline", "all"), runs[2:4], strict=True):
        assert run.live_peak == [led.activations for led in leds[name]]  # the ranks' own measurement
        # saved activations at 1F1B's peak: p - r micro-batches on rank r, as counted in-process
        assert run.act_peak == capstone.saved_activation_peaks(spec, capstone.combination(name), x, y)
        assert all(live > saved for live, saved in zip(run.live_peak, run.act_peak, strict=True))
        assert all(g >= live for g, live in zip(run.live_peak_with_grads, run.live_peak, strict=True))
        assert [led.peak for led in leds[name]] == [led.parameters + led.optimizer_state + g
                                                     for led, g in zip(leds[name], run.live_peak_with_grads, strict=True)]
        assert sum(led.parameters for led in leds[name]) == sum(p.numel() * 4 for p in core.GPT(spec.model).parameters())
    final = plain.params
    for k, v in runs[0].params.items():
        assert torch.allclose(v, final[k], atol=1e-4), k


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_step_peaks_needs_cuda(task):
    with pytest.raises(ValueError, match="cuda_step_peaks needs CUDA"):
        capstone.cuda_step_peaks(task, tiny_spec(task))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_step_peaks_on_gpu(task):
    peaks = capstone.cuda_step_peaks(task, tiny_spec(task))
    assert set(peaks) == {"plain", "amp", "checkpoint"}
    assert peaks["checkpoint"] < peaks["plain"]
