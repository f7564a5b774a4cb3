"""Resuming a pipelined run: a rank killed mid-run, then the run resumed from the per-rank
shards, matches the uninterrupted run bit for bit (dropout's random streams included); corrupt
or mismatched shards are refused with the shard's name and change nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from helpers.pipeline import jobs
from helpers.pipeline.launch import PipelineError
from helpers.pipeline.schedules import Action
from helpers.training import CheckpointError


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.timeout(150)
@pytest.mark.parametrize("schedule", ["1f1b", "zbh1"])
def test_killed_rank_then_resume_is_bit_identical(tmp_path, schedule):
    base = jobs.make_job(schedule, 4, n_layer=2, steps=6, dropout=0.1, amp=True, clip=1.0,
                         return_state=True, record=False)
    uninterrupted = jobs.run(base, 2, timeout=20, deadline=60)[0]
    saving = jobs.with_(base, save_dir=str(tmp_path), save_every=1,
                        fault=jobs.Fault(rank=1, step=3, action=Action("B", 1, 1), mode="exit"))
    with pytest.raises(PipelineError, match="rank 1 died"):
        jobs.run(saving, 2, timeout=10, deadline=60)
    steps = sorted(p.name for p in tmp_path.glob("step-*"))
    assert steps[-1] == "step-000003" and (tmp_path / steps[-1] / "manifest.json").is_file()
    resumed = jobs.run(jobs.with_(base, save_dir=str(tmp_path), resume=True), 2, timeout=20, deadline=60)[0]
    assert len(resumed.step_times) == 6 - 3  # it really resumed: only the last 3 steps ran
    assert resumed.losses == uninterrupted.losses  # all 6: 3 restored from the shards, 3 trained
    for k, v in uninterrupted.params.items():
        assert torch.equal(resumed.params[k], v), k


@pytest.mark.timeout(120)
def test_corrupt_missing_or_mismatched_shards_are_refused(tmp_path):
    base = jobs.make_job("1f1b", 4, n_layer=2, steps=2, record=False, return_state=False)
    jobs.run(jobs.with_(base, save_dir=str(tmp_path), save_every=2), 2, timeout=20, deadline=60)
    shard = tmp_path / "step-000002" / "rank-1.pt"
    before = _digest(tmp_path)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    corrupted = _digest(tmp_path)
    with pytest.raises(PipelineError, match=r"shard of rank 1 \(rank-1.pt\) is corrupted"):
        jobs.run(jobs.with_(base, save_dir=str(tmp_path), resume=True), 2, timeout=20, deadline=60)
    assert _digest(tmp_path) == corrupted  # nothing written or changed
    other = jobs.with_(base, lr=1e-4, save_dir=str(tmp_path), resume=True)
    with pytest.raises(PipelineError, match="saved for a different run; differing fields: lr"):
        jobs.run(other, 2, timeout=20, deadline=60)
    shard.unlink()
    with pytest.raises(PipelineError, match=r"shard of rank 1 \(rank-1.pt\) is missing"):
        jobs.run(jobs.with_(base, save_dir=str(tmp_path), resume=True), 2, timeout=20, deadline=60)
    with pytest.raises(PipelineError, match="no complete pipeline checkpoint"):
        jobs.run(jobs.with_(base, save_dir=str(tmp_path / "empty"), resume=True), 2, timeout=20, deadline=60)
    assert set(before) >= {"step-000002/manifest.json", "step-000002/rank-0.pt"}
    assert issubclass(CheckpointError, RuntimeError)
