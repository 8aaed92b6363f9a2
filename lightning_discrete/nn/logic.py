"""Differentiable logic-gate layers (Petersen et al., 2022) and the GroupSum readout.

Each neuron of a :class:`LogicGateLayer` reads two fixed inputs ``a`` and ``b`` and
chooses one of the 16 two-input Boolean functions.  The choice is a categorical
variable over 16 gates with logits ``gate_logits`` ``(out_features, 16)``; any
estimator of :data:`lightning_discrete.functional.ESTIMATORS` turns the logits into
gate weights ``w`` (exact one-hots for hard estimators, soft mixtures for relaxed
ones); see "Estimator maths" in ``docs/design.md``.

This module is the one home of the gate encoding that every other logic module
(``logic_packed``, ``netlist``, ``logic_c``) and the gate monitor use:
:data:`NUM_GATES`, :data:`GATE_NAMES`, the truth-table bit order
(:func:`gate_truth_table` and its inverse :func:`gate_ids_from_truth_table`), the
algebraic normal form of the bit-packed path (:func:`gate_anf`,
:func:`gate_ids_from_anf`) and the GroupSum shape check (:func:`check_group_sum`).

Every gate is multilinear in ``(a, b)``: ``g(a, b) = c0 + c1 a + c2 b + c3 ab`` with
the 4 coefficients given by :data:`GATE_COEFFICIENTS` (``16 x 4``).  A mixture
``sum_i w_i g_i(a, b)`` is therefore ``c0 + c1 a + c2 b + c3 ab`` with
``c = w @ GATE_COEFFICIENTS``, so the layer never materialises the 16 gate outputs
per example: :func:`logic_gate` evaluates it with a custom autograd function that
saves only its input and the ``(out, 4)`` coefficients (memory ``O(B x in)``
instead of ``O(B x out x 16)``) and recomputes the two gathers in backward.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor, nn
from typing_extensions import override

from .bottleneck import DiscreteBottleneck

__all__ = [
    "NUM_GATES",
    "GATE_NAMES",
    "GATE_COEFFICIENTS",
    "PASS_THROUGH_GATE",
    "gate_truth_table",
    "gate_ids_from_truth_table",
    "gate_anf",
    "gate_ids_from_anf",
    "check_group_sum",
    "logic_gate",
    "group_sum",
    "LogicGateLayer",
    "GroupSum",
]

#: Number of two-input Boolean functions (gate ids ``0..15``).
NUM_GATES = 16

#: The 16 two-input Boolean functions in the order of Petersen et al. (2022):
#: ``GATE_NAMES[g]`` names gate id ``g`` (bit order: :func:`gate_truth_table`).
GATE_NAMES = (
    "FALSE",
    "A AND B",
    "A AND NOT B",
    "A",
    "NOT A AND B",
    "B",
    "A XOR B",
    "A OR B",
    "NOT (A OR B)",
    "NOT (A XOR B)",
    "NOT B",
    "A OR NOT B",
    "NOT A",
    "NOT A OR B",
    "NOT (A AND B)",
    "TRUE",
)

#: Gate id of the pass-through gate ``A`` (favoured by the residual initialisation).
PASS_THROUGH_GATE = 3


def _check_table(table: Tensor, name: str) -> Tensor:
    table = torch.as_tensor(table)
    if table.dim() < 1 or table.shape[-1] != 4:
        raise ValueError(f"`{name}` must have shape (..., 4), got {tuple(table.shape)}")
    table = table.long()
    if not bool(((table == 0) | (table == 1)).all()):
        raise ValueError(f"`{name}` must hold only 0 and 1")
    return table


def gate_truth_table() -> Tensor:
    """The truth tables of the 16 gates: the definition of the gate-id bit order.

    Gate ``g``'s output for inputs ``(a, b)`` is bit ``3 - (2a + b)`` of ``g``: the
    id written as 4 binary digits lists the outputs for ``(a, b) = (0, 0), (0, 1),
    (1, 0), (1, 1)``.  :func:`gate_ids_from_truth_table` is the inverse.

    Returns:
        ``(16, 4)`` long tensor in {0, 1}: ``[g, 2a + b]`` is gate ``g``'s output for ``(a, b)``.

    Examples:
        >>> tt = gate_truth_table()
        >>> tt.shape
        torch.Size([16, 4])
        >>> GATE_NAMES[6], tt[6].tolist()
        ('A XOR B', [0, 1, 1, 0])
    """
    g = torch.arange(NUM_GATES).unsqueeze(1)
    return (g >> (3 - torch.arange(4))) & 1


def gate_ids_from_truth_table(table: Tensor) -> Tensor:
    """Gate ids of truth tables (the inverse of :func:`gate_truth_table`).

    Args:
        table: ``(..., 4)`` integer tensor in {0, 1}; ``table[..., 2a + b]`` is the
            output for inputs ``(a, b)``.

    Returns:
        ``(...)`` long gate ids.

    Raises:
        ValueError: ``table`` has another last dimension or values other than 0 and 1.

    Examples:
        >>> gate_ids_from_truth_table(torch.tensor([[0, 0, 0, 1], [0, 1, 1, 1]]))
        tensor([1, 7])
        >>> torch.equal(gate_ids_from_truth_table(gate_truth_table()), torch.arange(NUM_GATES))
        True
    """
    table = _check_table(table, "table")
    weights = 1 << (3 - torch.arange(4, device=table.device))
    return (table * weights).sum(-1)


def gate_anf() -> Tensor:
    """Algebraic normal form of the 16 gates (used by the bit-packed inference).

    Gate ``g`` is ``m0 ^ (m1 & a) ^ (m2 & b) ^ (m3 & a & b)`` with
    ``(m0, m1, m2, m3) = gate_anf()[g]``.  :func:`gate_ids_from_anf` is the inverse.

    Returns:
        ``(16, 4)`` long tensor in {0, 1}.

    Examples:
        >>> anf = gate_anf()
        >>> anf.shape
        torch.Size([16, 4])
        >>> GATE_NAMES[7], anf[7].tolist()  # a | b = a ^ b ^ ab
        ('A OR B', [0, 1, 1, 1])
    """
    f00, f01, f10, f11 = gate_truth_table().unbind(1)
    return torch.stack([f00, f00 ^ f10, f00 ^ f01, f00 ^ f01 ^ f10 ^ f11], 1)


def gate_ids_from_anf(anf: Tensor) -> Tensor:
    """Gate ids of algebraic normal forms (the inverse of :func:`gate_anf`).

    Args:
        anf: ``(..., 4)`` integer tensor in {0, 1}: ``(m0, m1, m2, m3)`` of
            ``m0 ^ (m1 & a) ^ (m2 & b) ^ (m3 & a & b)``.

    Returns:
        ``(...)`` long gate ids.

    Raises:
        ValueError: ``anf`` has another last dimension or values other than 0 and 1.

    Examples:
        >>> gate_ids_from_anf(torch.tensor([0, 1, 1, 0]))  # a ^ b
        tensor(6)
        >>> torch.equal(gate_ids_from_anf(gate_anf()), torch.arange(NUM_GATES))
        True
    """
    m0, m1, m2, m3 = _check_table(anf, "anf").unbind(-1)
    return gate_ids_from_truth_table(torch.stack([m0, m0 ^ m2, m0 ^ m1, m0 ^ m1 ^ m2 ^ m3], -1))


def _coefficients() -> Tensor:
    f00, f01, f10, f11 = gate_truth_table().to(torch.float64).unbind(1)
    return torch.stack([f00, f10 - f00, f01 - f00, f11 - f10 - f01 + f00], 1)


#: ``(16, 4)`` float64 matrix: gate ``g`` is ``c0 + c1 a + c2 b + c3 ab`` with
#: ``(c0, c1, c2, c3) = GATE_COEFFICIENTS[g]``; gate weights ``w`` (``(*, 16)``) map to
#: coefficients ``w @ GATE_COEFFICIENTS`` (``(*, 4)``).  Entries are in {-2, ..., 2}.
GATE_COEFFICIENTS = _coefficients()


def check_group_sum(num_neurons: Optional[int], num_classes: int) -> Optional[int]:
    """Check a GroupSum readout's shape: ``num_neurons`` split into ``num_classes`` groups.

    The one check used by :class:`GroupSum`, :func:`group_sum`, the bit-packed and
    the C inference paths.

    Args:
        num_neurons: neurons of the last layer (``None``: only ``num_classes`` is checked).
        num_classes: number of groups (classes), a positive integer.

    Returns:
        The group size ``num_neurons // num_classes`` (``None`` when ``num_neurons`` is).

    Raises:
        ValueError: ``num_classes`` is not a positive integer, or ``num_neurons`` is
            not divisible by it.

    Examples:
        >>> check_group_sum(12, 3)
        4
        >>> check_group_sum(10, 3)
        Traceback (most recent call last):
        ...
        ValueError: GroupSum needs the number of neurons (10) to be divisible by `num_classes` (3)
    """
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer, got {num_classes}")
    if num_neurons is None:
        return None
    if num_neurons % num_classes:
        raise ValueError(
            f"GroupSum needs the number of neurons ({num_neurons}) to be divisible by `num_classes` ({num_classes})"
        )
    return num_neurons // int(num_classes)


# --------------------------------------------------------------------------- #
# the 4-coefficient gate function
# --------------------------------------------------------------------------- #


# Neurons handled at once on CPU: temporaries stay about ``_CHUNK_ELEMENTS`` floats each,
# so the peak memory of a layer's forward is its output and of its backward the incoming
# gradient plus the input gradient.  On other devices (CUDA) the whole layer is one pass
# per op: a Python loop of small launches would cost more than the temporaries save.
# Under ``torch.compile`` too: the compiler fuses, and a chunk size computed from the
# batch size would make every batch size a new graph.
_CHUNK_ELEMENTS = 1 << 18


def _neuron_chunks(batch: int, out: int, device: torch.device = torch.device("cpu")):
    if device.type != "cpu" or torch.compiler.is_compiling():
        return [(0, out)] if out > 0 else []
    step = max(1, _CHUNK_ELEMENTS // max(batch, 1))
    return [(s, min(out, s + step)) for s in range(0, out, step)]


def _gate_inputs(x: Tensor, idx_a: Tensor, idx_b: Tensor, c: Tensor, s: int, e: int):
    """Inputs ``a``, ``b`` ``(B, e - s)`` and coefficients ``c0..c3`` of neurons ``s:e``."""
    return x.index_select(1, idx_a[s:e]), x.index_select(1, idx_b[s:e]), c[..., s:e, :].unbind(-1)


class _LogicGate(torch.autograd.Function):
    """``y = c0 + c1 a + c2 b + c3 ab`` with ``a = x[:, idx_a]``, ``b = x[:, idx_b]``.

    Saves ``x`` (which the previous layer keeps alive anyway) and ``c``; the
    gathers are recomputed in backward, so no ``(B, out)`` tensor is saved. Both
    passes work on chunks of neurons, so no ``(B, out)`` temporary is built either.
    """

    @staticmethod
    def forward(ctx, x: Tensor, idx_a: Tensor, idx_b: Tensor, c: Tensor):  # type: ignore[override]
        y = x.new_empty(x.shape[0], idx_a.shape[0])
        for s, e in _neuron_chunks(x.shape[0], idx_a.shape[0], x.device):
            a, b, (c0, c1, c2, c3) = _gate_inputs(x, idx_a, idx_b, c, s, e)
            # y = c0 + c1 a + b (c2 + c3 a)
            t = torch.addcmul(c2, a, c3).mul_(b)
            torch.addcmul(c0, a, c1, out=y[:, s:e]).add_(t)
        ctx.save_for_backward(x, idx_a, idx_b, c)
        return y

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        x, idx_a, idx_b, c = ctx.saved_tensors
        need_x, _, _, need_c = ctx.needs_input_grad
        gx = torch.zeros_like(x) if need_x else None
        gc = torch.empty_like(c) if need_c else None
        for s, e in _neuron_chunks(x.shape[0], idx_a.shape[0], x.device):
            a, b, (c0, c1, c2, c3) = _gate_inputs(x, idx_a, idx_b, c, s, e)
            gs = g[:, s:e]
            ga = gs * a
            gb = gs * b
            if need_x:
                # dy/da = c1 + c3 b, dy/db = c2 + c3 a
                gx.index_add_(1, idx_a[s:e], torch.addcmul(gs * c1, gb, c3))
                gx.index_add_(1, idx_b[s:e], torch.addcmul(gs * c2, ga, c3))
            if need_c:
                gab = ga * b
                if c.dim() == 2:  # shared coefficients (out, 4): reduce over the batch
                    gc[s:e] = torch.stack([gs.sum(0), ga.sum(0), gb.sum(0), gab.sum(0)], -1)
                else:  # per-example coefficients (B, out, 4)
                    gc[:, s:e] = torch.stack([gs, ga, gb, gab], -1)
        return gx, None, None, gc


def logic_gate(x: Tensor, idx_a: Tensor, idx_b: Tensor, coefficients: Tensor) -> Tensor:
    """Evaluate a layer of two-input gates in the 4-coefficient form.

    Differentiable in ``x`` and ``coefficients``; saves only ``x`` and the
    coefficients for backward.

    Args:
        x: ``(B, in)`` float inputs (in ``[0, 1]`` for a probabilistic reading).
        idx_a: ``(out,)`` long indices into ``in`` of each neuron's first input.
        idx_b: ``(out,)`` long indices into ``in`` of each neuron's second input.
        coefficients: ``(out, 4)`` shared or ``(B, out, 4)`` per-example
            coefficients ``(c0, c1, c2, c3)`` (``w @ GATE_COEFFICIENTS`` for gate
            weights ``w``); cast to ``x.dtype``.

    Returns:
        ``(B, out)``: ``c0 + c1 a + c2 b + c3 ab`` with ``a = x[:, idx_a]``, ``b = x[:, idx_b]``.

    Raises:
        ValueError: ``x`` is not 2-D, or ``coefficients`` has another shape.

    Examples:
        >>> x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
        >>> xor_and = GATE_COEFFICIENTS[[6, 1]].float()  # A XOR B, A AND B
        >>> logic_gate(x, torch.tensor([0, 0]), torch.tensor([1, 1]), xor_and)
        tensor([[1., 0.],
                [0., 1.]])
    """
    if x.dim() != 2:
        raise ValueError(f"`x` must have shape (B, in_features), got {tuple(x.shape)}")
    if coefficients.shape[-1] != 4 or coefficients.dim() not in (2, 3):
        raise ValueError(
            f"`coefficients` must have shape (out, 4) or (B, out, 4), got {tuple(coefficients.shape)}"
        )
    return _LogicGate.apply(x, idx_a, idx_b, coefficients.to(x.dtype))


def group_sum(x: Tensor, num_classes: int, tau: float = 1.0) -> Tensor:
    """The GroupSum readout as a function: class ``k`` sums the ``k``-th block of neurons.

    Args:
        x: ``(*, n)`` neuron outputs, ``n`` divisible by ``num_classes``.
        num_classes: number of groups of ``n / num_classes`` consecutive neurons.
        tau: the divisor of the sums.

    Returns:
        ``(*, num_classes)`` group sums divided by ``tau``.

    Raises:
        ValueError: ``n`` is not divisible by ``num_classes`` (:func:`check_group_sum`).

    Examples:
        >>> group_sum(torch.tensor([[1.0, 0.0, 1.0, 1.0]]), 2, tau=2.0)
        tensor([[0.5000, 1.0000]])
    """
    g = check_group_sum(x.shape[-1], num_classes)
    return x.reshape(*x.shape[:-1], num_classes, g).sum(-1) / tau


# --------------------------------------------------------------------------- #
# wiring
# --------------------------------------------------------------------------- #


def _random_wiring(in_features: int, out_features: int, gen: Optional[torch.Generator]):
    """Balanced random wiring (as in ``difflogic``): each input is used
    ``floor`` or ``ceil`` of ``2 out / in`` times (every input when ``2 out >= in``)."""
    c = torch.randperm(2 * out_features, generator=gen) % in_features
    c = torch.randperm(in_features, generator=gen)[c]
    return c[:out_features].clone(), c[out_features:].clone()


def _unique_wiring(in_features: int, out_features: int, gen: Optional[torch.Generator]):
    """Every input used, ``a != b`` and no unordered pair repeated."""
    perm = torch.randperm(in_features, generator=gen).tolist()
    pairs = []
    for i in range(0, in_features - 1, 2):
        pairs.append((perm[i], perm[i + 1]))
    if in_features % 2:
        j = int(torch.randint(in_features - 1, (1,), generator=gen))
        pairs.append((perm[-1], perm[j]))
    used = {frozenset(p) for p in pairs}
    need = out_features - len(pairs)
    total = in_features * (in_features - 1) // 2
    if need > 0 and len(used) + need > total // 2:
        # dense: enumerate the remaining pairs and pick without replacement
        rest = [(i, j) for i in range(in_features) for j in range(i + 1, in_features)
                if frozenset((i, j)) not in used]
        pick = torch.randperm(len(rest), generator=gen)[:need].tolist()
        pairs.extend(rest[k] for k in pick)
    else:
        while need > 0:
            cand = torch.randint(in_features, (2 * need + 16, 2), generator=gen).tolist()
            for i, j in cand:
                key = frozenset((i, j))
                if i == j or key in used:
                    continue
                used.add(key)
                pairs.append((i, j))
                need -= 1
                if need == 0:
                    break
    order = torch.randperm(out_features, generator=gen)
    t = torch.tensor(pairs, dtype=torch.long)[order]
    return t[:, 0].clone(), t[:, 1].clone()


# --------------------------------------------------------------------------- #
# modules
# --------------------------------------------------------------------------- #


class LogicGateLayer(DiscreteBottleneck):
    """A layer of ``out_features`` learnable two-input logic gates.

    Input ``(B, in_features)`` with values in ``[0, 1]``; output ``(B, out_features)``.
    Neuron ``j`` computes ``g_j(x[:, idx_a[j]], x[:, idx_b[j]])`` where the gate
    ``g_j`` is one of the 16 Boolean functions (:data:`GATE_NAMES`), chosen by the
    estimator from ``gate_logits[j]`` (16 logits).  Gates are evaluated in their
    real-valued (probabilistic) form ``c0 + c1 a + c2 b + c3 ab``, so for Boolean
    input and hard gates the output is exactly Boolean.

    Training: ``w = estimator(gate_logits)`` is drawn once per forward and shared by
    all examples (``sample_per_example=False``), or per example (logits expanded
    to ``(B, out, 16)``; always so for score-function estimators, whose
    per-row log-probability must belong to one example).  Evaluation
    (``not self.training``): ``eval_mode="argmax"`` uses the argmax gates (the
    network is then an exact Boolean circuit), ``"sample"`` samples at ``tau_f``,
    ``"soft"`` uses ``softmax(gate_logits)``.

    Observation protocol: ``last_indices`` holds the chosen gate ids, ``(1, out)``
    (shared) or ``(B, out)`` (per example); ``last_logit_grad`` the gradient of
    ``gate_logits``.

    Args:
        in_features: inputs per example.
        out_features: neurons (gates).
        wiring: ``"random"`` (balanced random pairs, as in ``difflogic``) or
            ``"unique"`` (every input used, no pair repeated; needs
            ``out_features >= in_features / 2``).
        init: ``"residual"`` (pass-through gate ``A`` favoured: logit ``residual_logit``
            on gate :data:`PASS_THROUGH_GATE`, 0 elsewhere) or ``"gaussian"``
            (``N(0, 1)`` logits).
        sample_per_example: draw a gate per neuron and example instead of once per step.
        generator_seed: seed of the wiring (``None``: the global torch RNG).
        residual_logit: the pass-through logit of ``init="residual"``.
        **kwargs: bottleneck arguments of :class:`DiscreteBottleneck`
            (``estimator``, ``tau_f``, ``tau_b``, ``tau``, ``eval_mode``, ``num_samples``,
            ``estimator_kwargs``, ``validate_args``).

    Raises:
        ValueError: a size is not a positive integer, ``wiring`` or ``init`` is
            unknown, or ``wiring="unique"`` cannot be satisfied.

    Examples:
        >>> layer = LogicGateLayer(4, 6, generator_seed=0)
        >>> layer.gate_logits.shape, layer.idx_a.shape
        (torch.Size([6, 16]), torch.Size([6]))
        >>> x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
        >>> layer.eval()(x).shape
        torch.Size([1, 6])
        >>> torch.equal(layer(x), x[:, layer.idx_a])  # residual init: every gate is A
        True
    """

    idx_a: Tensor
    idx_b: Tensor
    gate_coefficients: Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        wiring: str = "random",
        init: str = "residual",
        sample_per_example: bool = False,
        generator_seed: Optional[int] = None,
        residual_logit: float = 5.0,
        **kwargs: Any,
    ) -> None:
        if int(in_features) != in_features or in_features < 1:
            raise ValueError(f"`in_features` must be a positive integer, got {in_features}")
        if int(out_features) != out_features or out_features < 1:
            raise ValueError(f"`out_features` must be a positive integer, got {out_features}")
        if wiring not in ("random", "unique"):
            raise ValueError(f"`wiring` must be 'random' or 'unique', got {wiring!r}")
        if init not in ("residual", "gaussian"):
            raise ValueError(f"`init` must be 'residual' or 'gaussian', got {init!r}")
        if wiring == "unique":
            if in_features < 2:
                raise ValueError("`wiring`='unique' needs `in_features` >= 2")
            if 2 * out_features < in_features:
                raise ValueError(
                    f"`wiring`='unique' uses every input, so it needs `out_features` >= in_features / 2 "
                    f"(at least {math.ceil(in_features / 2)} neurons for {in_features} inputs), "
                    f"got out_features={out_features}"
                )
            if out_features > in_features * (in_features - 1) // 2:
                raise ValueError(
                    f"`wiring`='unique' allows at most in_features*(in_features-1)/2 = "
                    f"{in_features * (in_features - 1) // 2} distinct pairs, got out_features={out_features}"
                )
        super().__init__(**kwargs)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.wiring = wiring
        self.init = init
        self.sample_per_example = bool(sample_per_example)
        gen = None
        if generator_seed is not None:
            gen = torch.Generator().manual_seed(int(generator_seed))
        if wiring == "random":
            a, b = _random_wiring(self.in_features, self.out_features, gen)
        else:
            a, b = _unique_wiring(self.in_features, self.out_features, gen)
        self.register_buffer("idx_a", a)
        self.register_buffer("idx_b", b)
        self.register_buffer("gate_coefficients", GATE_COEFFICIENTS.to(torch.float32), persistent=False)
        self.gate_logits = nn.Parameter(torch.empty(self.out_features, NUM_GATES))
        self.residual_logit = float(residual_logit)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise ``gate_logits`` as ``init`` says (the wiring is kept).

        Examples:
            >>> layer = LogicGateLayer(4, 2, init="gaussian")
            >>> layer.init = "residual"
            >>> layer.reset_parameters()
            >>> layer.gate_ids()
            tensor([3, 3])
        """
        with torch.no_grad():
            if self.init == "residual":
                self.gate_logits.zero_()
                self.gate_logits[:, PASS_THROUGH_GATE] = self.residual_logit
            else:
                self.gate_logits.normal_()

    @property
    @override
    def num_categories(self) -> int:
        """Categories per latent: :data:`NUM_GATES`."""
        return NUM_GATES

    def gate_ids(self) -> Tensor:
        """The argmax gate of each neuron (the gates of the hard network).

        Returns:
            ``(out_features,)`` long gate ids (names: :data:`GATE_NAMES`).

        Examples:
            >>> layer = LogicGateLayer(4, 3)
            >>> [GATE_NAMES[g] for g in layer.gate_ids().tolist()]
            ['A', 'A', 'A']
        """
        return self.gate_logits.detach().argmax(-1)

    def _gate_weights(self, logits: Tensor, batch: int) -> Tensor:
        # a gate per example where a draw is made per example (deterministic eval modes:
        # one set of gates shared by the batch)
        per_example = (
            self.sample_per_example or self.score_function
            if self.training
            else self.sample_per_example and self.eval_mode == "sample"
        )
        if per_example:
            logits = logits.unsqueeze(0).expand(batch, -1, -1)
        return self._estimate(logits, -1) if self.training else self._evaluate(logits, -1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_features) -> (B, out_features)``."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"LogicGateLayer expects input of shape (B, {self.in_features}), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            x = x.to(self.gate_logits.dtype)
        # a non-leaf view, so observation hooks live for this forward only
        logits = self.gate_logits.view_as(self.gate_logits)
        w = self._gate_weights(logits, x.shape[0])
        c = w.to(self.gate_coefficients.dtype) @ self.gate_coefficients
        if self._recording:
            # chosen now (not when read): per-example weights would be kept alive until the next forward
            ids = w.detach().argmax(-1).reshape(-1, self.out_features)
            self._observe(logits, ids, torch.Tensor.detach)  # the ids are the indices: no conversion
        return logic_gate(x, self.idx_a, self.idx_b, c)

    @override
    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, wiring={self.wiring!r}, "
            f"init={self.init!r}, sample_per_example={self.sample_per_example}, " + super().extra_repr()
        )


class GroupSum(nn.Module):
    """Readout of logic-gate networks: ``(B, n) -> (B, num_classes)``.

    Class ``k`` scores the sum of neurons ``k g, ..., (k + 1) g - 1`` (``g = n /
    num_classes``) divided by ``tau`` (:func:`group_sum`).

    Args:
        num_classes: number of groups, a positive integer.
        tau: the divisor (softmax temperature of the scores), finite and > 0.
        in_features: optional ``n``, checked at construction (else at the first forward).

    Raises:
        ValueError: bad ``num_classes`` or ``tau``, or ``in_features`` not divisible
            by ``num_classes`` (:func:`check_group_sum`).

    Examples:
        >>> readout = GroupSum(2, tau=2.0, in_features=4)
        >>> readout(torch.tensor([[1.0, 1.0, 0.0, 1.0]]))
        tensor([[1.0000, 0.5000]])
    """

    def __init__(self, num_classes: int, tau: float = 1.0, in_features: Optional[int] = None) -> None:
        super().__init__()
        check_group_sum(in_features, num_classes)
        tau = float(tau)
        if not math.isfinite(tau) or tau <= 0:
            raise ValueError(f"`tau` must be a finite number > 0, got {tau}")
        self.num_classes = int(num_classes)
        self.tau = tau
        self.in_features = in_features

    @override
    def forward(self, x: Tensor) -> Tensor:
        """Class scores.

        Args:
            x: ``(B, n)`` neuron outputs (``n == in_features`` when that was given).

        Returns:
            ``(B, num_classes)`` group sums over ``tau``.
        """
        if self.in_features is not None and x.shape[-1] != self.in_features:
            raise ValueError(f"GroupSum expects {self.in_features} inputs, got {x.shape[-1]}")
        return group_sum(x, self.num_classes, self.tau)

    @override
    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, tau={self.tau:g}"
