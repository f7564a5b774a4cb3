import hashlib

import pytest
import torch

from helpers import core, training


@pytest.fixture(scope="module")
def task():
    return core.char_task()


def small(task, **kw):
    mc = task.config(n_layer=2, n_embd=32, block_size=16, dropout=0.1)
    return mc, training.TrainConfig(steps=12, batch_size=4, **kw)


@pytest.mark.parametrize("amp, ckpt", [(False, False), (True, True)])
def test_resume_gives_the_same_losses(task, tmp_path, amp, ckpt):
    mc, tc = small(task, amp=amp, checkpoint=ckpt)
    full = training.Trainer(mc, task, tc).run()
    first = training.Trainer(mc, task, tc)
    first.run(5)
    first.save(tmp_path / "ck.pt")
    torch.manual_seed(123)  # disturb global RNG: resuming must restore it
    second = training.Trainer(mc, task, tc)
    second.load(tmp_path / "ck.pt")
    assert second.step_count == 5
    rest = second.run()
    assert rest == full[5:]  # bit-identical, dropout included
    assert second.losses == full


def test_checkpointing_does_not_change_losses(task):
    mc, tc = small(task)
    _, tc_ck = small(task, checkpoint=True)
    torch.testing.assert_close(training.Trainer(mc, task, tc).run(), training.Trainer(mc, task, tc_ck).run())


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_corrupted_checkpoint_is_refused_and_left_alone(task, tmp_path):
    mc, tc = small(task)
    t = training.Trainer(mc, task, tc)
    t.run(2)
    path = t.save(tmp_path / "ck.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte inside the payload
    path.write_bytes(bytes(data))
    before = digest(path)
    fresh = training.Trainer(mc, task, tc)
    with pytest.raises(training.CheckpointError, match=r"ck\.pt.*corrupted"):
        fresh.load(path)
    assert digest(path) == before and fresh.step_count == 0


def test_truncated_and_foreign_files(task, tmp_path):
    mc, tc = small(task)
    t = training.Trainer(mc, task, tc)
    path = t.save(tmp_path / "ck.pt")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(training.CheckpointError, match="corrupted or not a checkpoint"):
        t.load(path)
    foreign = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, foreign)
    with pytest.raises(training.CheckpointError, match="not a course-checkpoint-v1"):
        t.load(foreign)
    with pytest.raises(training.CheckpointError, match="not found"):
        t.load(tmp_path / "missing.pt")


def test_mismatched_configuration_names_the_fields(task, tmp_path):
    mc, tc = small(task)
    path = training.Trainer(mc, task, tc).save(tmp_path / "ck.pt")
    other = training.Trainer(task.config(n_layer=3, n_embd=32, block_size=16, dropout=0.1), task, tc)
    with pytest.raises(ValueError, match=r"model\.n_layer: checkpoint 2 vs this run 3"):
        other.load(path)
    _, tc2 = small(task, lr=1e-3)
    with pytest.raises(ValueError, match=r"train\.lr"):
        training.Trainer(mc, task, tc2).load(path)


def test_save_is_atomic(task, tmp_path, monkeypatch):
    mc, tc = small(task)
    t = training.Trainer(mc, task, tc)
    path = t.save(tmp_path / "ck.pt")
    before = digest(path)
    t.run(1)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(training.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        t.save(path)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]  # no temporary left behind


@pytest.mark.parametrize("kwargs, match", [({"steps": 0}, "steps"), ({"lr": -1.0}, "lr"),
                                           ({"schedule": "zigzag"}, "schedule"), ({"clip": 0}, "clip")])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.TrainConfig(**kwargs)


def test_run_bounds(task):
    mc, tc = small(task)
    t = training.Trainer(mc, task, tc)
    with pytest.raises(ValueError, match="steps"):
        t.run(13)
