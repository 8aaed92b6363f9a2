"""Packed (bit-parallel) inference, netlist simplification and exported-C inference
of hard logic-gate networks."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from lightning_discrete.nn.logic import GroupSum, LogicGateLayer
from lightning_discrete.nn.logic_c import CCompilerNotFoundError, compile_c, export_c, find_c_compiler
from lightning_discrete.nn.logic_packed import PackedLogicNetwork, pack_bits, unpack_bits
from lightning_discrete.nn.netlist import LogicNetlist, simplify_logic_network

BATCHES = [1, 63, 64, 65, 1000]
needs_cc = pytest.mark.skipif(find_c_compiler() is None, reason="no C compiler (cc/gcc/clang) on PATH")


def random_net(seed=0, n_in=24, width=60, depth=3, classes=3, tau=3.0):
    torch.manual_seed(seed)
    layers = [LogicGateLayer(n_in if i == 0 else width, width, init="gaussian",
                             wiring="unique" if i % 2 else "random") for i in range(depth)]
    readout = GroupSum(classes, tau=tau)
    return layers, readout, torch.nn.Sequential(*layers, readout).eval()


@pytest.fixture(scope="module")
def trained_parity_net(parity6):
    """3-bit parity of 6 inputs, learned with plain torch in 300 steps."""
    torch.manual_seed(0)
    x, y = parity6
    kw = dict(init="gaussian", tau_f=0.0, tau_b=1.0)
    layers = [LogicGateLayer(6, 64, **kw), LogicGateLayer(64, 64, **kw), LogicGateLayer(64, 64, **kw)]
    readout = GroupSum(2, tau=2.0)
    net = torch.nn.Sequential(*layers, readout)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(300):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return layers, readout, net, x, y


def test_pack_unpack_round_trip():
    for b in BATCHES:
        x = torch.randint(0, 2, (b, 70), dtype=torch.uint8)
        w = pack_bits(x)
        assert w.shape == (70, (b + 63) // 64) and w.dtype == torch.int64
        assert torch.equal(unpack_bits(w, b), x)
    x = torch.zeros(64, 1)
    x[63] = 1
    assert pack_bits(x).item() == -(2**63)  # bit 63 is the sign bit


@pytest.mark.parametrize("batch", BATCHES)
def test_packed_equals_float_hard_network(batch):
    layers, readout, net = random_net()
    packed = PackedLogicNetwork.from_layers(layers, readout)
    x = torch.randint(0, 2, (batch, 24)).float()
    assert torch.equal(packed(x), net(x))
    counts = packed.forward_words(pack_bits(x), batch)
    assert torch.equal(counts.float() / readout.tau, net(x))


def test_packed_state_dict_and_specs():
    layers, readout, net = random_net(seed=1)
    packed = PackedLogicNetwork.from_layers(layers, readout)
    for (ia, ib, ids), layer in zip(packed.layer_specs(), layers):
        assert torch.equal(ids, layer.gate_ids()) and torch.equal(ia, layer.idx_a)
    other = PackedLogicNetwork(24, [(l.idx_a, l.idx_b, torch.zeros_like(l.idx_a)) for l in layers], 3, 3.0)
    other.load_state_dict(packed.state_dict())
    x = torch.randint(0, 2, (100, 24)).float()
    assert torch.equal(other(x), net(x))


def test_packed_errors():
    layers, readout, _ = random_net()
    with pytest.raises(ValueError, match="divisible"):
        PackedLogicNetwork.from_layers(layers, GroupSum(7))
    with pytest.raises(ValueError, match="do not chain"):
        PackedLogicNetwork.from_layers([layers[0], LogicGateLayer(5, 60)], readout)


def test_packed_equals_trained_network(trained_parity_net):
    layers, readout, net, x, y = trained_parity_net
    assert (net(x).argmax(1) == y).float().mean() == 1.0  # learned exactly
    packed = PackedLogicNetwork.from_layers(layers, readout)
    for b in BATCHES:
        xb = x[torch.randint(0, 64, (b,))]
        assert torch.equal(packed(xb), net(xb))


def test_netlist_evaluate_by_hand():
    # inputs x1, x2 (nodes 1, 2); gate 0 (node 3) = x1 AND NOT x2; outputs: gate 0, NOT x1, TRUE, x2
    net = LogicNetlist(2, [("andn", 2, 4)], outputs=[6, 3, 1, 4], num_classes=2, tau=2.0)
    x = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    want = torch.tensor([[0 + 1, 1 + 0], [0 + 1, 1 + 1], [1 + 0, 1 + 0], [0 + 0, 1 + 1]]) / 2.0
    assert torch.equal(net.evaluate(x), want)
    with pytest.raises(ValueError, match="divisible"):
        LogicNetlist(2, [], outputs=[2, 4, 2], num_classes=2, tau=1.0)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        net.evaluate(torch.zeros(4, 3))


def test_simplification_keeps_outputs_and_removes_gates():
    torch.manual_seed(2)
    layers, readout, net = random_net(seed=2, n_in=10, width=30, depth=3)
    with torch.no_grad():  # plant constants, wires and NOTs
        for layer in layers:
            ids = torch.tensor([0, 15, 3, 5, 10, 12])[torch.randint(6, (30,))]
            keep = torch.rand(30) < 0.5
            layer.gate_logits[keep] = 10 * F.one_hot(ids[keep], 16).float()
    netlist = simplify_logic_network(layers, readout)
    st = netlist.stats
    assert st["removed"] > 0 and st["constant"] > 0 and st["wire"] > 0
    assert st["removed"] == st["total"] - netlist.num_gates
    assert {op for op, _, _ in netlist.gates} <= {"and", "andn", "xor", "or"}
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=10)))
    assert torch.equal(netlist.evaluate(x), net(x))
    raw = simplify_logic_network(layers, readout, simplify=False)
    assert raw.num_gates >= netlist.num_gates and raw.stats["merged"] == raw.stats["dead"] == 0
    assert torch.equal(raw.evaluate(x), net(x))
    packed = PackedLogicNetwork.from_layers(layers, readout)
    assert simplify_logic_network(packed) == netlist


def test_simplification_of_a_pure_wire_network():
    layers = [LogicGateLayer(8, 8, init="residual"), LogicGateLayer(8, 8, init="residual")]
    netlist = simplify_logic_network(layers, GroupSum(2))
    assert netlist.num_gates == 0 and netlist.stats["removed"] == 16


def test_simplification_merges_duplicates_and_drops_dead_gates():
    layer = LogicGateLayer(3, 4, init="gaussian")
    with torch.no_grad():
        layer.idx_a.copy_(torch.tensor([0, 1, 0, 0]))
        layer.idx_b.copy_(torch.tensor([1, 0, 2, 1]))
        # a AND b, b AND a (the same gate), a XOR c, NOT (a AND b) (a negated reference)
        layer.gate_logits.copy_(10 * F.one_hot(torch.tensor([1, 1, 6, 14]), 16).float())
    top = LogicGateLayer(4, 2, init="gaussian")
    with torch.no_grad():  # reads gates 0 and 3 only: the XOR is dead
        top.idx_a.copy_(torch.tensor([0, 3]))
        top.idx_b.copy_(torch.tensor([3, 0]))
        top.gate_logits.copy_(10 * F.one_hot(torch.tensor([3, 3]), 16).float())
    netlist = simplify_logic_network([layer, top], GroupSum(1))
    assert netlist.gates == [("and", 2, 4)]
    assert netlist.stats == dict(total=6, constant=0, wire=2, merged=2, dead=1, kept=1, removed=5)
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    assert torch.equal(netlist.evaluate(x), GroupSum(1)(top.eval()(layer.eval()(x))))


def test_simplification_errors():
    layers, readout, _ = random_net()
    with pytest.raises(ValueError, match="readout"):
        simplify_logic_network(layers)
    with pytest.raises(ValueError, match="do not chain"):
        simplify_logic_network([layers[0], LogicGateLayer(5, 60)], readout)
    with pytest.raises(ValueError, match="divisible"):
        simplify_logic_network(layers, GroupSum(7))


def test_missing_compiler_is_a_clear_error(tmp_path, monkeypatch):
    layers, readout, _ = random_net()
    rep = export_c(layers, readout, tmp_path / "net.c")
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CCompilerNotFoundError, match="no C compiler"):
        compile_c(rep)


@needs_cc
def test_c_equals_packed_and_float(tmp_path):
    layers, readout, net = random_net(seed=3)
    packed = PackedLogicNetwork.from_layers(layers, readout)
    rep = export_c(layers, readout, tmp_path / "net.c")
    assert rep.num_removed > 0 and rep.num_gates + rep.num_removed == rep.num_neurons
    lib = compile_c(rep)
    assert (lib.in_features, lib.num_classes, lib.num_gates) == (24, 3, rep.num_gates)
    for b in BATCHES:
        x = torch.randint(0, 2, (b, 24)).float()
        words = pack_bits(x)
        assert torch.equal(lib.forward_words(words, b), packed.forward_words(words, b))
        assert torch.equal(lib(x), net(x))
    # unsimplified export, and export of a netlist, give the same
    lib_raw = compile_c(export_c(layers, readout, tmp_path / "raw.c", simplify=False))
    x = torch.randint(0, 2, (300, 24)).float()
    assert torch.equal(lib_raw(x), net(x))
    netlist = simplify_logic_network(layers, readout)
    rep_net = export_c(netlist, None, tmp_path / "netlist.c")
    assert (rep_net.num_gates, rep_net.num_removed) == (rep.num_gates, rep.num_removed)
    assert torch.equal(compile_c(rep_net)(x), net(x))


@needs_cc
def test_c_equals_trained_network(trained_parity_net, tmp_path):
    layers, readout, net, x, y = trained_parity_net
    rep = export_c(layers, readout, tmp_path / "parity.c")
    assert rep.num_removed > 0
    lib = compile_c(rep, output=tmp_path / "parity.so")
    for b in BATCHES:
        xb = x[torch.randint(0, 64, (b,))]
        assert torch.equal(lib(xb), net(xb))
    assert (lib(x).argmax(1) == y).all()
