import contextlib

import pytest
import torch
import torch.nn as nn

from helpers import core, memory


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_ledger_matches_hand_computed_bytes():
    net = tiny_net()
    x = torch.randn(5, 4)
    ledger = memory.memory_ledger(net, lambda: net(x).sum(), torch.optim.Adam(net.parameters()))
    n_params = 4 * 3 + 3 + 3 * 2 + 2  # 23 floats
    assert ledger.parameters == n_params * 4 == 92
    assert ledger.gradients == 92
    # Adam: exp_avg + exp_avg_sq per parameter (2 x 92) + one fp32 `step` scalar per tensor (4 x 4)
    assert ledger.optimizer_state == 2 * 92 + 4 * 4
    # saved for backward: x for the first matmul (5x4 fp32 = 80 B); the ReLU output (5x3 = 60 B),
    # which the second matmul saves too (same storage, counted once); weights are excluded.
    assert ledger.activations == 80 + 60
    assert ledger.total == 92 + 92 + 200 + 140


def test_sgd_without_momentum_has_no_state():
    net = tiny_net()
    x = torch.randn(5, 4)
    ledger = memory.memory_ledger(net, lambda: net(x).sum(), torch.optim.SGD(net.parameters(), lr=0.1))
    assert ledger.optimizer_state == 0


def test_saved_tensors_are_named_by_module_and_deduplicated():
    net = tiny_net()
    x = torch.randn(5, 4)
    with memory.record_saved_tensors(net) as log:
        net(x).sum()
    assert log.by_module() == {"0": 80, "1": 60}
    assert len(log.records) > len(log.unique)  # the ReLU output was saved twice
    assert log.by_dtype() == {"float32": 140}


def test_bf16_halves_saved_activations_of_linear_layers():
    net = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    x = torch.randn(512, 64)
    fp32 = memory.saved_activation_bytes(net, lambda: net(x).sum())

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x).sum()

    low = memory.saved_activation_bytes(net, bf16)
    # activations halve; autocast also saves the bf16 copy of the second weight (64 x 64 x 2 B),
    # needed for the input gradient of layer 2 (layer 1's input needs no gradient)
    assert fp32 == 2 * 512 * 64 * 4
    assert low == fp32 // 2 + 64 * 64 * 2


def test_loss_fn_must_return_scalar():
    net = tiny_net()
    with pytest.raises(TypeError, match="scalar"):
        memory.memory_ledger(net, lambda: net(torch.randn(5, 4)))


def test_cuda_peak_needs_cuda():
    if torch.cuda.is_available():
        assert memory.cuda_peak_bytes(lambda: torch.ones(1024, device="cuda")) >= 4096
    else:
        with pytest.raises(ValueError, match="CUDA"):
            memory.cuda_peak_bytes(lambda: None)


def test_offload_to_host_moves_every_saved_tensor_and_keeps_gradients():
    from helpers import checkpointing as ck

    task = core.char_task()
    torch.manual_seed(0)
    m = core.GPT(task.config(n_layer=2, n_embd=32, n_head=4, block_size=32))
    x, y = task.batch(4, 32, torch.Generator().manual_seed(0))
    results = {}
    for offload in (False, True):
        m.zero_grad(set_to_none=True)
        with memory.track_live_tensors(m) as tr:
            with memory.offload_to_host(m) if offload else contextlib.nullcontext() as host:
                loss = ck.gpt_forward(m, x, y)[1]
            tr.mark("forward end")
            loss.backward()
            del loss
        results[offload] = (tr.log.bytes_at("forward end"), host, [p.grad.clone() for p in m.parameters()])
    (plain_end, _, g0), (off_end, host, g1) = results[False], results[True]
    assert all(torch.equal(a, b) for a, b in zip(g0, g1, strict=True))  # same gradients, bit for bit
    assert off_end < 0.02 * plain_end  # nothing saved stays on the "device"
    assert host.bytes_in == host.bytes_out > plain_end  # every packed tensor goes out and back, duplicates included
    assert host.parameter_bytes > 0
