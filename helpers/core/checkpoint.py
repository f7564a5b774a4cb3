"""Gradient checkpointing as a transformation of the model's layers (lesson 04's technique).

Backward needs tensors from the forward pass ("saved activations"). Checkpointing a segment of
the network keeps only the segment's *input* during forward, runs the segment without recording
anything, and in backward runs it again (with gradients on) to rebuild what backward needs:

    forward : x0 -[seg 1, no_grad]-> x1 -[seg 2, no_grad]-> x2 -> loss     keep x0, x1 only
    backward: recompute seg 2 from x1 -> backward through it -> grad of x1
              recompute seg 1 from x0 -> backward through it -> grad of x0

:func:`checkpoint` is that idea in one ``torch.autograd.Function`` (the "reentrant" design of
``torch.utils.checkpoint``), written from scratch because building it is lesson 04's point and
tested against torch's. It restores the random-number state so dropout draws the same masks in
the recomputation, and the autocast state so the recomputation runs in the same precision.

:func:`apply_checkpointing` is the transformation every training path uses (in the style of
torchtitan's ``apply_ac``): it turns a model's layers into the list of callables to run, with
the transformer blocks grouped and wrapped as a :class:`Policy` says: ``none``, ``every``
block, ``every_kth`` block, ``segments`` (k contiguous segments), ``sqrt`` (k = round(sqrt(n)),
Chen et al. 2016) and ``selective`` (torch's selective activation checkpointing; by default
Korthikanti et al. 2022's: recompute the attention core only). The model
itself is not modified and never knows it is checkpointed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils import checkpoint as torch_checkpoint

from helpers import validate
from helpers.core.model import GPT, Block

POLICIES = ("none", "every", "every_kth", "segments", "sqrt", "selective")
IMPLS = ("scratch", "torch")

Layer = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RNGState:
    """The CPU generator's state and, for every CUDA device the inputs live on, its state."""

    cpu: torch.Tensor
    cuda_devices: tuple[int, ...] = ()
    cuda: tuple[torch.Tensor, ...] = ()

    @classmethod
    def capture(cls, tensors: Sequence[torch.Tensor] = ()) -> RNGState:
        devices = tuple(sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"}))
        return cls(torch.get_rng_state(), devices, tuple(torch.cuda.get_rng_state(d) for d in devices))

    @contextmanager
    def restored(self) -> Iterator[None]:
        """Run the block with this RNG state; the global state is put back afterwards, so the
        recomputation neither sees different random numbers nor shifts later ones."""
        with torch.random.fork_rng(devices=list(self.cuda_devices)):
            torch.set_rng_state(self.cpu)
            for device, state in zip(self.cuda_devices, self.cuda, strict=True):
                torch.cuda.set_rng_state(state, device)
            yield


def _autocast_state() -> list[tuple[str, bool, torch.dtype]]:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [(d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in devices]


# --------------------------------------------------------------------------- checkpoint from scratch
_TENSOR = object()  # placeholder for tensor arguments in the saved argument template


class _Checkpoint(torch.autograd.Function):
    """Forward without saving internals; backward = recompute with grad, then backprop through it."""

    @staticmethod
    def forward(ctx: Any, run_fn: Callable[..., Any], preserve_rng_state: bool, *args: Any) -> Any:
        tensors = [a for a in args if torch.is_tensor(a)]
        ctx.run_fn = run_fn
        ctx.rng = RNGState.capture(tensors) if preserve_rng_state else None
        ctx.autocast = _autocast_state()
        ctx.template = [_TENSOR if torch.is_tensor(a) else a for a in args]
        ctx.save_for_backward(*tensors)  # the only activations this segment keeps
        with torch.no_grad():  # (already off inside Function.forward; explicit for the reader)
            return run_fn(*args)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = iter(ctx.saved_tensors)
        inputs = [  # fresh leaves cut from the forward graph, so backward stops at them
            next(saved).detach().requires_grad_(needs_grad) if a is _TENSOR else a
            for a, needs_grad in zip(ctx.template, ctx.needs_input_grad[2:], strict=True)
        ]
        with ExitStack() as stack:
            if ctx.rng is not None:
                stack.enter_context(ctx.rng.restored())
            for device, enabled, dtype in ctx.autocast:
                stack.enter_context(torch.autocast(device, dtype=dtype, enabled=enabled))
            with torch.enable_grad():
                outputs = ctx.run_fn(*inputs)  # recompute: this time autograd records the graph
        outputs = (outputs,) if torch.is_tensor(outputs) else tuple(outputs)
        pairs = [(o, g) for o, g in zip(outputs, grad_outputs, strict=True) if o.requires_grad and g is not None]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        grads = [x.grad if torch.is_tensor(x) and x.requires_grad else None for x in inputs]
        return (None, None, *grads)


def checkpoint(fn: Callable[..., torch.Tensor], *args: object, preserve_rng_state: bool = True) -> torch.Tensor:
    """Run ``fn(*args)`` keeping only its tensor inputs for backward; recompute in backward.

    Parameters used inside ``fn`` get their gradients during ``loss.backward()`` as usual.
    With ``preserve_rng_state=False`` the recomputation draws new random numbers (dropout masks
    differ from the forward's, so the gradients are wrong): kept as an option to show that.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    validate.boolean("preserve_rng_state", preserve_rng_state)
    if not torch.is_grad_enabled():
        return fn(*args)
    if not any(torch.is_tensor(a) and a.requires_grad for a in args):
        raise ValueError(
            "checkpoint needs at least one tensor input with requires_grad=True: otherwise its output "
            "does not require grad and the parameters inside fn would silently get no gradient"
        )
    return _Checkpoint.apply(fn, preserve_rng_state, *args)


# --------------------------------------------------------------------------- policies
def _matmul_ops() -> list[object]:
    names = ["mm", "addmm", "bmm", "baddbmm", "_scaled_dot_product_flash_attention_for_cpu",
             "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
             "_scaled_dot_product_cudnn_attention"]
    return [getattr(torch.ops.aten, n).default for n in names if hasattr(torch.ops.aten, n)]


#: matrix products and fused-attention kernels: what the step's matmul count counts
SAVE_OPS = tuple(_matmul_ops())


def _ops(*names: str) -> frozenset[object]:
    return frozenset(getattr(torch.ops.aten, n).default for n in names if hasattr(torch.ops.aten, n))


#: the linear layers' matmuls (and fused attention, which keeps no T x T tensor)
LINEAR_OPS = _ops("mm", "addmm", "_scaled_dot_product_flash_attention_for_cpu",
                  "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                  "_scaled_dot_product_cudnn_attention")
#: what each selective policy keeps (``Policy('selective', keep=...)``)
SELECTIVE_KEEPS = ("core", "korthikanti", "linear", "matmuls")
_BATCHED_MATMULS = _ops("bmm", "baddbmm")


def _in_attention_core(op: object, args: tuple) -> bool:
    """Written-out attention's core: the batched matmuls (Q K^T, x V) and every op on a 4-D
    (batch, heads, T, .) tensor (scale, mask, softmax, dropout, the head reshapes)."""
    if op in _BATCHED_MATMULS:
        return True
    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    return first is not None and first.dim() == 4


def _never_cache(op: object) -> bool:
    """Ops selective checkpointing must recompute whatever the policy: views (free to recompute;
    caching one keeps its base alive, e.g. the T x T scores behind a reshape), random ops (the
    recomputation replays the RNG, so every random op must run again, in order) and ops whose
    output is written in place later or that write in place (dropout's ``empty_like``,
    ``bernoulli_``, ``div_`` on a CPU): a cached tensor must not change."""
    schema = getattr(op, "_schema", None)
    return bool(getattr(op, "is_view", False) or torch.Tag.nondeterministic_seeded in getattr(op, "tags", ())
                or (schema is not None and schema.is_mutable) or op in _ALIASES_OR_FRESH)


#: ``_unsafe_view`` returns an alias although its schema does not say so; fresh buffers get filled in place
_ALIASES_OR_FRESH = _ops("_unsafe_view", "empty_like", "zeros_like", "ones_like")


def _policy_fn(keep: str) -> Callable[..., torch_checkpoint.CheckpointPolicy]:
    must, recompute = torch_checkpoint.CheckpointPolicy.MUST_SAVE, torch_checkpoint.CheckpointPolicy.PREFER_RECOMPUTE

    def korthikanti(ctx: object, op: object, *args: object, **kwargs: object) -> torch_checkpoint.CheckpointPolicy:
        return recompute if _never_cache(op) or _in_attention_core(op, args) else must

    def linear(ctx: object, op: object, *args: object, **kwargs: object) -> torch_checkpoint.CheckpointPolicy:
        return must if op in LINEAR_OPS and not _never_cache(op) else recompute

    def matmuls(ctx: object, op: object, *args: object, **kwargs: object) -> torch_checkpoint.CheckpointPolicy:
        return must if op in SAVE_OPS and not _never_cache(op) else recompute

    validate.choice("keep", keep, SELECTIVE_KEEPS)
    if keep == "core":
        raise ValueError("keep='core' checkpoints the attention core itself, not an op policy")
    return {"korthikanti": korthikanti, "linear": linear, "matmuls": matmuls}[keep]


def selective_context(keep: str = "korthikanti") -> tuple[object, object]:
    """The ``context_fn`` for ``torch.utils.checkpoint``'s selective checkpointing.

    ``keep`` ('core' is not an op policy: see :class:`CoreCheckpointedBlock`): 'korthikanti'
    recomputes only the attention core (Q K^T, scale, mask, softmax,
    dropout, x V) and keeps everything else, as Korthikanti et al. (2022) section 5 define
    selective recomputation; 'linear' keeps only the linear layers' outputs and recomputes the
    attention core *and* the cheap pointwise ops (LayerNorm, GELU, adds); 'matmuls' keeps the
    output of every matmul, the T x T scores included (a contrast: it saves little)."""
    return torch_checkpoint.create_selective_checkpoint_contexts(_policy_fn(keep))


@dataclass(frozen=True)
class Policy:
    """Which blocks to checkpoint, and how.

    ``name``: 'none', 'every' (each block), 'every_kth' (blocks 0, k, 2k, ... each checkpointed,
    the others stored as usual), 'segments' (k contiguous segments, each checkpointed as one),
    'sqrt' (segments with k = round(sqrt(n_blocks))), 'selective' (each block with torch's
    selective checkpointing). ``impl``: 'scratch' (:func:`checkpoint`) or 'torch'
    (``torch.utils.checkpoint.checkpoint(use_reentrant=False)``); default 'scratch', and
    'torch' for 'selective' (the only implementation there). ``keep`` ('selective' only): what
    the selective policy keeps, one of SELECTIVE_KEEPS (see :func:`selective_context`).
    """

    name: str = "none"
    """One of POLICIES."""
    k: int | None = None
    """'every_kth': checkpoint every k-th block; 'segments': the number of segments."""
    impl: str | None = None
    """'scratch' (this module's :func:`checkpoint`) or 'torch'; None picks the default."""
    preserve_rng_state: bool = True
    """Replay the forward's random numbers (dropout masks) in the recomputation."""
    keep: str | None = None
    """'selective': 'korthikanti' (default), 'core', 'linear' or 'matmuls'."""

    def __post_init__(self) -> None:
        validate.choice("policy name", self.name, POLICIES)
        if self.name in ("every_kth", "segments"):
            if self.k is None:
                raise ValueError(f"policy {self.name!r} needs k, a positive int, got k=None")
            validate.positive_int(f"policy {self.name!r}: k", self.k)
        elif self.k is not None:
            raise ValueError(f"policy {self.name!r} takes no k (only 'every_kth' and 'segments' do), got k={self.k!r}")
        if self.name == "selective":
            object.__setattr__(self, "keep", validate.choice("keep", self.keep or "korthikanti", SELECTIVE_KEEPS))
        elif self.keep is not None:
            raise ValueError(f"policy {self.name!r} takes no keep (only 'selective' does), got keep={self.keep!r}")
        if self.impl is None:
            object.__setattr__(self, "impl", "torch" if self.name == "selective" else "scratch")
        validate.choice("impl", self.impl, IMPLS)
        if self.name == "selective" and self.impl != "torch":
            raise ValueError(f"selective checkpointing needs impl='torch', got impl={self.impl!r}")
        validate.boolean("preserve_rng_state", self.preserve_rng_state)

    @property
    def label(self) -> str:
        """Short name for tables: 'every', 'segments(k=4)', 'every/torch', ..."""
        k = "" if self.k is None else f"(k={self.k})"
        impl = "/torch" if self.impl == "torch" and self.name != "selective" else ""
        keep = f"({self.keep})" if self.keep else ""
        return f"{self.name}{k}{keep}{impl}"


def as_policy(policy: Policy | str) -> Policy:
    """Accept a :class:`Policy` or a bare name ('none', 'every', 'sqrt', 'selective')."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, str):
        return Policy(policy)
    raise TypeError(f"policy must be a Policy or one of {POLICIES}, got {type(policy).__name__}")


@dataclass(frozen=True)
class Segment:
    """Blocks ``start .. stop-1`` run as one unit, checkpointed or not."""

    start: int
    stop: int
    checkpointed: bool

    def __len__(self) -> int:
        return self.stop - self.start


def plan(policy: Policy | str, n_blocks: int) -> list[Segment]:
    """How ``policy`` splits ``n_blocks`` blocks into (checkpointed) segments."""
    policy = as_policy(policy)
    validate.positive_int("n_blocks", n_blocks)
    n = n_blocks
    if policy.name == "none":
        return [Segment(0, n, False)]
    if policy.name in ("every", "selective"):
        return [Segment(i, i + 1, True) for i in range(n)]
    if policy.name == "every_kth":
        if policy.k > n:
            raise ValueError(f"every_kth: k must be between 1 and n_blocks={n}, got k={policy.k}")
        return [Segment(i, i + 1, i % policy.k == 0) for i in range(n)]
    k = policy.k if policy.name == "segments" else sqrt_segments(n)
    if k > n:
        raise ValueError(f"segments: k must be between 1 and n_blocks={n}, got k={k}")
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    bounds = [0]
    for s in sizes:
        bounds.append(bounds[-1] + s)
    return [Segment(a, b, True) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def sqrt_segments(n_blocks: int) -> int:
    """Chen et al.'s choice: about sqrt(n) segments of about sqrt(n) blocks."""
    return max(1, round(math.sqrt(n_blocks)))



def block_policy(checkpoint: bool) -> Policy:
    """The policy the trainer and every pipeline stage share: each transformer block recomputed
    with ``torch.utils.checkpoint`` when ``checkpoint``, else none."""
    return Policy("every", impl="torch") if validate.boolean("checkpoint", checkpoint) else Policy("none")


# --------------------------------------------------------------------------- the transformation
@dataclass(frozen=True)
class CheckpointedSegment:
    """Callable: run ``layers`` in order as one checkpointed unit (shares their parameters)."""

    layers: tuple[nn.Module, ...]
    policy: Policy

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.policy.impl == "scratch":
            return checkpoint(self._run, x, preserve_rng_state=self.policy.preserve_rng_state)
        context = (functools.partial(selective_context, self.policy.keep) if self.policy.name == "selective"
                   else torch_checkpoint.noop_context_fn)
        return torch_checkpoint.checkpoint(self._run, x, use_reentrant=False, context_fn=context,
                                           preserve_rng_state=self.policy.preserve_rng_state)


@dataclass(frozen=True)
class CoreCheckpointedBlock:
    """Callable: run one transformer block with only its attention core
    (:meth:`~helpers.core.model.CausalSelfAttention.core`) under ``torch.utils.checkpoint``,
    the way Megatron-LM implements Korthikanti et al.'s selective recomputation: the core's
    inputs Q, K, V and its output are kept, everything inside it is recomputed in backward, and
    the rest of the block stores its activations as usual."""

    block: Block
    policy: Policy

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.block.attn
        core = attn.core  # the bound method; an instance attribute shadows it for this call only
        attn.core = lambda q, k, v: torch_checkpoint.checkpoint(
            core, q, k, v, use_reentrant=False, preserve_rng_state=self.policy.preserve_rng_state)
        try:
            return self.block(x)
        finally:
            del attn.core


@dataclass(frozen=True)
class PlainSegment:
    """Callable: run ``layers`` in order, storing activations as usual."""

    layers: tuple[nn.Module, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def apply_checkpointing(model_or_layers: GPT | Sequence[nn.Module], policy: Policy | str = "none",
                        all_blocks: bool = False) -> list[Layer]:
    """The layers to run in order, with the transformer blocks checkpointed by ``policy``.

    ``model_or_layers``: a GPT (its ``layers()``) or any contiguous slice of them (a pipeline
    stage). The blocks (instances of :class:`~helpers.core.model.Block`, or every layer with
    ``all_blocks=True``) must be contiguous; embeddings and head are never checkpointed. The
    returned callables share the layers' parameters; the model is not changed."""
    policy = as_policy(policy)
    layers = list(model_or_layers.layers()) if isinstance(model_or_layers, GPT) else list(model_or_layers)
    if policy.name == "none":
        return layers
    where = [i for i, layer in enumerate(layers) if all_blocks or isinstance(layer, Block)]
    if not where:
        return layers
    first, last = where[0], where[-1]
    if where != list(range(first, last + 1)):
        raise ValueError("the transformer blocks among the layers must be contiguous")
    blocks = layers[first : last + 1]
    out: list[Layer] = list(layers[:first])
    for seg in plan(policy, len(blocks)):
        group = tuple(blocks[seg.start : seg.stop])
        if seg.checkpointed and policy.name == "selective" and policy.keep == "core":
            if not all(isinstance(b, Block) for b in group):
                raise ValueError("selective checkpointing with keep='core' needs transformer blocks (helpers.core.Block)")
            out.extend(CoreCheckpointedBlock(b, policy) for b in group)
        else:
            out.append(CheckpointedSegment(group, policy) if seg.checkpointed else PlainSegment(group))
    return out + list(layers[last + 1 :])


def run_layers(layers: Sequence[Layer], x: torch.Tensor) -> torch.Tensor:
    """``x`` through each layer in order."""
    for layer in layers:
        x = layer(x)
    return x
