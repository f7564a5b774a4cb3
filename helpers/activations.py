"""How many bytes a transformer saves for backward: the formula, term by term (lesson 04 §1, 03 §6).

Korthikanti et al. (2022), *Reducing Activation Recomputation in Large Transformer Models*,
§4.1, count the activations one GPT layer keeps, in bytes of a 16-bit format, with dropout:

    s b h (34 + 5 a s / h)        s: sequence, b: micro-batch, h: width, a: heads

(:func:`korthikanti_layer_bytes`). :func:`block_terms` does the same count for the course's
``helpers.core`` block, tensor by tensor, in three precision settings, with and without dropout:

- ``'fp32'``: every saved tensor in fp32;
- ``'bf16-cpu'``: CPU bf16 autocast: linear-layer inputs, Q/K/V, softmax output and GELU
  tensors in bf16; the residual stream (LayerNorm inputs) and LayerNorm statistics in fp32,
  plus the bf16 copy of every Linear weight (backward needs it for the input gradient);
- ``'bf16-cuda'``: CUDA bf16 autocast, whose fp32 list also holds ``softmax``: the T x T
  probabilities are saved in fp32 *and* as the bf16 copy that ``att @ v`` uses.

Dropout masks take one byte per element on CUDA (``native_dropout`` keeps a bool mask) and the
element size of their input on a CPU (dropout multiplies by a float noise tensor). Every term is
checked against saved-tensor hooks in ``tests/test_activations.py`` (and against
:func:`helpers.precision.emulate.cuda_autocast` for ``'bf16-cuda'``).
"""

from __future__ import annotations

from helpers import validate

PRECISIONS = ("fp32", "bf16-cpu", "bf16-cuda")


def korthikanti_layer_bytes(s: int, b: int, h: int, a: int, recompute: str = "none", t: int = 1) -> float:
    """Korthikanti et al. (2022) eq. (1)-(2) and §5: activation bytes of one layer in a 16-bit
    format, with dropout. ``recompute``: 'none' (34 s b h + 5 a s^2 b), 'selective' (the
    attention core recomputed: 34 s b h) or 'full' (only the layer input: 2 s b h). ``t``:
    tensor-parallel size with sequence parallelism (every term divided by t)."""
    for name, v in (("s", s), ("b", b), ("h", h), ("a", a), ("t", t)):
        validate.positive_int(name, v)
    validate.choice("recompute", recompute, ("none", "selective", "full"))
    if recompute == "full":
        return 2 * s * b * h / t
    attention_core = 0 if recompute == "selective" else 5 * a * s * s * b
    return (34 * s * b * h + attention_core) / t


def block_terms(s: int, b: int, h: int, a: int, precision: str = "fp32", dropout: bool = False,
                mlp_ratio: int = 4) -> dict[str, int]:
    """Bytes one course block (``attention='manual'``, no biases saved) keeps for backward,
    by tensor. See the module docstring for the precision settings."""
    for name, v in (("s", s), ("b", b), ("h", h), ("a", a), ("mlp_ratio", mlp_ratio)):
        validate.positive_int(name, v)
    validate.choice("precision", precision, PRECISIONS)
    validate.boolean("dropout", dropout)
    sbh, ass_b, sb = s * b * h, a * s * s * b, s * b
    low = 4 if precision == "fp32" else 2  # what autocast's matmuls take and return
    probs = 2 if precision == "bf16-cpu" else 4  # softmax output (CUDA autocast: fp32)
    mask = 1 if precision == "bf16-cuda" else None  # dropout mask bytes per element
    m = mlp_ratio
    terms = {
        "LayerNorm inputs (residual stream, fp32)": 2 * 4 * sbh,
        "LayerNorm mean and 1/std (fp32)": 2 * 2 * 4 * sb,
        "Linear inputs: qkv, proj, fc": 3 * low * sbh,
        "Q, K, V (reshaped for bmm)": 3 * low * sbh,
        "GELU input and output": 2 * m * low * sbh,
        "causal mask (bool)": s * s,
        "softmax output (T x T)": probs * ass_b,
    }
    if precision == "bf16-cuda":
        terms["bf16 copy of the probabilities for att @ v"] = 2 * ass_b
    if dropout:
        terms["attention dropout mask"] = (mask or probs) * ass_b
        if precision != "bf16-cuda":  # on CUDA the bf16 copy above is now of the dropout output
            terms["attention dropout output (for att @ v)"] = probs * ass_b
        terms["residual dropout masks (2)"] = 2 * (mask or low) * sbh
    if precision != "fp32":
        terms["bf16 copies of the Linear weights"] = 2 * (3 + 1 + m + m) * h * h
    return terms


def block_bytes(s: int, b: int, h: int, a: int, precision: str = "fp32", dropout: bool = False,
                mlp_ratio: int = 4) -> int:
    """The sum of :func:`block_terms`."""
    return sum(block_terms(s, b, h, a, precision, dropout, mlp_ratio).values())


def outside_blocks_bytes(s: int, b: int, h: int, vocab: int, precision: str = "fp32", dropout: bool = False) -> int:
    """What the rest of the course GPT keeps: token and position indices (int64), the embedding
    dropout mask, the head's LayerNorm (fp32 input and statistics), its Linear input (and bf16
    weight copy under autocast), the fp32 log-softmax of the logits, the targets and the loss's
    normaliser."""
    validate.choice("precision", precision, PRECISIONS)
    low = 4 if precision == "fp32" else 2
    total = 8 * s * b + 8 * s  # indices
    total += 4 * s * b * h + 2 * 4 * s * b  # head LayerNorm
    total += low * s * b * h + (0 if precision == "fp32" else 2 * h * vocab)  # head Linear
    total += 4 * s * b * vocab + 8 * s * b + 4  # log_softmax output, targets, total weight
    if dropout:
        total += (1 if precision == "bf16-cuda" else 4) * s * b * h
    return total


def gpt_bytes(s: int, b: int, h: int, a: int, n_layer: int, vocab: int, precision: str = "fp32",
              dropout: bool = False) -> int:
    """Everything the course GPT's forward keeps for backward: n_layer blocks and the rest."""
    validate.positive_int("n_layer", n_layer)
    return n_layer * block_bytes(s, b, h, a, precision, dropout) + outside_blocks_bytes(s, b, h, vocab, precision,
                                                                                         dropout)


__all__ = ["PRECISIONS", "block_bytes", "block_terms", "gpt_bytes", "korthikanti_layer_bytes",
           "outside_blocks_bytes"]
