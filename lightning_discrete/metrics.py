"""torchmetrics ``Metric`` classes (and functional twins) for discrete latents.

* :func:`perplexity_from_counts` / :func:`dead_fraction_from_counts` — functional
  forms on a tensor of counts (categories on the last dim).
* :class:`CodebookUsage` — accumulates how often each code of each latent (and,
  where tractable, each joint code of all latents) is chosen; every state is
  reduced by **sum** across processes, so the perplexity of a distributed epoch is
  computed from the global counts (never an average of per-rank perplexities).

Perplexity is ``exp(H)`` with ``H = -sum_c p_c log p_c`` and ``p = counts / sum``
(``0 log 0 = 0``); it lies in ``[1, k]`` for ``k`` categories.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "entropy_from_counts",
    "perplexity_from_counts",
    "dead_fraction_from_counts",
    "joint_index",
    "CodebookUsage",
]


def entropy_from_counts(counts: Tensor, dim: int = -1) -> Tensor:
    """Entropy (nats) of the empirical distribution ``counts / counts.sum(dim)``.

    Args:
        counts: non-negative counts ``(*, k)`` (categories on ``dim``).
        dim: the category dimension.

    Returns:
        ``(*)`` entropies in float64; NaN where a row has no counts.
    """
    c = counts.to(torch.float64)
    total = c.sum(dim, keepdim=True)
    p = c / total
    plogp = torch.where(c > 0, p * torch.log(torch.where(c > 0, p, torch.ones_like(p))), torch.zeros_like(p))
    h = -plogp.sum(dim)
    return torch.where(total.squeeze(dim) > 0, h, torch.full_like(h, float("nan")))


def perplexity_from_counts(counts: Tensor, dim: int = -1) -> Tensor:
    """Perplexity ``exp(H)`` of the empirical distribution of ``counts`` along ``dim``.

    Args:
        counts: non-negative counts ``(*, k)``.
        dim: the category dimension.

    Returns:
        ``(*)`` float64 perplexities in ``[1, k]`` (NaN for rows without counts).

    Example:
        >>> perplexity_from_counts(torch.tensor([5, 5, 0, 0]))
        tensor(2., dtype=torch.float64)
    """
    return torch.exp(entropy_from_counts(counts, dim))


def dead_fraction_from_counts(counts: Tensor) -> Tensor:
    """Fraction of entries of ``counts`` that are zero (codes never chosen), float64 scalar."""
    return (counts == 0).to(torch.float64).mean()


def joint_index(indices: Tensor, num_categories: int) -> Tensor:
    """Joint code of ``L`` latents: ``sum_l indices[:, l] * k**l``.

    Args:
        indices: ``(N, L)`` long in ``[0, k)``.
        num_categories: ``k``.

    Returns:
        ``(N,)`` long in ``[0, k**L)``.
    """
    L = indices.shape[-1]
    base = num_categories ** torch.arange(L, device=indices.device, dtype=torch.long)
    return (indices.long() * base).sum(-1)


class CodebookUsage(Metric):
    """Code usage of a bottleneck with ``num_latents`` latents of ``num_categories`` codes.

    ``update(indices)`` takes ``(N, L)`` long codes (what
    :attr:`~lightning_discrete.nn.DiscreteBottleneck.last_indices` holds).
    ``compute()`` returns a dict of float64 scalars:

    * ``perplexity`` — mean over latents of the per-latent perplexity (``[1, k]``);
    * ``dead_fraction`` — fraction of (latent, code) pairs never chosen;
    * ``joint_perplexity`` / ``joint_used`` — perplexity of the joint code of all
      latents and the number of distinct joint codes seen, only when ``L > 1`` and
      ``k ** L <= joint_limit`` (the joint histogram is a dense state of that size).

    States (``counts (L, k)``, ``joint_counts (k**L,)``, ``total``) are reduced by sum.

    Args:
        num_categories: ``k`` (2 for binary units).
        num_latents: ``L``.
        joint_limit: largest ``k ** L`` for which joint usage is tracked.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    counts: Tensor
    joint_counts: Tensor
    total: Tensor

    def __init__(self, num_categories: int, num_latents: int = 1, joint_limit: int = 65536, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_categories < 2:
            raise ValueError(f"`num_categories` must be >= 2, got {num_categories}")
        if num_latents < 1:
            raise ValueError(f"`num_latents` must be >= 1, got {num_latents}")
        self.num_categories = int(num_categories)
        self.num_latents = int(num_latents)
        self.track_joint = self.num_latents > 1 and self.num_categories**self.num_latents <= joint_limit
        self.add_state("counts", torch.zeros(num_latents, num_categories, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        if self.track_joint:
            size = self.num_categories**self.num_latents
            self.add_state("joint_counts", torch.zeros(size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, indices: Tensor) -> None:  # type: ignore[override]
        """Add ``(N, L)`` codes (a 1-D tensor is read as ``(N, 1)``)."""
        if indices.dim() == 1:
            indices = indices.unsqueeze(-1)
        if indices.dim() != 2 or indices.shape[1] != self.num_latents:
            raise ValueError(f"expected indices of shape (N, {self.num_latents}), got {tuple(indices.shape)}")
        idx = indices.to(self.counts.device)
        k = self.num_categories
        n = idx.shape[0]
        if k == 2:  # binary units: a column sum is the histogram (no scatter)
            ones = idx.sum(0, dtype=torch.long)
            self.counts[:, 1] += ones
            self.counts[:, 0] += n - ones
        else:
            idx = idx.long()
            offsets = torch.arange(self.num_latents, device=idx.device) * k
            flat = (idx + offsets).reshape(-1)
            # scatter-add into the fixed-size states: unlike ``bincount`` (whose output size
            # depends on the data), no host-device synchronisation on CUDA
            self.counts.view(-1).index_add_(0, flat, torch.ones_like(flat))
        self.total += n
        if self.track_joint:
            joint = joint_index(idx.long(), k)
            self.joint_counts.index_add_(0, joint, torch.ones_like(joint))

    def compute(self) -> Dict[str, Tensor]:  # type: ignore[override]
        out = {
            "perplexity": perplexity_from_counts(self.counts).mean(),
            "dead_fraction": dead_fraction_from_counts(self.counts),
        }
        if self.track_joint:
            out["joint_perplexity"] = perplexity_from_counts(self.joint_counts)
            out["joint_used"] = (self.joint_counts > 0).sum().to(torch.float64)
        return out
