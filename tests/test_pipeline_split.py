"""Splitting the course GPT into stages."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from helpers import core, memory
from helpers.pipeline import split


@pytest.fixture(scope="module")
def task():
    return core.char_task()


@pytest.fixture
def model(task):
    torch.manual_seed(0)
    return core.GPT(task.config(n_layer=4, n_embd=32, block_size=16))


def brute_force(costs, n):
    best = None
    for cuts in itertools.combinations(range(1, len(costs)), n - 1):
        edges = (0, *cuts, len(costs))
        worst = max(sum(costs[a:b]) for a, b in itertools.pairwise(edges))
        best = worst if best is None else min(best, worst)
    return best


def test_partition_is_optimal_and_contiguous():
    rng = random.Random(0)
    for _ in range(60):
        L = rng.randint(1, 8)
        costs = [rng.randint(0, 9) for _ in range(L)]
        n = rng.randint(1, L)
        bounds = split.partition(costs, n)
        assert bounds[0][0] == 0 and bounds[-1][1] == L and len(bounds) == n
        assert all(a < b for a, b in bounds)
        assert all(b == c for (_, b), (c, _) in itertools.pairwise(bounds))
        assert max(sum(costs[a:b]) for a, b in bounds) == brute_force(costs, n)


def test_stages_compose_to_the_model(model, task):
    x, _ = task.batch(3, 16, torch.Generator().manual_seed(0))
    for n in (1, 2, 3, 6):
        plan = split.plan_stages(model, n)
        assert sum(s.params for s in plan) == model.num_params()
        assert sum(s.param_bytes for s in plan) == memory.param_bytes(model)
        h = x
        for stage in split.stage_modules(model, split.bounds_of(plan)):
            h = stage(h)
        assert torch.equal(h, model(x)[0])  # the same operations: bit for bit


def test_stage_modules_share_parameters(model):
    stages = split.stage_modules(model, [(0, 2), (2, 6)])
    names = split.param_names(model, stages[1])
    assert names["0.attn.qkv.weight"] == "blocks.1.attn.qkv.weight"
    assert names["3.out.weight"] == "head.out.weight"
    assert stages[0][0] is model.embed


def test_activation_bytes_add_up_to_the_whole_model(model, task):
    x, _ = task.batch(4, 16, torch.Generator().manual_seed(0))
    per_stage = split.stage_activation_bytes(model, [(0, 2), (2, 4), (4, 6)], x)
    whole = memory.saved_activation_bytes(model, lambda: model(x)[0])
    assert all(b > 0 for b in per_stage) and sum(per_stage) == whole


def test_time_balance_and_table(model, task):
    x, _ = task.batch(4, 16, torch.Generator().manual_seed(0))
    costs = split.layer_costs(model, "time", x, repeats=2)
    assert len(costs) == 6 and all(c > 0 for c in costs)
    plan = split.plan_stages(model, 2, balance="time", sample=x)
    assert [s.layer_names[0] for s in plan][0] == "embed" and plan[-1].layer_names[-1] == "head"
    rows = split.stage_table(plan, [1024, 2048])
    assert rows[1]["activations/micro-batch MiB"] == round(2048 / 2**20, 3)
    assert rows[0]["params+grads+Adam MiB"] == round(4 * plan[0].param_bytes / 2**20, 3)


@pytest.mark.parametrize("call, err, match", [
    (lambda m: split.partition([1, 2, 3], 4), ValueError, "more stages than layers"),
    (lambda m: split.partition([1, 2, 3], 0), ValueError, ">= 1"),
    (lambda m: split.partition([1, 2, 3], 1.5), TypeError, "must be an int"),
    (lambda m: split.partition([1, -2, 3], 2), ValueError, ">= 0"),
    (lambda m: split.plan_stages(m, 7), ValueError, "cannot split 6 layers into 7 stages"),
    (lambda m: split.plan_stages(m, 2, balance="flops"), ValueError, "balance must be one of"),
    (lambda m: split.plan_stages(m, 2, balance="time"), ValueError, "needs a sample"),
    (lambda m: split.plan_stages(m, 2, balance=[1.0, 2.0]), ValueError, "one cost per layer"),
    (lambda m: split.stage_modules(m, [(0, 2), (3, 6)]), ValueError, "contiguous"),
    (lambda m: split.stage_modules(m, [(0, 2), (2, 5)]), ValueError, "do not cover"),
])
def test_bad_input(model, call, err, match):
    with pytest.raises(err, match=match):
        call(model)
