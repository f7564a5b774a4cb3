"""What the trained model writes, and (on CUDA) the allocator's peak per step."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from helpers import core, memory, seeds, training
from helpers.lessons.capstone.runs import RunSpec, combination


# --------------------------------------------------------------------------- learning
def sample(model: core.GPT, task: core.CharTask, prompt: str = "the ", length: int = 160,
           temperature: float = 0.8, seed: int | None = None) -> str:
    """Text the model writes after ``prompt`` (seeded, so it is reproducible)."""
    seed = seeds.resolve(seed, 0)
    g = torch.Generator().manual_seed(seed)
    idx = task.tokenizer.encode(prompt).view(1, -1)
    out = model.eval().generate(idx, length, temperature=temperature, generator=g)
    return task.tokenizer.decode(out[0])


def real_word_share(text: str, corpus: str) -> float:
    """Share of the complete words in ``text`` (the last, possibly cut, word dropped) that occur
    in ``corpus``."""
    vocab = set(re.findall(r"[a-z]+", corpus))
    words = re.findall(r"[a-z]+", text)[:-1]
    if not words:
        return 0.0
    return sum(w in vocab for w in words) / len(words)



# --------------------------------------------------------------------------- GPU (additive)
def cuda_step_peaks(task: core.CharTask, spec: RunSpec,
                    names: Sequence[str] = ("plain", "amp", "checkpoint")) -> dict[str, int]:
    """Peak CUDA memory (bytes, allocator's view) of one training step of each single-process
    combination, after a first step has created the optimiser state."""
    if not torch.cuda.is_available():
        raise ValueError("cuda_step_peaks needs CUDA; torch.cuda.is_available() is False")
    if spec.train.steps < 2:
        raise ValueError(f"spec.train.steps must be >= 2 (a warm-up step, then the measured one), "
                         f"got {spec.train.steps}")
    out = {}
    for n in names:
        combo = combination(n)
        if combo.pipeline:
            raise ValueError(f"combination {n!r} is pipelined; cuda_step_peaks measures one process")
        trainer = training.Trainer(spec.model, task, spec.train_config(combo), device="cuda")
        trainer.step()
        out[n] = memory.cuda_peak_bytes(trainer.step)
        del trainer
        torch.cuda.empty_cache()
    return out
