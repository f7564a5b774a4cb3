"""Exact, device-independent memory accounting for training.

What a training step holds in memory, by kind (the "memory ledger"):

- **parameters**      : the weights;
- **gradients**       : one tensor per trainable parameter, same shape;
- **optimiser state** : e.g. Adam's two moments (2x the parameters in fp32);
- **activations**     : tensors autograd saves during forward for use in backward.

Activations are counted exactly with ``torch.autograd.graph.saved_tensors_hooks``: every tensor
packed for backward is recorded, deduplicated by its storage (views share storage), and
parameters are excluded (they are already counted). This works the same on CPU and GPU and is
deterministic, so notebooks can assert on it. On CUDA, :func:`cuda_peak_bytes` adds the
allocator's view. :func:`track_live_tensors` gives an allocator-like view on any device: every
tensor storage created and freed over a region (forward, backward, recomputation), hence the
peak of live bytes. :func:`offload_to_host` measures activation offloading (``save_on_cpu``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MiB = 2**20


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of a tensor's elements (numel x element size)."""
    return t.numel() * t.element_size()


def param_bytes(model: nn.Module) -> int:
    """Bytes of all parameters."""
    return sum(tensor_bytes(p) for p in model.parameters())


def grad_bytes(model: nn.Module) -> int:
    """Bytes of the gradients a backward pass creates: one per trainable parameter, same dtype
    as the parameter (what ``.grad`` holds)."""
    return sum(tensor_bytes(p) for p in model.parameters() if p.requires_grad)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimiser's state (populated after its first step)."""
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += tensor_bytes(value)
    return total


@dataclass(frozen=True)
class SavedTensor:
    """One tensor autograd saved for backward."""

    module: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int
    storage: int  # storage identity (data pointer) used for de-duplication


@dataclass
class SavedTensorLog:
    """Tensors saved for backward during a forward pass (see :func:`record_saved_tensors`)."""

    records: list[SavedTensor] = field(default_factory=list)

    @property
    def unique(self) -> list[SavedTensor]:
        """One record per storage (the first one seen)."""
        seen: set[tuple[int, int]] = set()
        out = []
        for r in self.records:
            key = (r.storage, r.nbytes)
            if key not in seen:
                seen.add(key)
                out.append(r)
        return out

    @property
    def total_bytes(self) -> int:
        """Bytes of distinct storages saved for backward (parameters excluded)."""
        storages: dict[int, int] = {}
        for r in self.records:
            storages[r.storage] = max(storages.get(r.storage, 0), r.nbytes)
        return sum(storages.values())

    def by_module(self) -> dict[str, int]:
        """Bytes per module name, each storage counted once (in the first module that saved it)."""
        out: dict[str, int] = {}
        for r in self.unique:
            out[r.module] = out.get(r.module, 0) + r.nbytes
        return out

    def by_dtype(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.unique:
            key = str(r.dtype).replace("torch.", "")
            out[key] = out.get(key, 0) + r.nbytes
        return out

    def table(self) -> list[dict[str, object]]:
        """Rows (module, shape, dtype, bytes) for display, one per distinct storage."""
        return [
            {"module": r.module, "shape": tuple(r.shape), "dtype": str(r.dtype).replace("torch.", ""),
             "bytes": r.nbytes}
            for r in self.unique
        ]


@contextmanager
def record_saved_tensors(model: nn.Module | None = None, exclude: Iterable[torch.Tensor] = ()
                         ) -> Iterator[SavedTensorLog]:
    """Record every tensor autograd saves for backward inside the block.

    ``model``'s parameters (and any ``exclude`` tensors) are not counted. When ``model`` is given,
    each record names the innermost module running when the tensor was saved.
    Yields a :class:`SavedTensorLog`.
    """
    log = SavedTensorLog()
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    stack: list[str] = []
    handles = []
    if model is not None:
        skip |= {p.untyped_storage().data_ptr() for p in model.parameters()}
        skip |= {b.untyped_storage().data_ptr() for b in model.buffers()}
        def enter(name: str) -> Callable[..., None]:
            def hook(module: nn.Module, args: object) -> None:
                stack.append(name or "<model>")

            return hook

        def leave(module: nn.Module, args: object, output: object) -> None:
            if stack:
                stack.pop()

        for name, mod in model.named_modules():
            handles.append(mod.register_forward_pre_hook(enter(name)))
            handles.append(mod.register_forward_hook(leave))

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in skip and not isinstance(t, nn.Parameter):
            log.records.append(
                SavedTensor(module=stack[-1] if stack else "", shape=tuple(t.shape), dtype=t.dtype,
                            nbytes=storage.nbytes(), storage=ptr)
            )
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield log
    finally:
        for h in handles:
            h.remove()


def saved_activation_bytes(model: nn.Module, forward: Callable[[], torch.Tensor]) -> int:
    """Bytes saved for backward by ``forward()`` (parameters excluded)."""
    with record_saved_tensors(model) as log:
        forward()
    return log.total_bytes


@dataclass(frozen=True)
class Ledger:
    """Bytes held by one training step, by kind."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations

    def as_mib(self) -> dict[str, float]:
        """The ledger in MiB, rounded to 3 decimals (for tables)."""
        d = {"parameters": self.parameters, "gradients": self.gradients,
             "optimizer_state": self.optimizer_state, "activations": self.activations, "total": self.total}
        return {k: round(v / MiB, 3) for k, v in d.items()}


def memory_ledger(
    model: nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
) -> Ledger:
    """Run one training step (``loss_fn()`` forward, backward, optimiser step) and account it.

    ``loss_fn`` runs the forward pass however the caller likes (autocast, checkpointing, ...)
    and returns the loss. Activations are what that forward saved for backward; optimiser state
    is measured after the step. Gradients are zeroed afterwards (set to None).
    """
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters())
    with record_saved_tensors(model) as log:
        loss = loss_fn()
    if not torch.is_tensor(loss) or loss.ndim != 0:
        raise TypeError("loss_fn must return a scalar tensor")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = sum(tensor_bytes(p.grad) for p in model.parameters() if p.grad is not None)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return Ledger(parameters=param_bytes(model), gradients=grads,
                  optimizer_state=optimizer_state_bytes(optimizer), activations=log.total_bytes)


def cuda_peak_bytes(fn: Callable[[], object], device: int | str | torch.device = 0) -> int:
    """Peak CUDA memory allocated while ``fn()`` runs (``max_memory_allocated``)."""
    if not torch.cuda.is_available():
        raise ValueError("cuda_peak_bytes needs CUDA; torch.cuda.is_available() is False")
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)


# --------------------------------------------------------------------------- live tensor memory
@dataclass
class LiveMemoryLog:
    """Allocation/free events of tensor storages created inside :func:`track_live_tensors`.

    ``events[i] = (storage_id, +nbytes)`` when a storage is created and ``(storage_id, -nbytes)``
    when it is freed, in program order. ``grad_ids`` are the storages that ended up as parameter
    gradients (``p.grad``); they are the same with or without checkpointing and are excluded by
    default, so the numbers below measure activations and temporaries only.
    """

    events: list[tuple[int, int]] = field(default_factory=list)
    grad_ids: set[int] = field(default_factory=set)
    marks: dict[str, int] = field(default_factory=dict)
    ops: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)  # e.g. {"aten.mm.default": 12, ...}

    def series(self, include_grads: bool = False) -> list[int]:
        """Live bytes after each event (the memory timeline of the step)."""
        live, out = 0, []
        for sid, delta in self.events:
            if include_grads or sid not in self.grad_ids:
                live += delta
            out.append(live)
        return out

    def peak_bytes(self, include_grads: bool = False) -> int:
        """Highest live bytes over the tracked region (0 if nothing was allocated)."""
        return max(self.series(include_grads), default=0)

    def bytes_at(self, mark: str, include_grads: bool = False) -> int:
        """Live bytes at a point recorded with :meth:`LiveTensorTracker.mark`."""
        if mark not in self.marks:
            raise ValueError(f"mark must be one of {sorted(self.marks)}, got {mark!r}")
        index = self.marks[mark]
        return self.series(include_grads)[index - 1] if index else 0


class LiveTensorTracker:
    """Counts the bytes of every tensor storage created by an operator while active, and when
    each is freed: an allocator's view of memory that works on any device and is deterministic.

    Implemented with a ``TorchDispatchMode`` (sees every op, forward, backward and recomputation,
    after autocast) and ``weakref.finalize`` on each new storage. Outputs of views and in-place
    ops allocate nothing and are skipped; tensors that existed before the region (parameters,
    inputs) are not counted. Scratch buffers inside a kernel are invisible to it.
    """

    def __init__(self, model: nn.Module | None = None) -> None:
        self.model = model
        self.log = LiveMemoryLog()
        self._ids: dict[int, int] = {}  # id(storage object) -> sequential storage id
        self._finalizers: list[object] = []
        self._next = 0
        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
                out = func(*args, **(kwargs or {}))
                tracker.log.ops += 1
                name = str(func)
                tracker.log.op_counts[name] = tracker.log.op_counts.get(name, 0) + 1
                # views and in-place ops return (part of) an existing storage: nothing allocated
                if not any(r.alias_info is not None for r in func._schema.returns):
                    for t in tree_flatten(out)[0]:
                        if isinstance(t, torch.Tensor):
                            tracker._track(t)
                return out

        self._mode = _Mode()

    def _track(self, t: torch.Tensor) -> None:

        storage = t.untyped_storage()
        key = id(storage)
        if key in self._ids:
            return
        sid, nbytes = self._next, storage.nbytes()
        self._next += 1
        self._ids[key] = sid
        self.log.events.append((sid, nbytes))
        self._finalizers.append(weakref.finalize(storage, self._free, key, sid, nbytes))

    def _free(self, key: int, sid: int, nbytes: int) -> None:
        self._ids.pop(key, None)
        self.log.events.append((sid, -nbytes))

    def mark(self, name: str) -> None:
        """Remember the current point of the timeline under ``name`` (e.g. 'forward end')."""
        self.log.marks[name] = len(self.log.events)

    def __enter__(self) -> LiveTensorTracker:
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)
        if self.model is not None:
            for p in self.model.parameters():
                if p.grad is not None and id(p.grad.untyped_storage()) in self._ids:
                    self.log.grad_ids.add(self._ids[id(p.grad.untyped_storage())])
        for fin in self._finalizers:  # the log ends here; surviving tensors no longer report to it
            fin.detach()
        self._finalizers.clear()


def track_live_tensors(model: nn.Module | None = None) -> LiveTensorTracker:
    """``with track_live_tensors(model) as tr: ...; tr.log.peak_bytes()``: live tensor bytes
    over a region, parameter gradients of ``model`` excluded (see :class:`LiveTensorTracker`)."""
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or None, got {type(model).__name__}")
    return LiveTensorTracker(model)


# --------------------------------------------------------------------------- activation offloading
@dataclass
class OffloadLog:
    """What :func:`offload_to_host` moved: bytes packed to the host in forward (``bytes_out``, of
    which ``parameter_bytes`` were parameters) and brought back in backward (``bytes_in``)."""

    bytes_out: int = 0
    bytes_in: int = 0
    parameter_bytes: int = 0


_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@contextmanager
def offload_to_host(model: nn.Module | None = None) -> Iterator[OffloadLog]:
    """``torch.autograd.graph.save_on_cpu`` made measurable on any machine: every tensor saved for
    backward is copied into a host buffer (a NumPy array, outside torch and so outside
    :func:`track_live_tensors`' view, as a GPU's host memory is outside its allocator) and copied
    back when backward needs it. Like ``save_on_cpu`` it offloads parameters too (counted in
    ``parameter_bytes`` when ``model`` is given)."""
    log = OffloadLog()
    params = set() if model is None else {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t: torch.Tensor) -> tuple[np.ndarray, torch.dtype]:
        n = t.numel() * t.element_size()
        log.bytes_out += n
        if t.untyped_storage().data_ptr() in params:  # a parameter or a view of one (a transposed weight)
            log.parameter_bytes += n
        return np.array(t.detach().view(_INT_OF_SIZE[t.element_size()]).numpy(), copy=True), t.dtype

    def unpack(packed: tuple[np.ndarray, torch.dtype]) -> torch.Tensor:
        host, dtype = packed
        log.bytes_in += host.nbytes
        return torch.from_numpy(host).view(dtype)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield log
