"""Point-to-point messages between pipeline ranks: one code path for gloo (CPU) and NCCL (GPU).

The rules that keep it from hanging on NCCL (pytorch #152220, NVIDIA/nccl #783), and how:

- **Every communicator exists before the first message, created in one fixed order.**
  :func:`make_groups` builds all process groups -- the channels, each replica's pipeline group
  and each stage's data-parallel group -- in the same loop on every rank, right after start-up.
  Under NCCL the launcher binds each rank's GPU (``init_process_group(device_id=...)``), which
  makes ``new_group`` connect its communicator eagerly, there and then, instead of lazily at
  the first message (when two ranks may touch two groups in opposite orders).
- **A communicator carries one direction of one kind of message** (a *channel*: activations
  ``r -> r'`` or gradients ``r -> r'``). So on each communicator one rank only sends and the
  other only receives, in the same order (:func:`message_plan` lists it from the schedule);
  NCCL's "both ranks send first, then receive" cycle cannot form on a communicator.
- **Operations go through ``batch_isend_irecv``**, as in torch.distributed.pipelining,
  picotron and Megatron-LM: the receives posted together on a channel are one group (one
  ``ncclGroupStart/End`` on NCCL). Its documented trap -- the first call on a group must
  involve all of the group's ranks -- does not arise, because the communicators already exist.
- **Receive buffers are sized and typed from what the sending stage produces**, learnt once per
  job by :func:`exchange_meta` (a 1-row dry forward through the pipeline; no fp32 assumption).

Gloo also needs none of the tags; they are kept because they make a mismatch fail loudly there.
**NCCL status: this path has never run on a GPU** (no GPU machine was available); the unit
tests run it on gloo only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from helpers.pipeline.schedules import BACKWARD, FORWARD, PipelineSchedule

Channel = tuple[int, int, str]  # (source pipeline rank, destination pipeline rank, "act" | "grad")
_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int64)
_HEADER = 10  # dtype code, ndim, up to 8 dimensions


@dataclass
class Groups:
    """The process groups of a ``pp x dp`` grid, seen from one rank.

    Global rank ``g`` is pipeline rank ``g % pp`` of replica ``g // pp``."""

    pp: int
    dp: int
    rank: int
    channels: dict[Channel, Any] = field(default_factory=dict)  # this replica's channels
    pipeline: Any = None  # this replica's pp ranks (the clipping norm, the loss)
    data: Any = None  # the ranks holding the same stages in every replica (gradient all-reduce)

    @property
    def pp_rank(self) -> int:
        return self.rank % self.pp

    @property
    def replica(self) -> int:
        return self.rank // self.pp

    def global_rank(self, pp_rank: int) -> int:
        return self.replica * self.pp + pp_rank


def channel_list(pp: int) -> list[Channel]:
    """Every channel between pipeline neighbours, both directions and both kinds, plus the
    ring's wrap-around (interleaved schedules send from the last rank back to rank 0)."""
    chans: list[Channel] = []
    pairs = [(r, r + 1) for r in range(pp - 1)] + ([(pp - 1, 0)] if pp > 2 else [])
    for a, b in pairs:
        for chan in ((a, b, "act"), (b, a, "act"), (a, b, "grad"), (b, a, "grad")):
            if chan not in chans:
                chans.append(chan)
    return chans


def make_groups(world: int, pp: int, rank: int) -> Groups:
    """All process groups of a ``pp x (world // pp)`` grid, created in one fixed order (every
    rank must call this, in the same place)."""
    if world % pp:
        raise ValueError(f"world size {world} is not a multiple of the pipeline size {pp}")
    dp = world // pp
    g = Groups(pp, dp, rank)
    if world == 1:
        return g
    for d in range(dp):
        for chan in channel_list(pp):
            group = dist.new_group(sorted({d * pp + chan[0], d * pp + chan[1]}))
            if d == g.replica:
                g.channels[chan] = group
    if dp == 1:
        g.pipeline = dist.group.WORLD
        return g
    for d in range(dp):
        group = dist.new_group([d * pp + r for r in range(pp)])
        if d == g.replica:
            g.pipeline = group
    for r in range(pp):
        group = dist.new_group([d * pp + r for d in range(dp)])
        if r == g.pp_rank:
            g.data = group
    return g


def message_plan(sched: PipelineSchedule) -> tuple[dict[Channel, list[tuple[int, int]]],
                                                   dict[tuple[str, int, int], tuple[Channel, int]]]:
    """Every message of one step, per channel in the order its sender sends them.

    Returns ``(channels, index)``: ``channels[c]`` lists (micro-batch, receiving stage);
    ``index[(kind, mb, stage)]`` gives the channel and sequence number of a message."""
    S = sched.n_stages
    chans: dict[Channel, list[tuple[int, int]]] = defaultdict(list)
    index: dict[tuple[str, int, int], tuple[Channel, int]] = {}
    for r, acts in enumerate(sched.ranks):
        for a in acts:
            if a.kind == FORWARD and a.stage < S - 1:
                kind, to = "act", a.stage + 1
            elif a.kind == BACKWARD and a.stage > 0:
                kind, to = "grad", a.stage - 1
            else:
                continue
            dst = sched.rank_of(to)
            if dst == r:
                continue  # stays on this rank
            chan = (r, dst, kind)
            index[(kind, a.mb, to)] = (chan, len(chans[chan]))
            chans[chan].append((a.mb, to))
    return dict(chans), index


@dataclass(frozen=True)
class Meta:
    """Shape without the batch dimension, and dtype, of a stage's output."""

    trailing: tuple[int, ...]
    dtype: torch.dtype


def _header(meta: Meta, device: torch.device) -> torch.Tensor:
    if len(meta.trailing) > _HEADER - 2 or meta.dtype not in _DTYPES:
        raise ValueError(f"cannot send a {meta.dtype} activation of trailing shape {meta.trailing}")
    h = [_DTYPES.index(meta.dtype), len(meta.trailing), *meta.trailing]
    return torch.tensor(h + [0] * (_HEADER - len(h)), dtype=torch.int64, device=device)


def _meta(header: torch.Tensor) -> Meta:
    h = header.tolist()
    return Meta(tuple(h[2 : 2 + h[1]]), _DTYPES[h[0]])


def _wait(work: Any, what: str, rank: int, timeout: float) -> None:
    try:
        ok = work.wait(timedelta(seconds=timeout))
    except RuntimeError as exc:
        raise RuntimeError(f"{what} (rank {rank}): {exc}") from exc
    if ok is False:
        raise RuntimeError(f"{what} within {timeout:.0f} s (rank {rank})")


def exchange_meta(groups: Groups, sched: PipelineSchedule, run_stage: Callable[[int, torch.Tensor], torch.Tensor],
                  first_input: torch.Tensor, device: torch.device, timeout: float) -> dict[int, Meta]:
    """Learn the output shape and dtype of every stage this rank sends from or receives from.

    Stages are visited in model order on every rank: the holder of stage ``s`` receives the
    header of stage ``s-1`` (if another rank holds it), runs ``run_stage(s, x)`` on a 1-row
    dummy input under ``torch.no_grad`` (the random streams are restored afterwards), and sends
    its output's header to the holder of ``s + 1``."""
    me, S = groups.pp_rank, sched.n_stages
    metas: dict[int, Meta] = {}
    sends = []
    for s in range(S):
        if sched.rank_of(s) != me:
            continue
        if s == 0:
            x = first_input[:1]
        else:
            src = sched.rank_of(s - 1)
            if src != me:
                buf = torch.empty(_HEADER, dtype=torch.int64, device=device)
                (work,) = dist.batch_isend_irecv([dist.P2POp(dist.irecv, buf, groups.global_rank(src),
                                                             groups.channels[(src, me, "act")])])
                _wait(work, f"no shape/dtype of stage {s - 1} from rank {src}", groups.rank, timeout)
                metas[s - 1] = _meta(buf)
            m = metas[s - 1]
            x = torch.zeros((1, *m.trailing), dtype=m.dtype, device=device)
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            out = run_stage(s, x)
        metas[s] = Meta(tuple(out.shape[1:]), out.dtype)
        if s < S - 1 and sched.rank_of(s + 1) != me:
            dst = sched.rank_of(s + 1)
            h = _header(metas[s], device)
            (work,) = dist.batch_isend_irecv([dist.P2POp(dist.isend, h, groups.global_rank(dst),
                                                         groups.channels[(me, dst, "act")])])
            sends.append((work, h))
    for work, _ in sends:
        _wait(work, "could not send a stage's shape/dtype", groups.rank, timeout)
    return metas


class Mailbox:
    """Sends and receives one step's activations and gradients for one rank.

    Receives are posted ``lookahead`` messages ahead of need (in each channel's order), so a
    message can flow as soon as it is sent. A buffer for micro-batch ``i`` of the output of
    stage ``s`` is ``(rows[i], *meta[s].trailing)`` of ``meta[s].dtype``. Sends are
    asynchronous; on gloo they never wait for the receiver, on NCCL a send completes when its
    receive is matched (on its own communicator, so compute is not blocked). :meth:`flush`
    waits for all of them."""

    def __init__(self, groups: Groups, sched: PipelineSchedule, rows: list[int], metas: dict[int, Meta],
                 device: torch.device, timeout: float, lookahead: int = 1) -> None:
        self.groups, self.rank, self.device, self.timeout = groups, groups.pp_rank, device, timeout
        self.plan, self.index = message_plan(sched)
        self.rows, self.metas, self.lookahead = rows, metas, lookahead
        self.local: dict[tuple[str, int, int], torch.Tensor] = {}
        self.posted: dict[Channel, int] = defaultdict(int)
        self.inbox: dict[tuple[Channel, int], tuple[Any, torch.Tensor]] = {}
        self.sends: list[tuple[Any, torch.Tensor, str]] = []
        self.count = {"sent": 0, "received": 0}
        for chan in self.plan:
            if chan[1] == self.rank:
                self._start(self._post(chan, lookahead - 1))

    def _buffer(self, kind: str, mb: int, stage: int) -> torch.Tensor:
        sender_stage = stage - 1 if kind == "act" else stage  # a gradient has its output's meta
        m = self.metas[sender_stage]
        return torch.empty((self.rows[mb], *m.trailing), dtype=m.dtype, device=self.device)

    def _post(self, chan: Channel, upto: int) -> list[tuple[tuple[Channel, int], Any, torch.Tensor]]:
        """Receives on ``chan`` up to sequence number ``upto``, in the sender's order (not yet
        started: see :meth:`_start`)."""
        plan, pending = self.plan[chan], []
        while self.posted[chan] <= min(upto, len(plan) - 1):
            k = self.posted[chan]
            mb, stage = plan[k]
            buf = self._buffer(chan[2], mb, stage)
            op = dist.P2POp(dist.irecv, buf, self.groups.global_rank(chan[0]), self.groups.channels[chan], k)
            pending.append(((chan, k), op, buf))
            self.posted[chan] += 1
        return pending

    def _start(self, pending: list[tuple[tuple[Channel, int], Any, torch.Tensor]]) -> None:
        """Start receives of one channel as one ``batch_isend_irecv`` group."""
        if pending:
            works = dist.batch_isend_irecv([op for _, op, _ in pending])
            for (key, _, buf), work in zip(pending, works, strict=True):
                self.inbox[key] = (work, buf)

    def send(self, kind: str, mb: int, to_stage: int, tensor: torch.Tensor) -> None:
        key = (kind, mb, to_stage)
        if key not in self.index:
            self.local[key] = tensor.detach()  # same rank: a fresh leaf, like a message
            return
        chan, seq = self.index[key]
        t = tensor.detach().contiguous()
        meta = self.metas[to_stage - 1 if kind == "act" else to_stage]
        shape = (self.rows[mb], *meta.trailing)
        if tuple(t.shape) != shape or t.dtype != meta.dtype:
            raise RuntimeError(f"rank {self.rank}: {kind} of micro-batch {mb} is {tuple(t.shape)} "
                               f"{t.dtype}, but the receiver expects {shape} {meta.dtype}")
        op = dist.P2POp(dist.isend, t, self.groups.global_rank(chan[1]), self.groups.channels[chan], seq)
        (work,) = dist.batch_isend_irecv([op])
        self.count["sent"] += 1
        self.sends.append((work, t, f"{kind} of micro-batch {mb} to rank {chan[1]}"))
        if len(self.sends) > 16:  # forget sends that have left
            self.sends = [s for s in self.sends if not s[0].is_completed()]

    def recv(self, kind: str, mb: int, stage: int) -> torch.Tensor:
        key = (kind, mb, stage)
        if key in self.local:
            return self.local.pop(key)
        chan, seq = self.index[key]
        self._start(self._post(chan, seq + self.lookahead))
        work, buf = self.inbox.pop((chan, seq))
        _wait(work, f"no {'activation' if kind == 'act' else 'gradient'} for micro-batch {mb} from "
                    f"rank {chan[0]}", self.groups.rank, self.timeout)
        self.count["received"] += 1
        return buf

    def flush(self) -> None:
        """Wait until every send of the step has left."""
        for work, _, what in self.sends:
            _wait(work, f"could not send {what}", self.groups.rank, self.timeout)
        self.sends = []
        if self.inbox:
            raise RuntimeError(f"rank {self.rank}: {len(self.inbox)} messages received but unused")
