"""torchmetrics ``Metric`` classes and their functional twins for discrete latents.

The layout is torchmetrics' own: every metric has a private ``_x_update`` (batch ->
sufficient statistics) and ``_x_compute`` (statistics -> value); the functional form
(:func:`codebook_perplexity`, :func:`dead_code_fraction`, :func:`codebook_usage`,
:func:`active_units`, :func:`importance_weighted_nll`) calls both on one batch, the ``Metric``
class (:class:`CodebookPerplexity`, :class:`DeadCodeFraction`, :class:`CodebookUsage`,
:class:`ActiveUnits`, :class:`ImportanceWeightedNLL`) accumulates the statistics in states over many batches and
computes at the end. Every state is reduced by **sum** across processes, so a
perplexity or a percentage of a distributed epoch is computed from global counts,
never averaged over ranks (``docs/design.md``, "Distributed rules"). Updates write
into fixed-size states (no ``bincount``, no ``.item()``): they never synchronise
the host with the device.

Perplexity is ``exp(H)`` with ``H = -sum_c p_c log p_c`` and ``p = counts / sum``
(``0 log 0 = 0``); it lies in ``[1, k]`` for ``k`` categories. The helpers on counts
(:func:`entropy_from_counts`, :func:`perplexity_from_counts`,
:func:`dead_fraction_from_counts`, :func:`joint_index`) are public too.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import math

import torch
from torch import Tensor
from torchmetrics import Metric
from typing_extensions import override

from . import functional as LF

__all__ = [
    "entropy_from_counts",
    "perplexity_from_counts",
    "dead_fraction_from_counts",
    "joint_index",
    "codebook_perplexity",
    "dead_code_fraction",
    "codebook_usage",
    "active_units",
    "inactive_neurons",
    "saturation",
    "buried_codes",
    "importance_weighted_nll",
    "CodebookPerplexity",
    "DeadCodeFraction",
    "CodebookUsage",
    "ActiveUnits",
    "InactiveNeurons",
    "Saturation",
    "BuriedCodes",
    "ImportanceWeightedNLL",
]


# --------------------------------------------------------------------------- counts
def entropy_from_counts(counts: Tensor, dim: int = -1) -> Tensor:
    """Entropy (nats) of the empirical distribution ``counts / counts.sum(dim)``.

    Args:
        counts: non-negative counts ``(*, k)`` (categories on ``dim``).
        dim: the category dimension.

    Returns:
        ``(*)`` entropies in float64; NaN where a row has no counts.

    Examples:
        >>> entropy_from_counts(torch.tensor([[1, 1], [4, 0]]))
        tensor([0.6931, 0.0000], dtype=torch.float64)
    """
    c = counts.to(torch.float64)
    total = c.sum(dim, keepdim=True)
    p = c / total
    plogp = torch.where(c > 0, p * torch.log(torch.where(c > 0, p, torch.ones_like(p))), torch.zeros_like(p))
    h = 0.0 - plogp.sum(dim)  # not -sum: a single used category gives +0, not -0
    return torch.where(total.squeeze(dim) > 0, h, torch.full_like(h, float("nan")))


def perplexity_from_counts(counts: Tensor, dim: int = -1) -> Tensor:
    """Perplexity ``exp(H)`` of the empirical distribution of ``counts`` along ``dim``.

    Args:
        counts: non-negative counts ``(*, k)``.
        dim: the category dimension.

    Returns:
        ``(*)`` float64 perplexities in ``[1, k]`` (NaN for rows without counts).

    Examples:
        >>> perplexity_from_counts(torch.tensor([5, 5, 0, 0]))
        tensor(2., dtype=torch.float64)
    """
    return torch.exp(entropy_from_counts(counts, dim))


def dead_fraction_from_counts(counts: Tensor) -> Tensor:
    """Fraction of the entries of ``counts`` that are zero (codes never chosen).

    Args:
        counts: counts of any shape, e.g. ``(L, k)`` per latent and code.

    Returns:
        A float64 scalar in ``[0, 1]``.

    Examples:
        >>> dead_fraction_from_counts(torch.tensor([[3, 0], [1, 1]]))
        tensor(0.2500, dtype=torch.float64)
    """
    return (counts == 0).to(torch.float64).mean()


def joint_index(indices: Tensor, num_categories: int) -> Tensor:
    """Joint code of ``L`` latents: ``sum_l indices[:, l] * k**l``.

    Args:
        indices: ``(N, L)`` integer codes in ``[0, k)``.
        num_categories: ``k``.

    Returns:
        ``(N,)`` long in ``[0, k**L)``.

    Examples:
        >>> joint_index(torch.tensor([[1, 0], [3, 2]]), 4)
        tensor([ 1, 11])
    """
    L = indices.shape[-1]
    base = num_categories ** torch.arange(L, device=indices.device, dtype=torch.long)
    return (indices.long() * base).sum(-1)


# --------------------------------------------------------------------------- codebook usage
def _check_codes(num_codes: int, num_latents: int = 1) -> None:
    if num_codes < 2:
        raise ValueError(f"`num_codes` must be >= 2, got {num_codes}")
    if num_latents < 1:
        raise ValueError(f"`num_latents` must be >= 1, got {num_latents}")


def _as_2d_codes(indices: Tensor, num_latents: Optional[int] = None) -> Tensor:
    """``(N, L)`` codes from ``(N, L)`` or ``(N,)`` (read as ``(N, 1)``); checks ``L``."""
    if indices.dim() == 1:
        indices = indices.unsqueeze(-1)
    if indices.dim() != 2 or (num_latents is not None and indices.shape[1] != num_latents):
        want = f"(N, {num_latents})" if num_latents is not None else "(N, L) or (N,)"
        raise ValueError(f"expected `indices` of shape {want}, got {tuple(indices.shape)}")
    return indices


def _codebook_counts_update(indices: Tensor, num_codes: int) -> Tensor:
    """``(L, k)`` long counts of the ``(N, L)`` codes (fixed size: no host-device sync)."""
    num_latents = indices.shape[1]
    n = indices.shape[0]
    if num_codes == 2:  # binary units: a column sum is the histogram (no scatter)
        ones = indices.sum(0, dtype=torch.long)
        return torch.stack([n - ones, ones], 1)
    offsets = torch.arange(num_latents, device=indices.device) * num_codes
    flat = (indices.long() + offsets).reshape(-1)
    counts = torch.zeros(num_latents * num_codes, dtype=torch.long, device=indices.device)
    # scatter-add: unlike ``bincount`` (whose output size depends on the data), no sync on CUDA
    return counts.index_add_(0, flat, torch.ones_like(flat)).view(num_latents, num_codes)


def _joint_counts_update(indices: Tensor, num_codes: int) -> Tensor:
    """``(k**L,)`` long counts of the joint codes of the ``(N, L)`` codes."""
    joint = joint_index(indices, num_codes)
    counts = torch.zeros(num_codes ** indices.shape[1], dtype=torch.long, device=indices.device)
    return counts.index_add_(0, joint, torch.ones_like(joint))


def _track_joint(num_codes: int, num_latents: int, joint_limit: int) -> bool:
    return num_latents > 1 and num_codes**num_latents <= joint_limit


def _codebook_perplexity_compute(counts: Tensor) -> Tensor:
    return perplexity_from_counts(counts).mean()


def _codebook_usage_compute(counts: Tensor, joint_counts: Optional[Tensor]) -> Dict[str, Tensor]:
    out = {"perplexity": _codebook_perplexity_compute(counts), "dead_fraction": dead_fraction_from_counts(counts)}
    if joint_counts is not None:
        out["joint_perplexity"] = perplexity_from_counts(joint_counts)
        out["joint_used"] = (joint_counts > 0).sum().to(torch.float64)
    return out


def codebook_perplexity(indices: Tensor, num_codes: int) -> Tensor:
    """Mean over latents of the perplexity of each latent's code histogram.

    Args:
        indices: ``(N, L)`` integer codes in ``[0, num_codes)`` (``(N,)`` is one latent).
        num_codes: ``k``, the codes per latent (2 for binary units).

    Returns:
        A float64 scalar in ``[1, k]``.

    Examples:
        >>> codebook_perplexity(torch.tensor([[0, 1], [1, 1], [2, 1], [3, 1]]), num_codes=4)
        tensor(2.5000, dtype=torch.float64)
    """
    _check_codes(num_codes)
    return _codebook_perplexity_compute(_codebook_counts_update(_as_2d_codes(indices), num_codes))


def dead_code_fraction(indices: Tensor, num_codes: int) -> Tensor:
    """Fraction of (latent, code) pairs never chosen in ``indices`` (lower is better).

    Args:
        indices: ``(N, L)`` integer codes in ``[0, num_codes)`` (``(N,)`` is one latent).
        num_codes: ``k``.

    Returns:
        A float64 scalar in ``[0, 1]``.

    Examples:
        >>> dead_code_fraction(torch.tensor([0, 0, 1]), num_codes=4)
        tensor(0.5000, dtype=torch.float64)
    """
    _check_codes(num_codes)
    return dead_fraction_from_counts(_codebook_counts_update(_as_2d_codes(indices), num_codes))


def codebook_usage(indices: Tensor, num_codes: int, joint_limit: int = 65536) -> Dict[str, Tensor]:
    """Every code-usage statistic of one batch (what :class:`CodebookUsage` computes).

    Args:
        indices: ``(N, L)`` integer codes in ``[0, num_codes)`` (``(N,)`` is one latent).
        num_codes: ``k``.
        joint_limit: largest ``k ** L`` for which the joint code of all latents is counted.

    Returns:
        ``{"perplexity", "dead_fraction"}`` and, when ``L > 1`` and ``k ** L <= joint_limit``,
        ``{"joint_perplexity", "joint_used"}``: float64 scalars.

    Examples:
        >>> out = codebook_usage(torch.tensor([[0, 1], [1, 1]]), num_codes=2)
        >>> {k: round(float(v), 3) for k, v in out.items()}
        {'perplexity': 1.5, 'dead_fraction': 0.25, 'joint_perplexity': 2.0, 'joint_used': 2.0}
    """
    idx = _as_2d_codes(indices)
    _check_codes(num_codes, idx.shape[1])
    joint = _joint_counts_update(idx, num_codes) if _track_joint(num_codes, idx.shape[1], joint_limit) else None
    return _codebook_usage_compute(_codebook_counts_update(idx, num_codes), joint)


class _CodeCounts(Metric):
    """Base of the code-usage metrics: a ``(L, k)`` ``counts`` state and ``total``, summed across ranks."""

    full_state_update = False
    is_differentiable = False

    counts: Tensor
    total: Tensor

    def __init__(self, num_codes: int, num_latents: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_codes(num_codes, num_latents)
        self.num_codes = int(num_codes)
        self.num_latents = int(num_latents)
        self.add_state("counts", torch.zeros(num_latents, num_codes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @override
    def update(self, indices: Tensor) -> None:
        """Add ``(N, L)`` integer codes (``(N,)`` is read as ``(N, 1)``)."""
        idx = _as_2d_codes(indices, self.num_latents).to(self.counts.device)
        self.counts += _codebook_counts_update(idx, self.num_codes)
        self.total += idx.shape[0]


class CodebookPerplexity(_CodeCounts):
    """Mean over latents of the perplexity of each latent's code histogram, over many batches.

    Functional twin: :func:`codebook_perplexity`.

    Args:
        num_codes: ``k``, codes per latent (2 for binary units).
        num_latents: ``L``.
        **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ...).

    Examples:
        >>> metric = CodebookPerplexity(num_codes=4)
        >>> metric.update(torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([2, 3]))
        >>> metric.compute()
        tensor(4., dtype=torch.float64)
    """

    higher_is_better = True
    plot_lower_bound = 1.0

    @override
    def compute(self) -> Tensor:
        return _codebook_perplexity_compute(self.counts)


class DeadCodeFraction(_CodeCounts):
    """Fraction of (latent, code) pairs never chosen over many batches (lower is better).

    Functional twin: :func:`dead_code_fraction`.

    Args:
        num_codes: ``k``.
        num_latents: ``L``.
        **kwargs: torchmetrics ``Metric`` options.

    Examples:
        >>> metric = DeadCodeFraction(num_codes=4)
        >>> metric.update(torch.tensor([0, 0, 1]))
        >>> metric.compute()
        tensor(0.5000, dtype=torch.float64)
    """

    higher_is_better = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    @override
    def compute(self) -> Tensor:
        return dead_fraction_from_counts(self.counts)


class CodebookUsage(_CodeCounts):
    """Code usage of a bottleneck with ``num_latents`` latents of ``num_codes`` codes.

    ``update(indices)`` takes ``(N, L)`` integer codes (what
    :attr:`~lightning_discrete.nn.DiscreteBottleneck.last_indices` holds).
    ``compute()`` returns a dict of float64 scalars (functional twin: :func:`codebook_usage`):

    * ``perplexity`` -- mean over latents of the per-latent perplexity (``[1, k]``, higher is better);
    * ``dead_fraction`` -- fraction of (latent, code) pairs never chosen (lower is better);
    * ``joint_perplexity`` / ``joint_used`` -- perplexity of the joint code of all
      latents and the number of distinct joint codes seen, only when ``L > 1`` and
      ``k ** L <= joint_limit`` (the joint histogram is a dense state of that size).

    The values point in different directions, so ``higher_is_better`` is ``None``; use
    :class:`CodebookPerplexity` or :class:`DeadCodeFraction` to monitor one of them.
    States (``counts (L, k)``, ``joint_counts (k**L,)``, ``total``) are reduced by sum.

    Args:
        num_codes: ``k`` (2 for binary units).
        num_latents: ``L``.
        joint_limit: largest ``k ** L`` for which joint usage is tracked.
        **kwargs: torchmetrics ``Metric`` options.

    Examples:
        >>> metric = CodebookUsage(num_codes=2, num_latents=2)
        >>> metric.update(torch.tensor([[0, 1], [1, 1]]))
        >>> sorted(metric.compute())
        ['dead_fraction', 'joint_perplexity', 'joint_used', 'perplexity']
    """

    higher_is_better = None

    joint_counts: Tensor

    def __init__(self, num_codes: int, num_latents: int = 1, joint_limit: int = 65536, **kwargs: Any) -> None:
        super().__init__(num_codes, num_latents, **kwargs)
        self.joint_limit = int(joint_limit)
        self.track_joint = _track_joint(self.num_codes, self.num_latents, self.joint_limit)
        if self.track_joint:
            size = self.num_codes**self.num_latents
            self.add_state("joint_counts", torch.zeros(size, dtype=torch.long), dist_reduce_fx="sum")

    @override
    def update(self, indices: Tensor) -> None:
        """Add ``(N, L)`` integer codes (``(N,)`` is read as ``(N, 1)``)."""
        super().update(indices)
        if self.track_joint:
            idx = _as_2d_codes(indices).to(self.joint_counts.device)
            self.joint_counts += _joint_counts_update(idx, self.num_codes)

    @override
    def compute(self) -> Dict[str, Tensor]:
        return _codebook_usage_compute(self.counts, self.joint_counts if self.track_joint else None)


# --------------------------------------------------------------------------- active units
def _active_units_update(grads: Tensor, threshold: Union[float, Tensor]) -> Tuple[Tensor, int]:
    """Entries of ``grads`` with ``|g| > threshold`` (an int64 device scalar, no sync) and their
    number. The comparison writes 0/1 into the ``abs`` buffer and a float sum counts them
    exactly: in float32 below 2^24 entries (every partial sum is an integer float32 holds),
    else in float64. On the CPU about 3x faster than a bool tensor and its sum."""
    n = grads.numel()
    exact = torch.float32 if n < 1 << 24 else torch.float64
    return grads.detach().abs().gt_(threshold).sum(dtype=exact).to(torch.long), n


def _active_units_compute(active: Tensor, total: Tensor) -> Tensor:
    """``100 * active / total`` in float64 (NaN where ``total`` is 0)."""
    total = total.to(torch.float64)
    return torch.where(total > 0, 100.0 * active.to(torch.float64) / total.clamp_min(1), torch.nan)


def active_units(grads: Tensor, threshold: Union[float, Tensor]) -> Tensor:
    """Percentage of entries of ``grads`` whose magnitude exceeds ``threshold``.

    The paper's "% active neurons" when ``grads`` are the logit gradients of discrete units.

    Args:
        grads: gradients of any shape, e.g. ``(N, D)`` per example and unit.
        threshold: absolute threshold (a float or a scalar tensor).

    Returns:
        A float64 scalar in ``[0, 100]`` (NaN for an empty tensor).

    Examples:
        >>> active_units(torch.tensor([0.5, -0.01, 0.0, -2.0]), threshold=0.1)
        tensor(50., dtype=torch.float64)
    """
    active, total = _active_units_update(grads, threshold)
    return _active_units_compute(active, torch.tensor(total, device=active.device))


class ActiveUnits(Metric):
    """Percentage of gradient entries with ``|g| > threshold``, over many batches.

    States ``active`` and ``total`` (long scalars) are summed across ranks; an update
    never synchronises (the threshold may be a device tensor, e.g. scaled by the AMP
    loss scale). Functional twin: :func:`active_units`. Whether more active units is
    better depends on the experiment, so ``higher_is_better`` is ``None``.

    Args:
        **kwargs: torchmetrics ``Metric`` options.

    Examples:
        >>> metric = ActiveUnits()
        >>> metric.update(torch.tensor([0.5, 0.0]), threshold=0.1)
        >>> metric.update(torch.tensor([0.5, 0.5, 0.5, 0.0]), threshold=0.1)
        >>> metric.compute()
        tensor(66.6667, dtype=torch.float64)
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None
    plot_lower_bound = 0.0
    plot_upper_bound = 100.0

    active: Tensor
    total: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("active", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @override
    def update(self, grads: Tensor, threshold: Union[float, Tensor]) -> None:
        """Count the entries of ``grads`` (any shape) with ``|g| > threshold``."""
        active, total = _active_units_update(grads, threshold)
        self.active += active.to(self.active.device)
        self.total += total

    @override
    def compute(self) -> Tensor:
        return _active_units_compute(self.active, self.total)


# --------------------------------------------------------------------------- inactive neurons
def _inactive_neurons_update(grads: Tensor, scale: Union[float, Tensor] = 1.0) -> Tuple[Tensor, int]:
    """Per-unit sums of ``|g| * scale`` over the examples (dim 0) of ``grads``, and the examples."""
    g = grads.detach()
    rows = g.shape[0] if g.dim() else 1
    sums = g.abs().reshape(rows, -1).sum(0, dtype=torch.float64)
    return sums * scale, rows


def _inactive_neurons_compute(sum_abs: Tensor, examples: Tensor, thresholds: Sequence[float]) -> Tensor:
    """Percentage of units whose mean ``|g|`` per example is ``<= threshold``, one per threshold."""
    mean = sum_abs / examples.to(torch.float64).clamp_min(1)
    limits = torch.tensor([float(t) for t in thresholds], dtype=torch.float64, device=mean.device)
    inactive = (mean.unsqueeze(0) <= limits.unsqueeze(1)).to(torch.float64).mean(1)
    return torch.where(examples > 0, 100.0 * inactive, torch.nan)


def inactive_neurons(grads: Tensor, thresholds: Sequence[float]) -> Tensor:
    """Percentage of units (neurons) whose mean gradient magnitude per example is negligible.

    The paper's per-neuron reading of "inactive": a unit counts as inactive when
    ``mean_n |g[n, unit]| <= threshold`` over the examples ``n``, as opposed to
    :func:`active_units`, which counts single (example, unit) entries.

    Args:
        grads: ``(N, *units)`` per-example gradients (e.g. the logit gradient of ``N``
            examples and ``D`` binary units, ``(N, D)``; categorical ``(N, L, k)`` counts each
            of the ``L * k`` logits as a unit).
        thresholds: one or more thresholds; the result has one entry per threshold, so the
            sensitivity to the threshold is visible.

    Returns:
        ``(len(thresholds),)`` float64 percentages in ``[0, 100]`` (NaN if ``N == 0``).

    Examples:
        >>> g = torch.tensor([[0.0, 1e-4, 1.0], [0.0, 3e-4, -1.0]])  # 2 examples, 3 units
        >>> inactive_neurons(g, thresholds=[1e-5, 1e-3])
        tensor([33.3333, 66.6667], dtype=torch.float64)
    """
    sums, rows = _inactive_neurons_update(grads)
    return _inactive_neurons_compute(sums, torch.tensor(rows, device=sums.device), thresholds)


class InactiveNeurons(Metric):
    """Percentage of units whose mean ``|g|`` per example stays at or below each threshold.

    States: ``sum_abs`` ``(num_units,)`` float64 (per-unit sums of ``|g|``) and
    ``examples`` (long), both summed across ranks; an update never synchronises.
    Functional twin: :func:`inactive_neurons`. Lower is better (fewer units that no
    longer learn).

    Args:
        num_units: units per example (the product of the gradient's non-batch dims).
        thresholds: thresholds on the mean per-example ``|g|``; :meth:`compute` returns one
            percentage per threshold.
        **kwargs: torchmetrics ``Metric`` options.

    Examples:
        >>> metric = InactiveNeurons(num_units=3, thresholds=[1e-5, 1e-3])
        >>> metric.update(torch.tensor([[0.0, 1e-4, 1.0]]))
        >>> metric.update(torch.tensor([[0.0, 3e-4, -1.0]]))
        >>> metric.compute()
        tensor([33.3333, 66.6667], dtype=torch.float64)
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False
    plot_lower_bound = 0.0
    plot_upper_bound = 100.0

    sum_abs: Tensor
    examples: Tensor

    def __init__(self, num_units: int, thresholds: Sequence[float] = (1e-3,), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(num_units) != num_units or num_units < 1:
            raise ValueError(f"`num_units` must be a positive integer, got {num_units}")
        if not thresholds or any(float(t) < 0 for t in thresholds):
            raise ValueError(f"`thresholds` must be a non-empty list of values >= 0, got {thresholds}")
        self.num_units = int(num_units)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.add_state("sum_abs", torch.zeros(self.num_units, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("examples", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @override
    def update(self, grads: Tensor, scale: Union[float, Tensor] = 1.0) -> None:
        """Add ``(N, *units)`` per-example gradients, each multiplied by ``scale`` (a float or a
        device scalar: e.g. batch size / AMP loss scale, to undo a batch-mean loss)."""
        sums, rows = _inactive_neurons_update(grads, scale)
        if sums.numel() != self.num_units:
            raise ValueError(f"expected {self.num_units} units per example, got {sums.numel()}")
        self.sum_abs += sums.to(self.sum_abs.device)
        self.examples += rows

    @override
    def compute(self) -> Tensor:
        return _inactive_neurons_compute(self.sum_abs, self.examples, self.thresholds)


# --------------------------------------------------------------------------- saturation
def _backward_probs(logits: Tensor, tau_b: float, binary: bool, dim: int) -> Tensor:
    """``(B, ..., k)`` backward probabilities at ``tau_b``, the categories last; a binary unit's
    logit ``l`` is the pair ``(0, l)`` (off, on). No softmax over a last dim of 2 (on 128 x 200
    logits ATen's took 1.4 ms against 0.1 ms for the sigmoid and the stack), and small ``k``
    through ``functional._softmax`` (128 x 20 x 10: 0.45 ms against 0.08 ms)."""
    x = logits.detach().float()
    if binary:  # sigmoid(-z), not 1 - sigmoid(z): the small probabilities keep their digits
        z = x / tau_b
        return torch.stack([torch.sigmoid(-z), torch.sigmoid(z)], -1)
    return LF._softmax(x.movedim(dim, -1) / tau_b)


def _saturation_update(logits: Tensor, tau_b: float, binary: bool, dim: int = -1, tol: float = 1e-6) -> Tuple[Tensor, Tensor, int]:
    """Saturated latents (device scalar), the sum of their logit ranges (device scalar) and the latents."""
    x = logits.detach().float()
    if binary:  # the pair (0, l): range |l|, the smaller probability sigmoid(-|l| / tau_b) (exact in float32)
        spread = x.abs()
        saturated = torch.sigmoid(spread / -tau_b) < tol
    else:
        x = x.movedim(dim, -1)
        spread = x.amax(-1) - x.amin(-1)
        saturated = _backward_probs(logits, tau_b, False, dim).amax(-1) > 1.0 - tol
    return saturated.sum(), spread.sum(), saturated.numel()


def _saturation_compute(saturated: Tensor, spread: Tensor, total: Tensor) -> Tuple[Tensor, Tensor]:
    """``(share of saturated latents in [0, 1], mean logit range)``; NaN when ``total`` is 0."""
    total = total.to(torch.float64)
    ok = total > 0
    n = total.clamp_min(1)
    return (torch.where(ok, saturated.to(torch.float64) / n, torch.nan),
            torch.where(ok, spread.to(torch.float64) / n, torch.nan))


def saturation(logits: Tensor, tau_b: float, binary: bool = False, dim: int = -1, tol: float = 1e-6) -> Tuple[Tensor, Tensor]:
    """How saturated the backward distribution of ``logits`` at ``tau_b`` is.

    A categorical latent is saturated when ``max softmax(logits / tau_b) > 1 - tol``; a
    binary unit (logits ``(l, 0)``) when ``sigmoid(-|l| / tau_b) < tol``. Its softmax
    Jacobian is then below ``tol`` everywhere, so straight-through estimators that
    backpropagate through it pass (almost) no gradient to the layers before it.

    Args:
        logits: ``(B, ..., k)`` categorical logits (categories on ``dim``) or ``(B, ...)``
            binary logits, one per unit.
        tau_b: the backward temperature (``> 0``).
        binary: whether ``logits`` are binary units.
        dim: the category dimension (categorical only).
        tol: the distance from one-hot that counts as saturated.

    Returns:
        ``(share, logit_range)``: float64 scalars, the share in ``[0, 1]`` of saturated
        latents and the mean over latents of the logit range (``max - min`` over the
        categories; ``|l|`` for a binary unit).

    Examples:
        >>> logits = torch.tensor([[[0.0, 1.0], [0.0, 40.0]]])  # 1 example, 2 latents, k = 2
        >>> share, spread = saturation(logits, tau_b=1.0)
        >>> float(share), float(spread)
        (0.5, 20.5)
        >>> float(saturation(logits, tau_b=10.0)[0])  # a higher tau_b: 1 - p = e^-4
        0.0
    """
    n, spread, total = _saturation_update(logits, tau_b, binary, dim, tol)
    return _saturation_compute(n, spread, torch.tensor(total, device=n.device))


class Saturation(Metric):
    """Share of saturated latents and mean logit range over many batches (see :func:`saturation`).

    States ``saturated``, ``spread`` (float64) and ``total`` (long) are summed across
    ranks; an update never synchronises. Lower is better for both values, but the metric
    returns two, so ``higher_is_better`` is ``False``.

    Args:
        tol: the distance from one-hot that counts as saturated.
        **kwargs: torchmetrics ``Metric`` options.

    Examples:
        >>> metric = Saturation()
        >>> metric.update(torch.tensor([[[0.0, 40.0]]]), tau_b=1.0)
        >>> metric.update(torch.tensor([[[0.0, 1.0]]]), tau_b=1.0)
        >>> [float(v) for v in metric.compute()]
        [0.5, 20.5]
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    saturated: Tensor
    spread: Tensor
    total: Tensor

    def __init__(self, tol: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 < tol < 1.0:
            raise ValueError(f"`tol` must be in (0, 1), got {tol}")
        self.tol = float(tol)
        self.add_state("saturated", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("spread", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @override
    def update(self, logits: Tensor, tau_b: float, binary: bool = False, dim: int = -1) -> None:
        """Add a batch of logits (shapes as :func:`saturation`) at backward temperature ``tau_b``."""
        n, spread, total = _saturation_update(logits, tau_b, binary, dim, self.tol)
        self.saturated += n.to(self.saturated)
        self.spread += spread.to(self.spread)
        self.total += total

    @override
    def compute(self) -> Tuple[Tensor, Tensor]:
        return _saturation_compute(self.saturated, self.spread, self.total)


# --------------------------------------------------------------------------- buried codes
def _buried_codes_update(logits: Tensor, tau_b: float, binary: bool, dim: int = -1) -> Tuple[Tensor, int]:
    """Per code ``(..., k)``: the sum over the examples of its backward probability (float64,
    on the device), and the number of examples."""
    return _backward_probs(logits, tau_b, binary, dim).sum(0, dtype=torch.float64), logits.shape[0]


def _buried_codes_compute(mass: Tensor, total: Tensor, tol: float) -> Tensor:
    """Share of codes whose mean backward probability is below ``tol`` (float64); NaN when no
    example was seen."""
    total = total.to(mass.device)
    share = (mass < tol * total.clamp_min(1)).to(torch.float64).mean()
    return torch.where(total > 0, share, torch.full_like(share, torch.nan))


def buried_codes(logits: Tensor, tau_b: float, binary: bool = False, dim: int = -1, tol: float = 1e-6) -> Tensor:
    """Share of codes buried at ``tau_b``: codes whose backward probability
    ``softmax(logits / tau_b)``, averaged over the batch, is below ``tol``.

    A straight-through backward through the softmax Jacobian scales the gradient of a code's
    logit by that probability, so a buried code gets (almost) none and is unlikely ever to be
    sampled again: a dead code that does not come back. Unlike :func:`saturation` (latents
    whose distribution is one-hot), the latent itself may still use its other codes freely.
    The batch mean estimates the code's mean probability over the data, so the share does
    not depend on the batch size (on trained MNIST VAEs the live codes' mean probabilities are
    above 4e-3 and, on a run that lost codes, the dead ones' below 5e-8).

    Args:
        logits: ``(B, ..., k)`` categorical logits (categories on ``dim``) or ``(B, ...)``
            binary logits (each unit has the codes off and on).
        tau_b: the backward temperature (``> 0``).
        binary: whether ``logits`` are binary units.
        dim: the category dimension (categorical only).
        tol: the mean probability below which a code counts as out of reach.

    Returns:
        A float64 scalar in ``[0, 1]``: buried codes over all ``(latent, code)`` pairs.

    Examples:
        >>> logits = torch.tensor([[[0.0, 1.0, -90.0]], [[2.0, 0.0, -80.0]]])  # 2 examples, 1 latent, k = 3
        >>> round(float(buried_codes(logits, tau_b=1.0)), 4)  # the third code: e^-80 at most
        0.3333
        >>> float(buried_codes(logits, tau_b=10.0))  # a higher tau_b reaches it: e^-8 > 1e-6
        0.0
    """
    mass, total = _buried_codes_update(logits, tau_b, binary, dim)
    return _buried_codes_compute(mass, torch.tensor(total, device=mass.device), tol)


class BuriedCodes(Metric):
    """Share of buried codes over many batches (see :func:`buried_codes`): a code is buried
    when its backward probability, averaged over every example since the last reset, is
    below ``tol``.

    States ``mass`` (``(*code_shape)``, float64: per code, the sum of its probabilities) and
    ``total`` (long: the examples) are summed across ranks; an update never synchronises.

    Args:
        code_shape: one example's latent shape with the categories last, e.g. ``(L, k)``;
            ``(L, 2)`` for ``L`` binary units.
        tol: the mean probability below which a code counts as out of reach.
        **kwargs: torchmetrics ``Metric`` options.

    Examples:
        >>> metric = BuriedCodes((1, 3))
        >>> metric.update(torch.tensor([[[0.0, 1.0, -90.0]]]), tau_b=1.0)
        >>> metric.update(torch.tensor([[[0.0, -90.0, 1.0]]]), tau_b=1.0)  # reaches the third code
        >>> float(metric.compute())
        0.0
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    mass: Tensor
    total: Tensor

    def __init__(self, code_shape: Sequence[int], tol: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 < tol < 1.0:
            raise ValueError(f"`tol` must be in (0, 1), got {tol}")
        code_shape = tuple(int(n) for n in code_shape)
        if not code_shape or min(code_shape) < 1:
            raise ValueError(f"`code_shape` must be non-empty with sizes >= 1, got {code_shape}")
        self.tol = float(tol)
        self.code_shape = code_shape
        self.add_state("mass", torch.zeros(code_shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @override
    def update(self, logits: Tensor, tau_b: float, binary: bool = False, dim: int = -1) -> None:
        """Add a batch of logits (shapes as :func:`buried_codes`) at backward temperature ``tau_b``."""
        mass, total = _buried_codes_update(logits, tau_b, binary, dim)
        if tuple(mass.shape) != self.code_shape:
            raise ValueError(f"expected codes of shape {self.code_shape} per example, got {tuple(mass.shape)}")
        self.mass += mass
        self.total += total

    @override
    def compute(self) -> Tensor:
        return _buried_codes_compute(self.mass, self.total, self.tol)


# --------------------------------------------------------------------------- importance-weighted NLL
def _importance_weighted_nll_update(log_weights: Tensor) -> Tuple[Tensor, int]:
    """Sum over examples of ``-(logsumexp_s w_s - log S)`` (float64, on the device) and their number."""
    if log_weights.dim() != 2 or log_weights.shape[0] < 1:
        raise ValueError(
            f"`log_weights` must be (num_samples, num_examples) with num_samples >= 1, got {tuple(log_weights.shape)}"
        )
    w = log_weights.detach().to(torch.float64)
    bound = torch.logsumexp(w, 0) - math.log(w.shape[0])
    return -bound.sum(), bound.numel()


def _importance_weighted_nll_compute(total: Tensor, count: Tensor) -> Tensor:
    """``total / count`` in float64 (NaN where ``count`` is 0)."""
    count = count.to(torch.float64)
    return torch.where(count > 0, total.to(torch.float64) / count.clamp_min(1), torch.nan)


def importance_weighted_nll(log_weights: Tensor) -> Tensor:
    """Mean over examples of the importance-weighted bound on the negative log-likelihood,
    ``-log (1/S) sum_s exp(w_s)`` with ``w_s = log p(x, z_s) - log q(z_s | x)`` and
    ``z_s ~ q(z | x)`` (Burda et al.'s bound; ``S = 1`` is the negative ELBO).

    ``-log p(x) <= E[result]``, and the bound tightens as ``S`` grows. A model whose samples
    come from its own prior (a stochastic binary network, ``q = p(h | x)``) passes
    ``w_s = log p(y | h_s)``.

    Args:
        log_weights: ``(S, N)`` log importance weights, ``S`` samples of each of ``N`` examples.

    Returns:
        A float64 scalar (nats per example).

    Examples:
        >>> import torch
        >>> importance_weighted_nll(torch.log(torch.tensor([[0.5], [0.1]])))  # -log((0.5 + 0.1) / 2)
        tensor(1.2040, dtype=torch.float64)
    """
    total, count = _importance_weighted_nll_update(log_weights)
    return _importance_weighted_nll_compute(total, torch.tensor(count, device=total.device))


class ImportanceWeightedNLL(Metric):
    """Importance-weighted negative log-likelihood bound over many batches (the test
    likelihood of :class:`~lightning_discrete.models.CategoricalVAE` and
    :class:`~lightning_discrete.models.StructuredOutputNetwork`).

    States ``total`` (float64 sum over examples) and ``count`` are summed across ranks; an
    update never synchronises. Functional twin: :func:`importance_weighted_nll`.

    Args:
        **kwargs: torchmetrics ``Metric`` options.

    Examples:
        >>> metric = ImportanceWeightedNLL()
        >>> metric.update(torch.log(torch.tensor([[0.5], [0.1]])))
        >>> metric.update(torch.log(torch.tensor([[0.2, 0.2]])))
        >>> metric.compute()  # mean of 1.2040, 1.6094, 1.6094
        tensor(1.4743, dtype=torch.float64)
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    total: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @override
    def update(self, log_weights: Tensor) -> None:
        """Add the examples of ``log_weights`` ``(S, N)`` (``S`` samples of ``N`` examples)."""
        total, count = _importance_weighted_nll_update(log_weights)
        self.total += total.to(self.total.device)
        self.count += count

    @override
    def compute(self) -> Tensor:
        return _importance_weighted_nll_compute(self.total, self.count)
