"""Deep differentiable logic-gate network classifier (Petersen et al., 2022)."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple, Union

from torch import Tensor, nn
from typing_extensions import override

from ..nn.logic import GroupSum, LogicGateLayer
from ..nn.logic_c import CExportReport, CompiledLogicNetwork, compile_c, export_c
from ..nn.logic_packed import PackedLogicNetwork
from .base import DiscreteModule, classification_step

__all__ = ["LogicGateNetwork"]


class LogicGateNetwork(DiscreteModule):
    """Classifier made of ``num_layers`` :class:`LogicGateLayer` s and a :class:`GroupSum`.

    Input ``(B, *)`` with values in ``[0, 1]`` (binarised images) is flattened to
    ``(B, in_features)``; output ``(B, num_classes)`` scores (group sums over
    ``group_sum_tau``), trained with cross-entropy.  Logs ``{train,val,test}/loss`` and
    ``/acc``.  In eval mode (``eval_mode="argmax"``) the network is an exact Boolean
    circuit: :meth:`to_packed` and :meth:`to_c` give the same scores on Boolean input.

    Args:
        in_features: flattened input size (CIFAR-10 with 3 thresholds: 3 * 3072).
        num_neurons: gates per layer.
        num_layers: logic-gate layers.
        num_classes: classes, at least 2 (``num_neurons`` must be divisible by it).
        group_sum_tau: GroupSum divisor (the paper uses 10 to 100 depending on width).
        wiring: ``"random"`` or ``"unique"``.
        init: ``"residual"`` or ``"gaussian"`` gate-logit initialisation.
        sample_per_example: sample gates per example instead of once per step.
        wiring_seed: seed of the wiring of layer ``i`` is ``wiring_seed + i`` (``None``: global RNG).
        **kwargs: estimator, temperatures, optimizer, ...: see :class:`DiscreteModule`.

    Raises:
        ValueError: ``num_layers < 1``, ``num_classes < 2``, ``num_neurons`` not
            divisible by ``num_classes``, or a bad layer argument.

    Examples:
        >>> import torch
        >>> model = LogicGateNetwork(in_features=8, num_neurons=12, num_layers=2, num_classes=3, wiring_seed=0)
        >>> x = torch.randint(0, 2, (5, 2, 4)).float()
        >>> model(x).shape
        torch.Size([5, 3])
        >>> losses, metrics = model.step((x, torch.tensor([0, 1, 2, 0, 1])))
        >>> losses.shape, sorted(metrics)
        (torch.Size([5]), ['acc'])
    """

    def __init__(
        self,
        in_features: int = 3072 * 3,
        num_neurons: int = 12000,
        num_layers: int = 4,
        num_classes: int = 10,
        group_sum_tau: float = 100.0,
        wiring: str = "random",
        init: str = "residual",
        sample_per_example: bool = False,
        wiring_seed: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"`num_layers` must be >= 1, got {num_layers}")
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be >= 2, got {num_classes}")
        self.readout = GroupSum(num_classes, group_sum_tau, in_features=num_neurons)
        layers = []
        prev = in_features
        for i in range(num_layers):
            layers.append(
                LogicGateLayer(
                    prev,
                    num_neurons,
                    wiring=wiring,
                    init=init,
                    sample_per_example=sample_per_example,
                    generator_seed=None if wiring_seed is None else wiring_seed + i,
                    **self.bottleneck_kwargs(),
                )
            )
            prev = num_neurons
        self.layers = nn.ModuleList(layers)
        self.in_features = in_features
        self.num_classes = num_classes

    @override
    def forward(self, x: Tensor) -> Tensor:
        """Class scores.

        Args:
            x: ``(B, *)`` examples with ``in_features`` values each, in ``[0, 1]``.

        Returns:
            ``(B, num_classes)`` GroupSum scores.
        """
        h = x.flatten(1)
        if h.shape[1] != self.in_features:
            raise ValueError(f"expected {self.in_features} input features, got {h.shape[1]}")
        for layer in self.layers:
            h = layer(h)
        return self.readout(h)

    @override
    def step(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Cross-entropy of a batch.

        Args:
            batch: ``(x, y)``: ``(B, *)`` examples and ``(B,)`` long class labels.

        Returns:
            ``(B,)`` per-example losses and ``{"acc": accuracy}``.
        """
        x, y = batch
        return classification_step(self(x), y)

    # -- inference ----------------------------------------------------------------- #
    def to_packed(self) -> PackedLogicNetwork:
        """The argmax network on bit-packed input.

        Returns:
            A :class:`PackedLogicNetwork` with this model's argmax gates; on Boolean
            input its scores equal this model's in eval mode (``eval_mode="argmax"``).

        Examples:
            >>> import torch
            >>> model = LogicGateNetwork(in_features=8, num_neurons=12, num_layers=2, num_classes=3).eval()
            >>> x = torch.randint(0, 2, (70, 8)).float()
            >>> torch.equal(model.to_packed()(x), model(x))
            True
        """
        return PackedLogicNetwork.from_layers(list(self.layers), self.readout)

    def to_c(
        self, path: Union[str, os.PathLike], simplify: bool = True, compile: bool = False
    ) -> Union[CExportReport, CompiledLogicNetwork]:
        """Write the simplified argmax network as C to ``path`` (:func:`~lightning_discrete.nn.logic_c.export_c`).

        Args:
            path: the ``.c`` file to write.
            simplify: merge duplicate gates and drop dead ones (constants, wires and
                NOTs are always folded).
            compile: also compile and load it (:func:`~lightning_discrete.nn.logic_c.compile_c`;
                needs a C compiler).

        Returns:
            The :class:`CExportReport` (gates removed etc.), or with ``compile=True``
            the loaded :class:`CompiledLogicNetwork`.

        Examples:
            >>> import os, tempfile
            >>> model = LogicGateNetwork(in_features=8, num_neurons=12, num_layers=2, num_classes=3)
            >>> report = model.to_c(os.path.join(tempfile.mkdtemp(), "net.c"))
            >>> report.num_neurons, report.num_classes
            (24, 3)
        """
        report = export_c(list(self.layers), self.readout, path, simplify=simplify)
        return compile_c(report) if compile else report
