"""Stochastic binary network: an MLP classifier whose hidden units are binary."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

from torch import Tensor, nn
from typing_extensions import override

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
        input_dim: flattened input size; ``None`` takes it from the datamodule's
            ``input_dim`` when training starts (the layers are then built in
            :meth:`configure_model`, and the value is saved in the checkpoint's
            hyperparameters).
        hidden_dims: sizes of the binary hidden layers.
        num_classes: output classes.
        center: feed ``2z - 1`` (values in ``{-1, 1}``) to the next layer instead of ``z``
            (signed estimators such as ``sign_st`` already output ``{-1, 0, 1}``).
        **kwargs: estimator, temperatures, optimizer, ...: see :class:`DiscreteModule`.

    Examples:
        >>> import torch
        >>> from lightning_discrete.models import StochasticBinaryNetwork
        >>> model = StochasticBinaryNetwork(16, [8, 8], 3, estimator="decoupled_st", tau_f=0.1, tau_b=0.7)
        >>> model(torch.rand(4, 16)).shape
        torch.Size([4, 3])
        >>> losses, metrics = model.step((torch.rand(4, 16), torch.tensor([0, 1, 2, 0])))
        >>> losses.shape, sorted(metrics)
        (torch.Size([4]), ['acc'])
    """

    def __init__(
        self,
        input_dim: Optional[int] = 784,
        hidden_dims: Sequence[int] = (200, 200),
        num_classes: int = 10,
        center: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (input_dim is not None and input_dim < 1) or num_classes < 2 or any(h < 1 for h in hidden_dims):
            raise ValueError(
                "`input_dim` and every `hidden_dims` entry must be >= 1 and `num_classes` >= 2, got "
                f"input_dim={input_dim}, hidden_dims={list(hidden_dims)}, num_classes={num_classes}"
            )
        self.center = center
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.num_classes = num_classes
        self.hidden = nn.ModuleList()
        self.head: Optional[nn.Linear] = None
        if input_dim is not None:
            self._build(int(input_dim))

    def _build(self, input_dim: int) -> None:
        layers = []
        prev = input_dim
        for h in self.hidden_dims:
            layers += [nn.Linear(prev, h), BinaryBottleneck(**self.bottleneck_kwargs())]
            prev = h
        self.hidden = nn.ModuleList(layers)
        self.head = nn.Linear(prev, self.num_classes)

    @override
    def configure_model(self) -> None:
        """With ``input_dim=None``: build the layers for the datamodule's ``input_dim``
        (then compile, see :meth:`DiscreteModule.configure_model`)."""
        if self.head is None:
            self._build_from_data()
        super().configure_model()

    def _build_from_data(self) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        dim = getattr(dm, "input_dim", None)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(
                "`input_dim` is null (take it from the data), but the data has no `input_dim` attribute; "
                "set `input_dim` to the number of input features"
            )
        self.hparams["input_dim"] = dim  # saved in checkpoints: load_from_checkpoint builds the same layers
        self._build(dim)

    @override
    def forward(self, x: Tensor) -> Tensor:
        """``(B, *) -> (B, num_classes)`` class logits.

        Args:
            x: ``(B, *)`` inputs, flattened to ``(B, input_dim)``.
        """
        return self._built()(self._run(x.flatten(1), 0, None))

    def _built(self) -> nn.Linear:
        if self.head is None:
            raise RuntimeError(
                "the layers are not built yet: `input_dim` is None, so they are built from the datamodule's "
                "`input_dim` when a Trainer starts; pass `input_dim` to use the model without one"
            )
        return self.head

    def _run(self, h: Tensor, start: int, stop: Optional[int]) -> Tensor:
        for layer in list(self.hidden)[start:stop]:  # a ModuleList slice would build a new module each call
            h = layer(h)
            if isinstance(layer, BinaryBottleneck):
                h = self._centre(layer, h)
        return h

    def _centre(self, layer: BinaryBottleneck, z: Tensor) -> Tensor:
        return 2 * z - 1 if self.center and not layer.estimator_spec.signed else z

    def _bottleneck_position(self, layer: int) -> int:
        positions = [i for i, m in enumerate(self.hidden) if isinstance(m, BinaryBottleneck)]
        if not -len(positions) <= layer < len(positions):
            raise ValueError(f"`layer` must index one of the {len(positions)} binary layers, got {layer}")
        return positions[layer]

    def binary_layer_logits(self, x: Tensor, layer: int = -1) -> Tensor:
        """Logits ``(B, units)`` of binary layer ``layer`` (``0`` the first, ``-1`` the last):
        the network up to that layer's bottleneck, earlier binary layers as in
        :meth:`forward` (sampled in training mode).

        Args:
            x: ``(B, *)`` inputs, flattened to ``(B, input_dim)``.
            layer: which binary layer, counted over the binary layers only.

        Examples:
            >>> import torch
            >>> from lightning_discrete.models import StochasticBinaryNetwork
            >>> StochasticBinaryNetwork(16, [8, 5], 3).binary_layer_logits(torch.rand(4, 16)).shape
            torch.Size([4, 5])
        """
        self._built()
        return self._run(x.flatten(1), 0, self._bottleneck_position(layer))

    def forward_from(self, z: Tensor, layer: int = -1) -> Tensor:
        """Class logits ``(*, num_classes)`` given the state ``z`` of binary layer ``layer``:
        the rest of the network run on ``z`` (centred as in :meth:`forward`), so that
        ``forward_from(bottleneck(binary_layer_logits(x, i)), i)`` is :meth:`forward`.

        Args:
            z: ``(*, units)`` states of the layer in ``{0, 1}`` (any leading dimensions).
            layer: which binary layer, counted over the binary layers only.

        Examples:
            >>> import torch
            >>> from lightning_discrete.models import StochasticBinaryNetwork
            >>> model = StochasticBinaryNetwork(16, [6], 3)
            >>> model.forward_from(torch.randint(2, (7, 4, 6)).float()).shape  # 7 states of 4 examples
            torch.Size([7, 4, 3])
        """
        head = self._built()
        position = self._bottleneck_position(layer)
        return head(self._run(self._centre(self.hidden[position], z), position + 1, None))

    @override
    def step(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Per-example cross-entropy ``(B,)`` and ``{"acc": ...}`` of a batch ``(x, y)``.

        Args:
            batch: ``(x, y)`` with ``x`` ``(B, *)`` and integer labels ``y`` ``(B,)``.
        """
        x, y = batch
        return classification_step(self(x), y)
