"""Categorical autoencoder: encoder -> categorical latents -> decoder, Bernoulli likelihood."""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from ..nn.bottleneck import CategoricalBottleneck
from .base import DiscreteModule

__all__ = ["CategoricalAutoencoder"]


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CategoricalAutoencoder(DiscreteModule):
    """Autoencoder with ``num_latents`` categorical latents of ``num_categories`` classes
    (paper: 4 x 8 on MNIST, batch 200, 160 epochs) and a binary cross-entropy
    reconstruction loss summed over pixels.

    Input ``(B, *)`` in ``[0, 1]`` is flattened to ``(B, input_dim)``; the encoder
    gives logits ``(B, num_latents, num_categories)``, the bottleneck one-hot codes of
    the same shape, the decoder reconstruction logits ``(B, input_dim)``.
    Batches are ``x`` or ``(x, y)`` (labels ignored). Logs ``{train,val,test}/loss``.

    Args:
        input_dim: flattened input size.
        num_latents: number of categorical latents ``L``.
        num_categories: classes per latent ``k``.
        hidden_dims: hidden sizes of the encoder (the decoder mirrors them).
        **kwargs: estimator, temperatures, optimizer, ...: see :class:`DiscreteModule`.

    Examples:
        >>> import torch
        >>> from lightning_discrete.models import CategoricalAutoencoder
        >>> ae = CategoricalAutoencoder(16, num_latents=2, num_categories=4, hidden_dims=[8], estimator="softmax_st", tau=0.5)
        >>> ae.encode(torch.rand(3, 16)).shape, ae(torch.rand(3, 16)).shape
        (torch.Size([3, 2, 4]), torch.Size([3, 16]))
        >>> losses, metrics = ae.step(torch.rand(3, 16))
        >>> losses.shape, metrics
        (torch.Size([3]), {})
    """

    def __init__(
        self,
        input_dim: int = 784,
        num_latents: int = 4,
        num_categories: int = 8,
        hidden_dims: Sequence[int] = (512, 256),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_categories < 2:
            raise ValueError(f"`num_categories` must be >= 2, got {num_categories}")
        if num_latents < 1 or input_dim < 1:
            raise ValueError(f"`num_latents` and `input_dim` must be >= 1, got {num_latents}, {input_dim}")
        self.num_latents = num_latents
        self.num_categories = num_categories
        code = num_latents * num_categories
        self.encoder = _mlp([input_dim, *hidden_dims, code])
        self.bottleneck = CategoricalBottleneck(num_categories=num_categories, **self.bottleneck_kwargs())
        self.decoder = _mlp([code, *reversed(list(hidden_dims)), input_dim])

    def encode(self, x: Tensor) -> Tensor:
        """``(B, *) -> (B, num_latents, num_categories)`` logits.

        Args:
            x: ``(B, *)`` inputs, flattened to ``(B, input_dim)``.
        """
        return self.encoder(x.flatten(1)).view(-1, self.num_latents, self.num_categories)

    @override
    def forward(self, x: Tensor) -> Tensor:
        """``(B, *) -> (B, input_dim)`` reconstruction logits.

        Args:
            x: ``(B, *)`` inputs in ``[0, 1]``.
        """
        return self.decode(self.bottleneck(self.encode(x)))

    def decode(self, z: Tensor) -> Tensor:
        """``(*, num_latents, num_categories) -> (*, input_dim)`` reconstruction logits of codes.

        Args:
            z: ``(*, num_latents, num_categories)`` one-hot (or relaxed) codes; any leading
                dimensions (several codes per example, as in ``analysis.temperature_landscape``).

        Examples:
            >>> import torch
            >>> from lightning_discrete.models import CategoricalAutoencoder
            >>> ae = CategoricalAutoencoder(16, num_latents=2, num_categories=4, hidden_dims=[8])
            >>> ae.decode(torch.eye(4)[torch.zeros(5, 3, 2, dtype=torch.long)]).shape
            torch.Size([5, 3, 16])
        """
        return self.decoder(z.flatten(-2))

    def code_loss(self, z: Tensor, x: Tensor) -> Tensor:
        """Reconstruction loss ``L(z) = BCE(decode(z), x)`` summed over pixels: the loss of a
        code, the function of the discrete state that the estimators differentiate.

        Args:
            z: ``(*, B, num_latents, num_categories)`` codes, ``z[..., b, :, :]`` a code of
                example ``b``.
            x: ``(B, *)`` inputs in ``[0, 1]``.

        Returns:
            ``(*, B)`` per-example losses.

        Examples:
            >>> import torch
            >>> from lightning_discrete.models import CategoricalAutoencoder
            >>> ae = CategoricalAutoencoder(16, num_latents=2, num_categories=4, hidden_dims=[8])
            >>> codes = torch.eye(4)[torch.randint(4, (7, 3, 2))]  # 7 codes for each of 3 examples
            >>> ae.code_loss(codes, torch.rand(3, 16)).shape
            torch.Size([7, 3])
        """
        target = x.flatten(1).to(torch.get_default_dtype())
        return F.binary_cross_entropy_with_logits(
            self.decode(z), target.expand(z.shape[:-2] + target.shape[-1:]), reduction="none"
        ).sum(-1)

    @override
    def step(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Per-example reconstruction losses ``(B,)`` (binary cross-entropy summed over
        pixels) and no extra metrics.

        Args:
            batch: ``x`` or ``(x, y)`` (labels ignored), ``x`` ``(B, *)`` in ``[0, 1]``.
        """
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.code_loss(self.bottleneck(self.encode(x)), x), {}
