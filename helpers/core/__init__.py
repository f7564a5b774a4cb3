"""The core every technique builds on: the course transformer and its task, learning-rate
schedules, the checkpointing transformation, and the one training step.

- ``model``      : the GPT-style transformer (``GPT``, ``GPTConfig``, ``lm_loss``)
- ``task``       : the character-level task (``char_task``, ``CharTask``)
- ``lr``         : ``LRSchedule`` (and ``.to_torch(optimizer, steps)``)
- ``checkpoint`` : ``Policy`` and ``apply_checkpointing`` (blocks recomputed in backward)
- ``step``       : ``train_step`` = ``forward_backward`` + ``finish_step``, ``StepConfig``
- ``loop``       : ``train`` and ``val_loss``, the visible training loop
- ``device``     : the device to use (``COURSE_DEVICE``)
"""

from __future__ import annotations

from helpers.core.checkpoint import POLICIES, Policy, apply_checkpointing, as_policy, block_policy
from helpers.core.device import course_device
from helpers.core.loop import train, val_loss
from helpers.core.lr import LR_SCHEDULES, LRSchedule, as_lr_schedule
from helpers.core.model import GPT, Block, GPTConfig, lm_loss
from helpers.core.step import (
    StepConfig,
    StepStats,
    autocast,
    clip_grad_norm,
    finish_step,
    forward_backward,
    microbatches,
    train_step,
)
from helpers.core.task import CharTask, CharTokenizer, char_task

__all__ = [
    "GPT", "LR_SCHEDULES", "POLICIES", "Block", "CharTask", "CharTokenizer", "GPTConfig", "LRSchedule", "Policy",
    "StepConfig", "StepStats", "apply_checkpointing", "as_lr_schedule", "as_policy", "block_policy", "autocast", "char_task",
    "clip_grad_norm", "course_device", "finish_step", "forward_backward", "lm_loss", "microbatches",
    "train", "train_step", "val_loss",
]
