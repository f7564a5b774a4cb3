"""The decision guide: which combination to use for a given device memory and device count."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from helpers import (
    memory,
    validate,
)
from helpers.lessons.capstone.ledgers import peak_bytes
from helpers.lessons.capstone.runs import combination

# --------------------------------------------------------------------------- decision guide
#: the order the guide tries combinations in: a rule of thumb, cheapest in time first. One
#: device before several; without recomputation before with it (checkpointing runs every block's
#: forward twice); whole batches before micro-batches (smaller matrix products, a fixed cost per
#: micro-batch: lesson 08 times both); AMP first where low precision is fast, last where it is
#: slow. The pipeline needs more devices and pays the bubble.
PREFERENCE_FAST_LOW_PRECISION = ("amp", "plain", "amp+accumulate", "accumulate", "amp+checkpoint", "checkpoint",
                                 "amp+accumulate+checkpoint", "accumulate+checkpoint", "pipeline", "all")
PREFERENCE_SLOW_LOW_PRECISION = ("plain", "accumulate", "checkpoint", "accumulate+checkpoint", "amp",
                                 "amp+accumulate", "amp+checkpoint", "amp+accumulate+checkpoint", "pipeline", "all")

#: what to say where a pipeline is chosen or nothing fits: the usual first step with several
#: devices (not modelled by the guide), and how it differs from a pipeline
ZERO_NOTE = ("ZeRO / FSDP, not modelled here, are usually tried first with several devices: each "
             "data-parallel device takes 1/N of the batch (dividing the activations) and they shard "
             "the optimiser state (stage 1), the gradients (2) and the parameters (3) among "
             "themselves, paying collective communication every step; a pipeline divides "
             "parameters and activations by stage and sends only the boundaries' activations, "
             "point to point")


@dataclass(frozen=True)
class Recommendation:
    """The guide's answer for one situation."""

    choice: str | None  # a combination name, or None when nothing fits
    bound: str          # "compute" (the plain run fits) or "memory"
    reason: str
    needs: dict[str, int]  # combination -> bytes its busiest process holds

    @property
    def label(self) -> str:
        return combination(self.choice).label if self.choice else "none fits"


def recommend(ledgers: Mapping[str, Sequence[memory.Ledger]], device_bytes: int, devices: int,
              fast_low_precision: bool) -> Recommendation:
    """Which combination to use on ``devices`` devices of ``device_bytes`` each.

    Memory first: a combination qualifies when its busiest process's measured step peak
    (:func:`~helpers.lessons.capstone.peak_bytes`) fits in ``device_bytes`` and it needs no more
    processes than there are devices. Among those, time decides, in the order
    :data:`PREFERENCE_FAST_LOW_PRECISION` (hardware with fast bf16/fp16: AMP is free speed) or
    :data:`PREFERENCE_SLOW_LOW_PRECISION` (AMP only saves memory there, at a cost in time).
    ``bound`` says whether plain training fits (compute bound: the question is only speed) or not
    (memory bound)."""
    if "plain" not in ledgers:
        raise ValueError("ledgers must include 'plain' (the reference)")
    if isinstance(device_bytes, bool) or not isinstance(device_bytes, (int, float)) or device_bytes <= 0:
        raise ValueError(f"device_bytes must be a positive number, got {device_bytes!r}")
    validate.positive_int("devices", devices)
    needs = {n: peak_bytes(leds) for n, leds in ledgers.items()}
    procs = {n: len(leds) for n, leds in ledgers.items()}
    bound = "compute" if needs["plain"] <= device_bytes else "memory"
    order = PREFERENCE_FAST_LOW_PRECISION if fast_low_precision else PREFERENCE_SLOW_LOW_PRECISION
    mib = memory.MiB
    for name in order:
        if name in needs and needs[name] <= device_bytes and procs[name] <= devices:
            why = (f"{combination(name).label} needs {needs[name] / mib:.2f} MiB per device "
                   f"<= {device_bytes / mib:.2f} MiB on {procs[name]} of {devices} device(s)")
            if bound == "compute":
                why += ("; plain fits, so only speed matters" + (
                    ": bf16 units make AMP faster" if name == "amp" else "")
                    + (" (more devices: data parallelism, each with a full copy)" if devices > 1 else ""))
            elif combination(name).pipeline:
                why += f" ({ZERO_NOTE})"
            return Recommendation(name, bound, why, needs)
    smallest = min(needs, key=lambda n: needs[n])
    why = (f"nothing fits: the smallest, {combination(smallest).label}, needs "
           f"{needs[smallest] / mib:.2f} MiB per device on {procs[smallest]} device(s); use more "
           f"pipeline stages or smaller micro-batches ({ZERO_NOTE})")
    return Recommendation(None, bound, why, needs)
