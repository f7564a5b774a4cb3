"""The one start-up call at the top of every notebook.

``settings = helpers.setup()`` seeds every RNG, sets torch's thread count, applies the plot
style, installs precise noise filters, picks the device and prints one friendly line.

Environment variables (read here, so one flag switches the whole course):

- ``COURSE_FULL=1``     larger "full" settings (longer runs, bigger models); default is fast.
- ``COURSE_SEED=k``     the course seed (default 0): moves every seed in every notebook and helper
                        (see :mod:`helpers.seeds`); every assert must hold for any k.
- ``COURSE_THREADS=N``  torch intra-op threads (default: min(cores, 4)).
- ``COURSE_DEVICE=cpu`` force the CPU path even when a GPU exists.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from helpers import (
    noise,
    plots,
    seeds,
    validate,
)
from helpers.core.device import course_device
from helpers.environment import package_versions


@dataclass(frozen=True)
class Settings:
    """What :func:`setup` decided; notebooks read sizes and the device from here."""

    seed: int
    device: str
    threads: int
    full: bool
    cuda_name: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def seed_for(self, offset: int = 0) -> int:
        """The seed of one experiment in a notebook: ``offset`` at course seed 0, moved for any other."""
        return seeds.family(self.seed, offset)

    def pick(self, fast, full):  # noqa: ANN001, ANN201 - any value type
        """Return ``full`` under COURSE_FULL=1, else ``fast``: ``steps = s.pick(200, 2000)``."""
        return full if self.full else fast


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"environment variable {name}={value!r}: expected one of 0/1/true/false/yes/no")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    validate.integer("seed", seed, 0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def detect_device(prefer: str | None = None) -> tuple[str, str | None]:
    """Return (device, gpu name). ``prefer`` (or COURSE_DEVICE) may force 'cpu' or 'cuda'
    (:func:`helpers.core.device.course_device`)."""
    device = course_device(prefer)
    return device, (torch.cuda.get_device_name(0) if device == "cuda" else None)


def setup(
    seed: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    quiet: bool = True,
    verbose: bool = True,
) -> Settings:
    """Seed RNGs, set threads, style plots, filter known noise, pick the device; print one line.

    ``seed`` defaults to ``COURSE_SEED`` (0 when unset); a given seed is written back to
    ``COURSE_SEED`` so every helper default and every spawned process follows it.
    """
    if threads is None:
        threads = int(os.environ.get("COURSE_THREADS", min(os.cpu_count() or 1, 4)))
    validate.positive_int("threads", threads)
    if quiet:
        noise.quiet_third_party()
    torch.set_num_threads(threads)
    seed = seeds.course_seed() if seed is None else seeds.resolve(seed)
    os.environ["COURSE_SEED"] = str(seed)
    seed_everything(seed)
    plots.apply_style()
    dev, gpu = detect_device(device)
    full = _env_flag("COURSE_FULL")
    settings = Settings(
        seed=seed, device=dev, threads=threads, full=full, cuda_name=gpu, versions=package_versions()
    )
    if verbose:
        mode = "full settings (COURSE_FULL=1)" if full else "fast settings"
        if gpu:
            print(f"GPU found: {gpu}. GPU cells will run too; {mode}, seed {seed}.")
        else:
            print(f"No GPU found: running the CPU path; GPU cells will be skipped. {mode.capitalize()}, seed {seed}.")
    return settings
