"""The course's training task: character-level language modelling of ``data/tiny_stories.txt``,
a generated corpus of short sentences (see ``data/make_data.py``); a 2-layer model visibly
learns its words within a minute on a laptop CPU."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from helpers import validate
from helpers.core.model import GPTConfig
from helpers.data import load_text


class CharTokenizer:
    """Characters <-> integer ids, built from a text."""

    def __init__(self, text: str) -> None:
        if not text:
            raise ValueError("text must be non-empty")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> torch.Tensor:
        unknown = sorted(set(s) - self.stoi.keys())
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {unknown!r}")
        return torch.tensor([self.stoi[c] for c in s], dtype=torch.long)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


@dataclass
class CharTask:
    """The course's offline training task: next-character prediction on tiny_stories.txt."""

    tokenizer: CharTokenizer
    train: torch.Tensor
    val: torch.Tensor

    def batch(
        self, batch_size: int, block_size: int, generator: torch.Generator, split: str = "train"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows ``x`` and their next-character targets ``y``, both (B, T)."""
        validate.choice("split", split, ("train", "val"))
        validate.positive_int("batch_size", batch_size)
        validate.positive_int("block_size", block_size)
        data = self.train if split == "train" else self.val
        ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
        x = torch.stack([data[i : i + block_size] for i in ix.tolist()])
        y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix.tolist()])
        return x, y

    def config(self, **overrides: object) -> GPTConfig:
        """A GPTConfig with this task's vocabulary size."""
        return GPTConfig(vocab_size=self.tokenizer.vocab_size, **overrides)  # type: ignore[arg-type]


def char_task(name: str = "tiny_stories.txt", val_fraction: float = 0.1) -> CharTask:
    """Load the checksum-verified corpus and split it 90/10 into train/val ids."""
    text = load_text(name)
    tok = CharTokenizer(text)
    ids = tok.encode(text)
    n = int(len(ids) * (1 - val_fraction))
    return CharTask(tokenizer=tok, train=ids[:n], val=ids[n:])
