import pytest
import torch

from helpers import core


@pytest.fixture(scope="module")
def task():
    return core.char_task()


def test_shapes_and_layers(task):
    cfg = task.config(n_layer=3, n_embd=32, n_head=4, block_size=16)
    m = core.GPT(cfg)
    x, y = task.batch(4, 16, torch.Generator().manual_seed(0))
    logits, loss = m(x, y)
    assert logits.shape == (4, 16, task.tokenizer.vocab_size)
    assert loss.ndim == 0 and abs(loss.item() - torch.log(torch.tensor(27.0)).item()) < 0.3
    layers = m.layers()
    assert len(layers) == cfg.n_layer + 2 and isinstance(m.blocks, torch.nn.ModuleList)
    h = x
    for layer in layers:  # the flat list computes the same function as forward()
        h = layer(h)
    torch.testing.assert_close(h, logits)


def test_manual_and_sdpa_attention_agree(task):
    cfg = task.config(n_layer=2, block_size=16)
    a = core.GPT(cfg)
    b = core.GPT(task.config(n_layer=2, block_size=16, attention="sdpa"))
    b.load_state_dict(a.state_dict())
    x, _ = task.batch(2, 16, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a(x)[0], b(x)[0], atol=1e-5, rtol=1e-5)


def test_causality(task):
    m = core.GPT(task.config(block_size=16)).eval()
    x, _ = task.batch(1, 16, torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[0, -1] = (x2[0, -1] + 1) % 27
    torch.testing.assert_close(m(x)[0][:, :-1], m(x2)[0][:, :-1])


def test_model_learns_the_task(task):
    torch.manual_seed(0)
    m = core.GPT(task.config(n_layer=2, block_size=32))
    before = core.val_loss(m, task, batches=2)
    core.train(m, task, steps=60, batch_size=16)
    after = core.val_loss(m, task, batches=2)
    assert after < 0.75 * before


def test_tokenizer_roundtrip_and_errors(task):
    tok = task.tokenizer
    assert tok.decode(tok.encode("the cat")) == "the cat"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("THE")


@pytest.mark.parametrize("kwargs, match", [
    ({"n_layer": 0}, "n_layer"), ({"n_embd": 30, "n_head": 4}, "divisible"),
    ({"dropout": 1.0}, "dropout"), ({"attention": "flash"}, "attention"),
])
def test_config_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        core.GPTConfig(**kwargs)


def test_sequence_too_long(task):
    m = core.GPT(task.config(block_size=8))
    with pytest.raises(ValueError, match="block_size"):
        m(torch.zeros(1, 9, dtype=torch.long))
