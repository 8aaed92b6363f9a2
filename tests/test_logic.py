"""LogicGateLayer, GroupSum, the gate encoding and the 4-coefficient gate function."""

import itertools

import pytest
import torch

from lightning_discrete import functional as LF
from lightning_discrete.nn.logic import (
    GATE_COEFFICIENTS,
    GATE_NAMES,
    NUM_GATES,
    GroupSum,
    LogicGateLayer,
    check_group_sum,
    gate_anf,
    gate_ids_from_anf,
    gate_ids_from_truth_table,
    gate_truth_table,
    group_sum,
    logic_gate,
)

# the 16 gates written out as Boolean functions, in Petersen et al.'s order
BOOL = [
    lambda a, b: 0,
    lambda a, b: a and b,
    lambda a, b: a and not b,
    lambda a, b: a,
    lambda a, b: (not a) and b,
    lambda a, b: b,
    lambda a, b: a != b,
    lambda a, b: a or b,
    lambda a, b: not (a or b),
    lambda a, b: a == b,
    lambda a, b: not b,
    lambda a, b: a or not b,
    lambda a, b: not a,
    lambda a, b: (not a) or b,
    lambda a, b: not (a and b),
    lambda a, b: 1,
]


def naive_gate(a, b, i):
    """Real-valued gate i as in difflogic's bin_op."""
    return [
        torch.zeros_like(a), a * b, a - a * b, a, b - a * b, b, a + b - 2 * a * b, a + b - a * b,
        1 - (a + b - a * b), 1 - (a + b - 2 * a * b), 1 - b, 1 - b + a * b, 1 - a, 1 - a + a * b,
        1 - a * b, torch.ones_like(a),
    ][i]


def naive_mixture(x, idx_a, idx_b, w):
    """The 16-term mixture sum_i w_i g_i(a, b); w is (out, 16) or (B, out, 16)."""
    a, b = x[:, idx_a], x[:, idx_b]
    return sum(w[..., i] * naive_gate(a, b, i) for i in range(16))


def test_all_gates_match_truth_tables():
    tt = gate_truth_table()
    assert len(GATE_NAMES) == NUM_GATES == len(BOOL) and GATE_COEFFICIENTS.shape == (NUM_GATES, 4)
    x = torch.tensor([[a, b] for a, b in itertools.product([0.0, 1.0], repeat=2)])
    layer = LogicGateLayer(2, 16, init="gaussian").eval()
    with torch.no_grad():
        layer.idx_a.copy_(torch.zeros(16, dtype=torch.long))
        layer.idx_b.copy_(torch.ones(16, dtype=torch.long))
        layer.gate_logits.copy_(10 * torch.eye(16))
    assert torch.equal(layer.gate_ids(), torch.arange(16))
    out = layer(x)  # (4, 16)
    for g in range(16):
        for r, (a, b) in enumerate(itertools.product([0, 1], repeat=2)):
            want = int(bool(BOOL[g](a, b)))
            assert out[r, g].item() == want, (GATE_NAMES[g], a, b)
            assert tt[g, 2 * a + b].item() == want
            c = GATE_COEFFICIENTS[g]
            assert c[0] + c[1] * a + c[2] * b + c[3] * a * b == want
            m0, m1, m2, m3 = gate_anf()[g].tolist()
            assert m0 ^ (m1 & a) ^ (m2 & b) ^ (m3 & a & b) == want


def test_gate_id_encodings_round_trip():
    ids = torch.arange(NUM_GATES)
    assert torch.equal(gate_ids_from_truth_table(gate_truth_table()), ids)
    assert torch.equal(gate_ids_from_anf(gate_anf()), ids)
    batch = torch.randint(0, NUM_GATES, (3, 5))
    assert torch.equal(gate_ids_from_truth_table(gate_truth_table()[batch]), batch)
    assert torch.equal(gate_ids_from_anf(gate_anf()[batch]), batch)
    assert gate_ids_from_truth_table(torch.tensor([1, 0, 0, 0])).item() == GATE_NAMES.index("NOT (A OR B)")
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        gate_ids_from_truth_table(torch.zeros(3))
    with pytest.raises(ValueError, match="only 0 and 1"):
        gate_ids_from_anf(torch.tensor([0, 2, 0, 0]))


def test_check_group_sum():
    assert check_group_sum(12, 4) == 3 and check_group_sum(None, 4) is None
    with pytest.raises(ValueError, match=r"number of neurons \(10\) to be divisible by `num_classes` \(4\)"):
        check_group_sum(10, 4)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="`num_classes` must be a positive integer"):
            check_group_sum(12, bad)
    with pytest.raises(ValueError, match="divisible"):
        group_sum(torch.zeros(2, 10), 4)


# "large": enough examples x neurons that the CPU path works on several chunks of neurons
@pytest.mark.parametrize("B, n_out", [(5, 9), (300, 1000)], ids=["small", "large"])
@pytest.mark.parametrize("per_example", [False, True])
def test_coefficient_form_equals_naive_mixture_value_and_grad(per_example, B, n_out):
    torch.manual_seed(0)
    n_in = 7
    x = torch.rand(B, n_in, dtype=torch.float64, requires_grad=True)
    ia, ib = torch.randint(n_in, (n_out,)), torch.randint(n_in, (n_out,))
    shape = (B, n_out, 16) if per_example else (n_out, 16)
    logits = torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    def fast(x, logits):
        return logic_gate(x, ia, ib, torch.softmax(logits, -1) @ GATE_COEFFICIENTS)

    def slow(x, logits):
        return naive_mixture(x, ia, ib, torch.softmax(logits, -1))

    y1, y2 = fast(x, logits), slow(x, logits)
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y1)
    g1 = torch.autograd.grad(y1, (x, logits), g)
    g2 = torch.autograd.grad(y2, (x, logits), g)
    for u, v in zip(g1, g2):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)
    if B * n_out < 100:
        assert torch.autograd.gradcheck(fast, (x, logits))


@pytest.mark.parametrize("estimator", ["decoupled_st", "identity_st", "softmax_st", "gumbel_softmax_st", "gumbel_softmax",
                                       "spigot", "reinmax", "gumbel_rao"])
def test_every_pathwise_estimator_trains(estimator):
    torch.manual_seed(1)
    layer = LogicGateLayer(8, 6, init="gaussian", estimator=estimator)
    x = torch.randint(0, 2, (4, 8)).float()
    y = layer(x)
    assert y.shape == (4, 6)
    if layer.estimator_spec.hard:
        assert set(y.unique().tolist()) <= {0.0, 1.0}
    y.sum().backward()
    assert layer.gate_logits.grad is not None and torch.isfinite(layer.gate_logits.grad).all()


def test_reinforce_is_per_example_with_surrogate():
    torch.manual_seed(2)
    layer = LogicGateLayer(8, 6, init="gaussian", estimator="reinforce", num_samples=2)
    layer.record(True)
    x = torch.randint(0, 2, (2, 4, 8)).float().reshape(8, 8)
    y = layer(x)
    assert layer.last_indices.shape == (8, 6)
    losses = y.sum(1)
    layer.surrogate_loss(losses).backward()
    assert layer.gate_logits.grad.abs().sum() > 0


def test_observation_and_per_example_sampling():
    torch.manual_seed(3)
    layer = LogicGateLayer(8, 6, init="gaussian", tau_f=1.0, tau_b=1.0)
    layer.record(True, grads=True)
    x = torch.rand(5, 8)
    layer(x).sum().backward()
    assert layer.last_indices.shape == (1, 6)
    assert torch.equal(layer.last_logit_grad, layer.gate_logits.grad)
    layer.sample_per_example = True
    layer(x).sum().backward()
    assert layer.last_indices.shape == (5, 6)
    layer.eval()
    layer(x)
    assert torch.equal(layer.last_indices, layer.gate_ids().unsqueeze(0))


def test_eval_argmax_is_boolean_and_deterministic():
    torch.manual_seed(4)
    layer = LogicGateLayer(10, 20, init="gaussian", wiring="unique").eval()
    x = torch.randint(0, 2, (7, 10)).float()
    y = layer(x)
    assert torch.equal(y, layer(x)) and set(y.unique().tolist()) <= {0.0, 1.0}
    ids = layer.gate_ids()
    tt = gate_truth_table()
    a, b = x[:, layer.idx_a].long(), x[:, layer.idx_b].long()
    assert torch.equal(y.long(), tt[ids.expand_as(a), 2 * a + b])


def test_residual_init_is_identity_in_eval():
    layer = LogicGateLayer(6, 6, init="residual").eval()
    x = torch.rand(3, 6)
    assert torch.equal(layer.gate_ids(), torch.full((6,), 3))
    assert torch.equal(layer(x), x[:, layer.idx_a])


def test_unique_wiring_properties():
    layer = LogicGateLayer(31, 40, wiring="unique", generator_seed=0)
    a, b = layer.idx_a.tolist(), layer.idx_b.tolist()
    assert set(a) | set(b) == set(range(31))
    assert all(i != j for i, j in zip(a, b))
    assert len({frozenset(p) for p in zip(a, b)}) == 40
    dense = LogicGateLayer(6, 15, wiring="unique", generator_seed=0)  # every pair once
    assert len({frozenset(p) for p in zip(dense.idx_a.tolist(), dense.idx_b.tolist())}) == 15
    again = LogicGateLayer(31, 40, wiring="unique", generator_seed=0)
    assert torch.equal(again.idx_a, layer.idx_a) and torch.equal(again.idx_b, layer.idx_b)


def test_random_wiring_uses_every_input():
    layer = LogicGateLayer(50, 30, generator_seed=1)
    assert set(layer.idx_a.tolist()) | set(layer.idx_b.tolist()) == set(range(50))


def test_state_dict_round_trip_reproduces_outputs():
    torch.manual_seed(5)
    src = LogicGateLayer(12, 18, init="gaussian", wiring="unique", tau_f=0.5, tau_b=2.0).eval()
    dst = LogicGateLayer(12, 18, init="residual", wiring="unique", tau_f=1.0, tau_b=1.0).eval()
    sd = src.state_dict()
    assert {"idx_a", "idx_b", "gate_logits", "tau_f", "tau_b"} <= set(sd)
    dst.load_state_dict(sd)
    x = torch.randint(0, 2, (9, 12)).float()
    assert torch.equal(src(x), dst(x))
    src.eval_mode = dst.eval_mode = "soft"
    assert torch.equal(src(x), dst(x))
    assert float(dst.tau_f) == 0.5 and float(dst.tau_b) == 2.0


def test_construction_errors():
    with pytest.raises(ValueError, match="out_features.*in_features / 2"):
        LogicGateLayer(100, 49, wiring="unique")
    LogicGateLayer(100, 50, wiring="unique")
    with pytest.raises(ValueError, match="wiring"):
        LogicGateLayer(4, 4, wiring="ring")
    with pytest.raises(ValueError, match="init"):
        LogicGateLayer(4, 4, init="zeros")
    with pytest.raises(ValueError, match="unknown `estimator` 'nope'"):
        LogicGateLayer(4, 4, estimator="nope")
    with pytest.raises(ValueError, match="divisible"):
        GroupSum(3, in_features=10)
    with pytest.raises(ValueError, match="divisible"):
        GroupSum(3)(torch.zeros(2, 10))
    with pytest.raises(ValueError, match="tau"):
        GroupSum(2, tau=0.0)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        LogicGateLayer(4, 4)(torch.zeros(2, 5))


def test_group_sum():
    x = torch.arange(12.0).reshape(2, 6)
    out = GroupSum(3, tau=2.0, in_features=6)(x)
    assert torch.equal(out, torch.tensor([[0.5, 2.5, 4.5], [6.5, 8.5, 10.5]]))


def test_memory_is_linear_in_batch_times_out():
    """Saved tensors of the gate function: the input and the coefficients only."""
    x = torch.rand(32, 40, requires_grad=True)
    c = torch.randn(50, 4, requires_grad=True)
    ia, ib = torch.randint(40, (50,)), torch.randint(40, (50,))
    saved = []

    def pack(t):
        saved.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logic_gate(x, ia, ib, c).sum().backward()
    assert sum(torch.Size(s).numel() for s in saved) <= 32 * 40 + 50 * 4 + 2 * 50


def test_torch_compile_friendly():
    torch._dynamo.reset()
    layer = LogicGateLayer(8, 6, init="gaussian")
    x = torch.rand(4, 8)

    def f(x):
        return logic_gate(x, layer.idx_a, layer.idx_b, torch.softmax(layer.gate_logits, -1) @ layer.gate_coefficients)

    compiled = torch.compile(f, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), f(x))
