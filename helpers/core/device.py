"""Which device to compute on: ``COURSE_DEVICE`` ('cpu' or 'cuda') or an argument forces it;
otherwise CUDA when enough GPUs exist, else the CPU."""

from __future__ import annotations

import os

import torch

DEVICES = ("cpu", "cuda")


def course_device(prefer: str | None = None, gpus_needed: int = 1) -> str:
    """'cuda' or 'cpu'. ``prefer`` (else ``COURSE_DEVICE``) forces one; 'cuda' without
    ``gpus_needed`` GPUs is an error. Unforced: 'cuda' when there are ``gpus_needed`` GPUs."""
    prefer = prefer or os.environ.get("COURSE_DEVICE") or None
    if prefer is not None and prefer not in DEVICES:
        raise ValueError(f"device must be 'cpu', 'cuda' or None (automatic), got {prefer!r}")
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if prefer == "cuda" and have < gpus_needed:
        if gpus_needed == 1:
            raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
        raise ValueError(f"device='cuda' needs one GPU per local rank: {gpus_needed} ranks, {have} GPUs")
    if prefer == "cpu" or have < gpus_needed:
        return "cpu"
    return "cuda"
