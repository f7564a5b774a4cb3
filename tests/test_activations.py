"""The activation formula against saved-tensor hooks, in every precision setting."""

import pytest
import torch

from helpers import activations as A
from helpers import core, memory
from helpers.precision.emulate import cuda_autocast

TASK = core.char_task()
CONFIGS = [(64, 8, 32, 4), (32, 2, 64, 8), (48, 3, 48, 6), (16, 5, 16, 1)]


def _context(precision: str):
    if precision == "fp32":
        return torch.autocast("cpu", enabled=False)
    if precision == "bf16-cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return cuda_autocast(torch.bfloat16)


def _model(s, h, a, n_layer=1, dropout=0.0):
    torch.manual_seed(0)
    return core.GPT(TASK.config(n_layer=n_layer, n_embd=h, n_head=a, block_size=s, dropout=dropout))


@pytest.mark.parametrize("precision", A.PRECISIONS)
@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_block_formula_is_exact(cfg, dropout, precision):
    s, b, h, a = cfg
    block = _model(s, h, a, dropout=0.1 if dropout else 0.0).blocks[0]
    x = torch.randn(b, s, h, requires_grad=True)
    with memory.record_saved_tensors(block) as log, _context(precision):
        block(x)
    assert log.total_bytes == A.block_bytes(s, b, h, a, precision, dropout)


@pytest.mark.parametrize("precision", A.PRECISIONS)
@pytest.mark.parametrize("dropout", [False, True])
def test_whole_model_formula_is_exact(precision, dropout):
    s, b, h, a, n = 32, 3, 32, 4, 3
    m = _model(s, h, a, n_layer=n, dropout=0.1 if dropout else 0.0)
    x, y = TASK.batch(b, s, torch.Generator().manual_seed(0))
    with memory.record_saved_tensors(m) as log, _context(precision):
        m(x, y)
    assert log.total_bytes == A.gpt_bytes(s, b, h, a, n, TASK.tokenizer.vocab_size, precision, dropout)


def test_korthikanti_formula():
    s, b, h, a = 2048, 1, 12288, 96  # GPT-3 175B, one sequence
    assert A.korthikanti_layer_bytes(s, b, h, a) == s * b * h * (34 + 5 * a * s / h)
    assert A.korthikanti_layer_bytes(s, b, h, a, "selective") == 34 * s * b * h
    assert A.korthikanti_layer_bytes(s, b, h, a, "full", t=8) == 2 * s * b * h / 8
    # the course block without dropout, in 16-bit bytes, is Korthikanti's count minus the masks and
    # dropout output (32 s b h + 2 a s^2 b) once the residual stream is 16-bit too
    s, b, h, a = 64, 8, 32, 4
    fp32 = A.block_bytes(s, b, h, a, "fp32")
    assert fp32 == 2 * (32 * s * b * h + 2 * a * s * s * b) + 16 * s * b + s * s


@pytest.mark.parametrize("bad, match", [
    (lambda: A.block_bytes(0, 1, 1, 1), "s must be"),
    (lambda: A.block_bytes(8, 1, 8, 1, precision="fp16"), "precision must be one of"),
    (lambda: A.korthikanti_layer_bytes(8, 1, 8, 1, recompute="some"), "recompute must be one of"),
    (lambda: cuda_autocast(torch.float32).__enter__(), "dtype must be one of"),
])
def test_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()
