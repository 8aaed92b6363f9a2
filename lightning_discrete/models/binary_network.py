"""Stochastic binary network: an MLP classifier whose hidden units are binary."""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

from torch import Tensor, nn

from ..nn.bottleneck import BinaryBottleneck
from .base import DiscreteModule, classification_step

__all__ = ["StochasticBinaryNetwork"]


class StochasticBinaryNetwork(DiscreteModule):
    """MLP classifier with stochastic binary hidden units (paper: 784-200-200-10 on
    FashionMNIST, batch 128, Adam lr 1e-3, 100 epochs).

    Each hidden layer is ``Linear -> BinaryBottleneck``; the output layer is linear.
    Input ``(B, *)`` is flattened to ``(B, input_dim)``; output logits ``(B, num_classes)``.
    Logs ``{train,val,test}/loss`` and ``/acc``.

    Args:
        input_dim: flattened input size.
        hidden_dims: sizes of the binary hidden layers.
        num_classes: output classes.
        center: feed ``2z - 1`` (values in ``{-1, 1}``) to the next layer instead of ``z``.
        **kwargs: estimator, temperatures, optimizer, ...: see :class:`DiscreteModule`.
    """

    def __init__(
        self,
        input_dim: int = 784,
        hidden_dims: Sequence[int] = (200, 200),
        num_classes: int = 10,
        center: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if input_dim < 1 or num_classes < 2 or any(h < 1 for h in hidden_dims):
            raise ValueError(
                "`input_dim` and every `hidden_dims` entry must be >= 1 and `num_classes` >= 2, got "
                f"input_dim={input_dim}, hidden_dims={list(hidden_dims)}, num_classes={num_classes}"
            )
        self.center = center
        layers = []
        prev = input_dim
        for h in hidden_dims:
            layers += [nn.Linear(prev, h), BinaryBottleneck(**self.bottleneck_kwargs())]
            prev = h
        self.hidden = nn.ModuleList(layers)
        self.head = nn.Linear(prev, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, *) -> (B, num_classes)`` class logits."""
        h = x.flatten(1)
        for layer in self.hidden:
            h = layer(h)
            if isinstance(layer, BinaryBottleneck) and self.center and layer.estimator != "sign":
                h = 2 * h - 1
        return self.head(h)

    def step(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        x, y = batch
        return classification_step(self(x), y)
