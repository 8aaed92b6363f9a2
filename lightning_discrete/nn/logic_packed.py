"""Bit-packed inference for hard (argmax) logic-gate networks.

The hard network is a Boolean circuit.  :class:`PackedLogicNetwork` evaluates it on
64 examples at once: bit ``j`` of word ``w`` of feature ``i`` holds feature ``i`` of
example ``64 w + j`` (:func:`pack_bits`).  Each gate is evaluated branch-free on
whole words from its algebraic normal form

    ``g(a, b) = m0 ^ (m1 & a) ^ (m2 & b) ^ (m3 & a & b)``

with per-neuron masks ``m_i`` in ``{0, -1}`` (all bits set) from the gate's
algebraic normal form (:func:`lightning_discrete.nn.logic.gate_anf`), and the GroupSum readout counts ones per example and group with a bit-sliced
adder tree, so nothing is unpacked until the final ``(B, num_classes)`` counts.
Scores equal the float hard network's exactly (``counts / tau``).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from typing_extensions import override

from .logic import GroupSum, LogicGateLayer, check_group_sum, gate_anf, gate_ids_from_anf

__all__ = ["pack_bits", "unpack_bits", "gate_anf_masks", "PackedLogicNetwork"]

_WORD = 64


def pack_bits(x: Tensor) -> Tensor:
    """Pack Boolean examples into int64 words, 64 examples per word.

    Args:
        x: ``(B, F)`` tensor; nonzero (``> 0.5`` for floats) means 1.

    Returns:
        ``(F, ceil(B / 64))`` int64: bit ``j`` of word ``w`` of feature ``i`` is
        ``x[64 w + j, i]``; padding bits are 0.

    Raises:
        ValueError: ``x`` is not 2-D.

    Examples:
        >>> words = pack_bits(torch.tensor([[1, 0], [1, 1], [0, 1]]))
        >>> words.shape, words.dtype
        (torch.Size([2, 1]), torch.int64)
        >>> words.flatten().tolist()  # feature 0: examples 0, 1; feature 1: examples 1, 2
        [3, 6]
    """
    if x.dim() != 2:
        raise ValueError(f"`x` must have shape (B, F), got {tuple(x.shape)}")
    bits = (x > 0.5) if x.is_floating_point() else (x != 0)
    b, f = bits.shape
    nw = (b + _WORD - 1) // _WORD
    pad = torch.zeros(nw * _WORD, f, dtype=torch.int64, device=x.device)
    pad[:b] = bits.to(torch.int64)
    pad = pad.reshape(nw, _WORD, f).permute(2, 0, 1)  # (F, W, 64)
    shifts = torch.arange(_WORD, device=x.device, dtype=torch.int64)
    # bits are disjoint, so the sum of the shifted bits is their OR (bit 63 wraps to the sign)
    return (pad << shifts).sum(-1)


def unpack_bits(words: Tensor, batch_size: int) -> Tensor:
    """Inverse of :func:`pack_bits`.

    Args:
        words: ``(F, W)`` int64 packed words.
        batch_size: examples to unpack (at most ``64 W``).

    Returns:
        ``(batch_size, F)`` uint8 in {0, 1}.

    Examples:
        >>> x = torch.tensor([[1, 0], [1, 1], [0, 1]], dtype=torch.uint8)
        >>> torch.equal(unpack_bits(pack_bits(x), 3), x)
        True
    """
    shifts = torch.arange(_WORD, device=words.device, dtype=torch.int64)
    bits = (words.unsqueeze(-1) >> shifts) & 1  # (F, W, 64)
    return bits.reshape(words.shape[0], -1)[:, :batch_size].t().to(torch.uint8)


def gate_anf_masks(gate_ids: Tensor) -> Tensor:
    """Word masks of the algebraic normal form of gates (:func:`~lightning_discrete.nn.logic.gate_anf`).

    Args:
        gate_ids: ``(n,)`` long gate ids.

    Returns:
        ``(4, n, 1)`` int64 masks ``m0..m3`` (0 or -1: all bits set) of
        ``m0 ^ (m1 & a) ^ (m2 & b) ^ (m3 & a & b)``.

    Examples:
        >>> gate_anf_masks(torch.tensor([6, 15])).squeeze(-1)  # A XOR B, TRUE
        tensor([[ 0, -1],
                [-1,  0],
                [-1,  0],
                [ 0,  0]])
    """
    anf = gate_anf().to(gate_ids.device)[gate_ids.long()]  # (n, 4)
    return (-anf).t().unsqueeze(-1).contiguous()


def _bitsliced_group_count(bits: Tensor, num_classes: int) -> Tensor:
    """Per-example counts of ones in each group of consecutive rows.

    Args:
        bits: ``(n, W)`` int64 words (``n`` divisible by ``num_classes``).

    Returns:
        ``(num_classes, L, W)`` bit planes of the counts (plane ``j`` holds bit ``j``).
    """
    n, nw = bits.shape
    g = n // num_classes
    t = bits.reshape(num_classes, g, 1, nw)  # numbers of width 1
    while t.shape[1] > 1:
        if t.shape[1] % 2:
            t = torch.cat([t, torch.zeros_like(t[:, :1])], 1)
        x, y = t[:, 0::2], t[:, 1::2]
        width = t.shape[2]
        planes = []
        carry = torch.zeros_like(x[:, :, 0])
        for j in range(width):
            s = x[:, :, j] ^ y[:, :, j]
            planes.append(s ^ carry)
            carry = (x[:, :, j] & y[:, :, j]) | (s & carry)
        planes.append(carry)
        t = torch.stack(planes, 2)
    return t[:, 0]


def _planes_to_counts(planes: Tensor, batch_size: int) -> Tensor:
    """``(K, L, W)`` bit planes -> ``(batch_size, K)`` int64 counts."""
    k, depth, nw = planes.shape
    shifts = torch.arange(_WORD, device=planes.device, dtype=torch.int64)
    counts = torch.zeros(k, nw, _WORD, dtype=torch.int64, device=planes.device)
    for j in range(depth):
        counts += ((planes[:, j].unsqueeze(-1) >> shifts) & 1) << j
    return counts.reshape(k, nw * _WORD)[:, :batch_size].t()


class PackedLogicNetwork(nn.Module):
    """The hard (argmax) logic-gate network evaluated on bit-packed examples.

    Build it with :meth:`from_layers`.  ``forward(x)`` takes ``(B, in_features)``
    Boolean examples and returns the float class scores, equal to those of the
    float network in eval mode (``eval_mode="argmax"``).  :meth:`forward_words`
    works on packed words directly and returns integer counts.

    Buffers (per layer ``l``): ``idx_a_l``, ``idx_b_l`` (long) and ``masks_l``
    ``(4, out, 1)`` int64 (:func:`gate_anf_masks`).

    Args:
        in_features: inputs per example.
        layers: per layer ``(idx_a, idx_b, gate_ids)``, three ``(out_l,)`` long
            tensors; layer ``l`` reads the ``out_{l-1}`` outputs of the layer before.
        num_classes: GroupSum groups (divides the last layer's width).
        tau: GroupSum divisor.

    Raises:
        ValueError: a layer reads beyond the previous width, or the last width is
            not divisible by ``num_classes``.

    Examples:
        >>> layers = [LogicGateLayer(8, 6, init="gaussian"), LogicGateLayer(6, 6, init="gaussian")]
        >>> readout = GroupSum(2, tau=3.0)
        >>> packed = PackedLogicNetwork.from_layers(layers, readout)
        >>> x = torch.randint(0, 2, (100, 8)).float()
        >>> packed(x).shape
        torch.Size([100, 2])
        >>> float_net = torch.nn.Sequential(*layers, readout).eval()
        >>> torch.equal(packed(x), float_net(x))
        True
    """

    def __init__(
        self,
        in_features: int,
        layers: Sequence[Tuple[Tensor, Tensor, Tensor]],
        num_classes: int,
        tau: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.num_layers = len(layers)
        self.num_classes = int(num_classes)
        self.tau = float(tau)
        width = self.in_features
        for i, (ia, ib, ids) in enumerate(layers):
            if int(ia.max()) >= width or int(ib.max()) >= width:
                raise ValueError(f"layer {i} reads input indices beyond the previous width {width}")
            self.register_buffer(f"idx_a_{i}", ia.detach().clone().long())
            self.register_buffer(f"idx_b_{i}", ib.detach().clone().long())
            self.register_buffer(f"masks_{i}", gate_anf_masks(ids.detach().long()))
            width = ia.numel()
        check_group_sum(width, self.num_classes)
        self.out_features = width

    @classmethod
    def from_layers(cls, layers: Sequence[LogicGateLayer], readout: GroupSum) -> "PackedLogicNetwork":
        """Pack trained layers with their argmax gates (``gate_ids()``).

        Args:
            layers: the :class:`LogicGateLayer` s, in order (widths must chain).
            readout: the :class:`GroupSum` after the last layer.

        Returns:
            The packed network, on the layers' device.

        Raises:
            ValueError: no layers, widths that do not chain, or a readout that does
                not divide the last width.
        """
        layers = list(layers)
        if not layers:
            raise ValueError("`layers` must hold at least one LogicGateLayer")
        for prev, nxt in zip(layers, layers[1:]):
            if prev.out_features != nxt.in_features:
                raise ValueError(
                    f"layer widths do not chain: {prev.out_features} outputs into {nxt.in_features} inputs"
                )
        spec = [(l.idx_a.cpu(), l.idx_b.cpu(), l.gate_ids().cpu()) for l in layers]
        net = cls(layers[0].in_features, spec, readout.num_classes, readout.tau)
        return net.to(layers[0].gate_logits.device)

    def layer_specs(self) -> List[Tuple[Tensor, Tensor, Tensor]]:
        """The wiring and gates of every layer (gate ids recovered from the masks).

        Returns:
            ``[(idx_a, idx_b, gate_ids)]``, one tuple of ``(out_l,)`` long tensors per layer.

        Examples:
            >>> layer = LogicGateLayer(4, 2, init="gaussian")
            >>> packed = PackedLogicNetwork.from_layers([layer], GroupSum(1))
            >>> torch.equal(packed.layer_specs()[0][2], layer.gate_ids())
            True
        """
        specs = []
        for i in range(self.num_layers):
            anf = -getattr(self, f"masks_{i}").squeeze(-1).t()  # (n, 4) ANF bits
            specs.append((getattr(self, f"idx_a_{i}"), getattr(self, f"idx_b_{i}"), gate_ids_from_anf(anf)))
        return specs

    def forward_bits(self, words: Tensor) -> Tensor:
        """Evaluate the gates on packed words.

        Args:
            words: ``(in_features, W)`` int64 words (:func:`pack_bits`).

        Returns:
            ``(out_features, W)`` int64 words of the last layer's outputs.
        """
        if words.dim() != 2 or words.shape[0] != self.in_features:
            raise ValueError(f"expected packed words of shape ({self.in_features}, W), got {tuple(words.shape)}")
        h = words
        for i in range(self.num_layers):
            m = getattr(self, f"masks_{i}")
            a = h.index_select(0, getattr(self, f"idx_a_{i}"))
            b = h.index_select(0, getattr(self, f"idx_b_{i}"))
            ab = a & b
            ab &= m[3]
            a &= m[1]
            b &= m[2]
            ab ^= a
            ab ^= b
            ab ^= m[0]
            h = ab
        return h

    def forward_words(self, words: Tensor, batch_size: Optional[int] = None) -> Tensor:
        """Evaluate the network and count the ones of every GroupSum group.

        Args:
            words: ``(in_features, W)`` int64 words (:func:`pack_bits`).
            batch_size: examples to return (default ``64 W``, padding included).

        Returns:
            ``(batch_size, num_classes)`` int64 counts (scores are ``counts / tau``).
        """
        if batch_size is None:
            batch_size = words.shape[1] * _WORD
        planes = _bitsliced_group_count(self.forward_bits(words), self.num_classes)
        return _planes_to_counts(planes, batch_size)

    @override
    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Class scores of Boolean examples.

        Args:
            x: ``(B, in_features)`` Boolean examples (:func:`pack_bits` reads them).

        Returns:
            ``(B, num_classes)`` float scores ``counts / tau`` (``x``'s float dtype).
        """
        counts = self.forward_words(pack_bits(x), x.shape[0])
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return counts.to(dtype) / self.tau

    @override
    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_layers={self.num_layers}, "
            f"out_features={self.out_features}, num_classes={self.num_classes}, tau={self.tau:g}"
        )
