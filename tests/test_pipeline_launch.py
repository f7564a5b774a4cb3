"""Launchers and faults: a failing rank stops everyone in bounded time with an error naming the
rank and the action, and no process is left behind; the torchrun entry point works on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.pipeline import calibrate, jobs, measure
from helpers.pipeline.launch import PipelineError, spawn
from helpers.pipeline.schedules import Action

ROOT = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def run_with_fault(fault: jobs.Fault, executor: str = "course", timeout: float = 5.0):
    job = jobs.make_job("1f1b", 4, n_layer=2, steps=2, executor=executor, fault=fault)
    t = time.monotonic()
    with pytest.raises(PipelineError) as info:
        jobs.run(job, 2, timeout=timeout, deadline=60)
    elapsed = time.monotonic() - t
    assert not any(alive(pid) for pid in info.value.pids), "a rank outlived the failure"
    return info.value, elapsed


@pytest.mark.timeout(90)
def test_rank_raises():
    err, elapsed = run_with_fault(jobs.Fault(rank=1, step=1, action=Action("F", 2, 1)))
    first = str(err).splitlines()[0]
    assert err.rank == 1
    assert first.startswith("rank 1 failed during step 1, F(mb=2, stage=1) [forward]")
    assert "injected fault" in first
    assert elapsed < 45


@pytest.mark.timeout(90)
def test_rank_dies_without_a_word():
    err, elapsed = run_with_fault(jobs.Fault(rank=0, step=0, action=Action("B", 1, 0), mode="exit"))
    assert err.rank == 0
    assert str(err) == "rank 0 died (exit code 13) during step 0, B(mb=1, stage=0) [backward]"
    assert elapsed < 45


@pytest.mark.timeout(90)
def test_rank_hangs_others_time_out():
    err, elapsed = run_with_fault(jobs.Fault(rank=1, step=0, action=Action("B", 0, 1), mode="hang"),
                                  timeout=2.0)
    first = str(err).splitlines()[0]
    assert "no gradient for micro-batch 0 from rank 1" in first  # rank 0 names who it waits for
    assert "still running when stopped: rank 1 at step 0, B(mb=0, stage=1)" in first
    assert elapsed < 45


def _local_fn(ctx):  # pragma: no cover - never runs
    return ctx.rank


@pytest.mark.timeout(30)
def test_spawn_bad_input():
    with pytest.raises(ValueError, match="nprocs must be a positive int"):
        spawn(jobs.run_jobs_on_rank, 0)
    with pytest.raises(ValueError, match="threads must be a positive int"):
        spawn(jobs.run_jobs_on_rank, 2, threads=0)
    _local_fn.__module__ = "__main__"
    with pytest.raises(ValueError, match="importable module"):
        spawn(_local_fn, 2)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


@pytest.mark.timeout(150)
@pytest.mark.parametrize("nproc, extra, expect", [
    (2, ["--schedule", "1f1b", "-m", "4"], "2 ranks, gloo on cpu"),
    (2, ["--schedule", "zbh1", "-m", "4"], "zbh1 (course executor), 2 ranks"),
    (4, ["--schedule", "1f1b", "-m", "2", "--dp", "2"], "2 ranks x 2 replicas, gloo on cpu"),
])
def test_torchrun_cpu_gloo_with_check(nproc, extra, expect):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", str(nproc), "-m", "helpers.pipeline",
           *extra, "--n-layer", "2", "--steps", "2", "--check"]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=140)
    assert out.returncode == 0, out.stderr[-2000:]
    assert expect in out.stdout
    assert "-> equal" in out.stdout


@pytest.mark.timeout(120)
def test_module_entry_spawns_and_reports_fault_in_torch_executor():
    cmd = [sys.executable, "-m", "helpers.pipeline", "--nproc", "2", "--n-layer", "2",
           "--steps", "1", "--fail-rank", "1", "--timeout", "5", "--executor", "torch"]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=110)
    assert out.returncode != 0
    assert ("PipelineError: rank 1 failed during step 0, torch.distributed.pipelining "
            "Schedule1F1B.step: RuntimeError: injected fault") in out.stderr
    sim = subprocess.run([sys.executable, "-m", "helpers.pipeline", "--simulate", "--nproc", "4",
                          "-m", "8"], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=60)
    assert "1f1b p=4 m=8 (simulated): bubble 0.273 (formula 0.273)" in sim.stdout


@pytest.mark.timeout(120)
def test_timing_experiments_run():
    small = measure.speed_job(2, n_layer=2, n_embd=32, block_size=16, batch_size=8, steps=3)
    s = measure.measure_speedup(2, rounds=1, job=small, compare_torch=True)
    assert s.bound == pytest.approx(4 / 3) and s.single_s > 0 and s.pipeline_s > 0
    assert s.repeats == 2 and s.rounds == 1 and s.spread("pipeline")[0] <= s.pipeline_s <= s.spread("pipeline")[1]
    assert s.torch_s > 0 and "of the bound" in s.summary() and "ours / torch" in s.summary()
    assert s.share_of_bound == pytest.approx(s.single_1thread_s / s.pipeline_s / s.bound)


@pytest.mark.timeout(120)
def test_calibrated_simulator_predicts_the_measured_time():
    """Per-stage F/B/W costs and the message cost measured in a run, simulated: the makespan
    comes out close to the measured one (loosely here: the notebook and make bench hold it to
    15% on the timing model; a unit test on a shared machine cannot)."""
    base = measure.speed_job(4, n_layer=2, n_embd=64, block_size=32, batch_size=16, steps=4)
    runs = jobs.run([jobs.with_(base, schedule=s, n_chunks=v, record=True, name=s)
                     for s, v in (("1f1b", 1), ("zbh1", 1), ("zbv", 2))], 2, timeout=30, deadline=100)
    rows = calibrate.calibration_table(runs)
    assert [r["run"] for r in rows] == ["1f1b", "zbh1", "zbv"] and all(r["steps"] == 3 for r in rows)
    for run in runs:
        p = calibrate.predict(run)
        c = p.costs
        assert min(c.forward + c.backward) > 0 and c.comm >= 0 and (c.weight is None) == (run.job.schedule == "1f1b")
        assert abs(p.error) < 0.5, (run.job.schedule, p.error)


def test_progress_names_every_action_kind():
    from helpers.pipeline import launch

    assert launch._describe(0, "W", 1, 0) == "step 0, W(mb=1, stage=0) [weight gradient]"
    assert launch._describe(2, "F", 3, 1) == "step 2, F(mb=3, stage=1) [forward]"
    assert launch._describe(1, "optimizer step", -1, -1) == "step 1, optimizer step"
    assert launch._KINDS[{"F": 1, "B": 2, "W": 4}["W"]] == "W"
