"""The visible training loop (nanoGPT-style) and the validation loss."""

from __future__ import annotations

import torch

from helpers import seeds
from helpers.core.model import GPT
from helpers.core.step import StepConfig, autocast, train_step
from helpers.core.task import CharTask


def train(
    model: GPT,
    task: CharTask,
    steps: int = 200,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int | None = None,
    log_every: int = 0,
    config: StepConfig | None = None,
) -> list[float]:
    """AdamW training for ``steps`` steps of :func:`~helpers.core.step.train_step` (plain fp32
    unless ``config`` says otherwise); returns the training loss per step."""
    seed = seeds.resolve(seed, 0)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        x, y = task.batch(batch_size, model.config.block_size, g)
        losses.append(train_step(model, opt, (x, y), config or StepConfig()).loss)
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:4d}  loss {losses[-1]:.3f}")
    return losses


@torch.no_grad()
def val_loss(
    model: GPT, task: CharTask, batches: int = 8, batch_size: int = 32, seed: int | None = None,
    device: str = "cpu", autocast_dtype: torch.dtype | None = None,
) -> float:
    """Mean validation loss over a fixed set of batches (optionally under autocast on ``device``)."""
    seed = seeds.resolve(seed, 1)
    g = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    total = 0.0
    for _ in range(batches):
        x, y = task.batch(batch_size, model.config.block_size, g, split="val")
        with autocast(device, autocast_dtype):
            total += model(x.to(device), y.to(device))[1].item()
    model.train(was_training)
    return total / batches
