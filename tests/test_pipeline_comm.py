"""The message layer on real processes (gloo): shapes and dtypes learnt from the stages (bf16
activations of an odd shape cross ranks unchanged), every group created up front, and the
plan of every message."""

from __future__ import annotations

import pytest
import torch

from helpers.pipeline.comm import Mailbox, channel_list, exchange_meta, make_groups, message_plan
from helpers.pipeline.launch import spawn
from helpers.pipeline.schedules import make_schedule


def _stage(s: int, x: torch.Tensor) -> torch.Tensor:
    """A fake 2-stage model whose boundary carries bf16 of shape (rows, 3, 5)."""
    rows = x.shape[0]
    return torch.full((rows, 3, 5), float(s + 1), dtype=torch.bfloat16) if s == 0 else x.float().sum((1, 2))


def _rank(ctx, m: int):
    sched = make_schedule("1f1b", 2, m)
    groups = make_groups(ctx.world, 2, ctx.rank)
    tokens = torch.zeros(4, 7, dtype=torch.long)
    metas = exchange_meta(groups, sched, _stage, tokens, ctx.device, ctx.timeout)
    rows = [3, 2, 2][:m]
    box = Mailbox(groups, sched, rows, metas, ctx.device, ctx.timeout)
    got = []
    for a in sched.ranks[ctx.rank]:
        if a.kind == "F" and a.stage == 0:
            box.send("act", a.mb, 1, torch.full((rows[a.mb], 3, 5), a.mb + 0.5, dtype=torch.bfloat16))
        elif a.kind == "F":
            t = box.recv("act", a.mb, 1)
            got.append((t.dtype, tuple(t.shape), float(t.float().mean())))
        elif a.kind == "B" and a.stage == 1:
            box.send("grad", a.mb, 0, torch.full((rows[a.mb], 3, 5), -a.mb, dtype=torch.bfloat16))
        else:
            t = box.recv("grad", a.mb, 0)
            got.append((t.dtype, tuple(t.shape), float(t.float().mean())))
    box.flush()
    return {"metas": {s: (m.trailing, str(m.dtype)) for s, m in metas.items()}, "got": got,
            "count": box.count}


@pytest.mark.timeout(60)
def test_bf16_activations_of_any_shape_cross_stages():
    out = spawn(_rank, 2, (3,), timeout=20, deadline=50)
    assert out[1]["metas"][0] == ((3, 5), "torch.bfloat16")  # learnt from the stage, not assumed
    assert out[1]["got"] == [(torch.bfloat16, (r, 3, 5), mb + 0.5) for mb, r in enumerate([3, 2, 2])]
    assert out[0]["got"] == [(torch.bfloat16, (r, 3, 5), -mb) for mb, r in enumerate([3, 2, 2])]
    assert out[0]["count"] == {"sent": 3, "received": 3}


def test_channels_and_plan():
    assert channel_list(2) == [(0, 1, "act"), (1, 0, "act"), (0, 1, "grad"), (1, 0, "grad")]
    assert len(channel_list(4)) == 4 * 4  # 3 neighbour pairs + the wrap-around, 4 channels each
    plan, index = message_plan(make_schedule("zbv", 2, 2))
    # the V: activations go 0 -> 1 (chunk 0) and 1 -> 0 (chunk 1); stage 1 -> 2 stays on rank 1
    assert plan[(0, 1, "act")] == [(0, 1), (1, 1)] and plan[(1, 0, "act")] == [(0, 3), (1, 3)]
    assert ("act", 0, 2) not in index
