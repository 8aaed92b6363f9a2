"""Netlists of hard logic-gate networks and their simplification.

The argmax (eval-mode) logic-gate network is a Boolean circuit.
:func:`simplify_logic_network` turns it into a :class:`LogicNetlist` of real
two-input gates, the input of the C export (:mod:`lightning_discrete.nn.logic_c`):

* every gate's truth table (bit order: :func:`~lightning_discrete.nn.logic.gate_truth_table`)
  is specialised to its actual inputs: constant inputs are folded (constants
  propagate), a gate reading the same signal twice becomes a function of one
  signal, and negations of its inputs are absorbed into its table;
* gates that compute a constant, a wire (``A``, ``B``) or a NOT become references
  to an existing signal, possibly negated, and cost nothing;
* the remaining gates are normalised to ``AND``, ``A AND NOT B``, ``XOR`` or ``OR``
  (an output negation is carried by the reference); with ``simplify=True``
  identical gates are merged and gates not reachable from the GroupSum outputs
  are removed.

See "Layers" in ``docs/design.md`` for where the inference paths sit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .logic import GroupSum, LogicGateLayer, check_group_sum, gate_truth_table, group_sum
from .logic_packed import PackedLogicNetwork

__all__ = ["NETLIST_OPS", "LogicNetlist", "simplify_logic_network"]

#: The gate operations of a :class:`LogicNetlist` (each needs both of its inputs).
NETLIST_OPS: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "and": lambda a, b: a & b,
    "andn": lambda a, b: a & ~b,
    "xor": lambda a, b: a ^ b,
    "or": lambda a, b: a | b,
}
_COMMUTATIVE = ("and", "xor", "or")

# A real gate, once its output is negated so that f(0, 0) = 0, by (f01, f10, f11):
# its op and whether its inputs swap.
_NORMAL_FORMS = {
    (0, 0, 1): ("and", False),
    (0, 1, 0): ("andn", False),
    (1, 0, 0): ("andn", True),
    (1, 1, 0): ("xor", False),
    (1, 1, 1): ("or", False),
}


def _absorb_negations(f: Sequence[int], neg_a: int, neg_b: int) -> Tuple[int, ...]:
    """Truth table (index ``2a + b``) of ``f(a ^ neg_a, b ^ neg_b)``."""
    return tuple(f[2 * (a ^ neg_a) + (b ^ neg_b)] for a in (0, 1) for b in (0, 1))


# [gate id][neg_a][neg_b]: truth table (f00, f01, f10, f11) of the gate on (possibly) negated inputs
_TRUTH_TABLES = [
    [[_absorb_negations(f, na, nb) for nb in (0, 1)] for na in (0, 1)] for f in gate_truth_table().tolist()
]


@dataclass
class LogicNetlist:
    """A hard logic-gate network as a netlist of two-input gates.

    Signals are literals ``2 * node + negated``; node 0 is the constant 0 (so
    literal 0 is FALSE and 1 is TRUE), nodes ``1..in_features`` are the inputs and
    node ``in_features + 1 + i`` is ``gates[i]``.

    Args:
        in_features: inputs per example.
        gates: ``(op, lit_a, lit_b)`` with ``op`` a key of :data:`NETLIST_OPS`, in
            topological order (a gate reads inputs and earlier gates only).
        outputs: one literal per neuron of the last layer (divisible into
            ``num_classes`` groups).
        num_classes: GroupSum groups.
        tau: GroupSum divisor.
        stats: counts of the original neurons by what became of them (filled by
            :func:`simplify_logic_network`).

    Raises:
        ValueError: the outputs are not divisible into ``num_classes`` groups.

    Examples:
        >>> net = LogicNetlist(2, gates=[("xor", 2, 4)], outputs=[6, 7], num_classes=2, tau=1.0)
        >>> net.num_gates
        1
        >>> net.evaluate(torch.tensor([[0, 1], [1, 1]]))  # XOR and XNOR of the two inputs
        tensor([[1., 0.],
                [0., 1.]])
    """

    in_features: int
    gates: List[Tuple[str, int, int]]
    outputs: List[int]
    num_classes: int
    tau: float
    stats: Dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_group_sum(len(self.outputs), self.num_classes)

    @property
    def num_gates(self) -> int:
        """Number of gates in the netlist."""
        return len(self.gates)

    def evaluate(self, x: Tensor) -> Tensor:
        """Evaluate the netlist gate by gate (a reference for the compiled paths).

        Args:
            x: ``(B, in_features)`` Boolean examples; nonzero (``> 0.5`` for floats) means 1.

        Returns:
            ``(B, num_classes)`` scores: the ones of every output group over ``tau``,
            in ``x``'s float dtype (the default dtype for integer ``x``).

        Raises:
            ValueError: ``x`` has another shape.
        """
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected examples of shape (B, {self.in_features}), got {tuple(x.shape)}")
        bits = (x > 0.5) if x.is_floating_point() else (x != 0)
        values = [torch.zeros_like(bits[:, 0]), *bits.t()]

        def signal(lit: int) -> Tensor:
            v = values[lit >> 1]
            return ~v if lit & 1 else v

        for op, a, b in self.gates:
            values.append(NETLIST_OPS[op](signal(a), signal(b)))
        out = torch.stack([signal(lit) for lit in self.outputs], 1)
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return group_sum(out.to(dtype), self.num_classes, self.tau)


def _one_signal(node: int, h0: int, h1: int) -> Tuple[str, int]:
    """``h(v)`` of one node's value ``v`` (``h0 = h(0)``, ``h1 = h(1)``) as a literal."""
    if h0 == h1 or node == 0:
        return "constant", h0
    return "wire", 2 * node + h0  # h0 = 1, h1 = 0: NOT


def _fold(gate_id: int, lit_a: int, lit_b: int):
    """Specialise gate ``gate_id`` to its input literals.

    Returns ``("constant" | "wire", literal)`` when no gate is needed, else
    ``("gate", (op, lit_a, lit_b), negated)`` in normal form.
    """
    f00, f01, f10, f11 = _TRUTH_TABLES[gate_id][lit_a & 1][lit_b & 1]
    x, y = lit_a >> 1, lit_b >> 1
    if x == 0:  # a = 0
        return _one_signal(y, f00, f01)
    if y == 0:  # b = 0
        return _one_signal(x, f00, f10)
    if x == y:  # a = b
        return _one_signal(x, f00, f11)
    if f00 == f01 and f10 == f11:  # independent of b
        return _one_signal(x, f00, f10)
    if f00 == f10 and f01 == f11:  # independent of a
        return _one_signal(y, f00, f01)
    neg = f00
    op, swap = _NORMAL_FORMS[(f01 ^ neg, f10 ^ neg, f11 ^ neg)]
    a, b = (2 * y, 2 * x) if swap else (2 * x, 2 * y)
    if op in _COMMUTATIVE and a > b:
        a, b = b, a
    return "gate", (op, a, b), neg


def _remove_dead(gates: List[Tuple[str, int, int]], outputs: List[int], base: int):
    """Drop the gates the outputs do not reach; renumber the rest (``base``: node of gate 0)."""
    live = [False] * len(gates)
    for lit in outputs:
        if (lit >> 1) >= base:
            live[(lit >> 1) - base] = True
    for i in range(len(gates) - 1, -1, -1):
        if live[i]:
            for lit in gates[i][1:]:
                if (lit >> 1) >= base:
                    live[(lit >> 1) - base] = True
    remap: Dict[int, int] = {}

    def renumber(lit: int) -> int:
        node = lit >> 1
        return lit if node < base else 2 * remap[node] + (lit & 1)

    kept: List[Tuple[str, int, int]] = []
    for i, (op, a, b) in enumerate(gates):
        if live[i]:
            remap[base + i] = base + len(kept)
            kept.append((op, renumber(a), renumber(b)))
    return kept, [renumber(lit) for lit in outputs]


def simplify_logic_network(
    layers: Union[PackedLogicNetwork, Sequence[LogicGateLayer]],
    readout: Optional[GroupSum] = None,
    simplify: bool = True,
) -> LogicNetlist:
    """The argmax network of ``layers`` as a simplified netlist (see the module docstring).

    Args:
        layers: trained :class:`LogicGateLayer` s in order (or a :class:`PackedLogicNetwork`).
        readout: the :class:`GroupSum` after the last layer (not needed for a packed network).
        simplify: ``False`` skips merging duplicates and dead-gate removal (for
            comparison); constants, wires and NOTs are always folded.

    Returns:
        The :class:`LogicNetlist`; its ``stats`` count the original neurons
        (``total``) that became a constant, a wire or NOT (``wire``), a duplicate
        (``merged``) or unreachable (``dead``), the gates ``kept`` and ``removed``
        (``total - kept``).

    Raises:
        ValueError: ``readout`` missing for a list of layers, or the layers do not
            chain or do not fit the readout (:meth:`PackedLogicNetwork.from_layers`).

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> layers = [LogicGateLayer(6, 8, init="gaussian"), LogicGateLayer(8, 8)]
        >>> readout = GroupSum(2)
        >>> net = simplify_logic_network(layers, readout)
        >>> net.num_gates <= 8, net.stats["total"]
        (True, 16)
        >>> x = torch.randint(0, 2, (32, 6)).float()
        >>> torch.equal(net.evaluate(x), torch.nn.Sequential(*layers, readout).eval()(x))
        True
    """
    if not isinstance(layers, PackedLogicNetwork):
        if readout is None:
            raise ValueError("`readout` (the GroupSum) is required with a list of layers")
        layers = PackedLogicNetwork.from_layers(layers, readout)
    base = layers.in_features + 1
    gates: List[Tuple[str, int, int]] = []
    node_of: Dict[Tuple[str, int, int], int] = {}
    stats = dict(total=0, constant=0, wire=0, merged=0, dead=0)
    lits = [2 * node for node in range(1, base)]
    for idx_a, idx_b, ids in layers.layer_specs():
        new_lits = []
        for ja, jb, g in zip(idx_a.tolist(), idx_b.tolist(), ids.tolist()):
            stats["total"] += 1
            kind, *res = _fold(g, lits[ja], lits[jb])
            if kind != "gate":
                stats[kind] += 1
                new_lits.append(res[0])
                continue
            key, neg = res
            if simplify and key in node_of:
                stats["merged"] += 1
            else:
                gates.append(key)
                node_of[key] = base + len(gates) - 1
            new_lits.append(2 * node_of[key] + neg)
        lits = new_lits
    outputs = lits
    if simplify:
        kept, outputs = _remove_dead(gates, outputs, base)
        stats["dead"] = len(gates) - len(kept)
        gates = kept
    stats["kept"] = len(gates)
    stats["removed"] = stats["total"] - len(gates)
    return LogicNetlist(layers.in_features, gates, outputs, layers.num_classes, layers.tau, stats)
