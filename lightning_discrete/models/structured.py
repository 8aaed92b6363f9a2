"""Structured output prediction: a stochastic network that predicts the lower half of an image
from its upper half (the Gumbel-Softmax paper's SBN task)."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from ..nn.bottleneck import BinaryBottleneck, CategoricalBottleneck
from .latent_variable import LatentVariableModule, exact_sample

__all__ = ["StructuredOutputNetwork"]


class StructuredOutputNetwork(LatentVariableModule):
    """Stochastic network ``p(y | x) = E_{h ~ p(h | x)} p(y | h)`` with stochastic hidden
    layers, predicting the last ``output_dim`` pixels of an image from the first
    ``input_dim`` (the Gumbel-Softmax paper: 392-200-200-392 with Bernoulli units, or
    392-(20x10)-(20x10)-392 with categorical ones, on binarised MNIST).

    Each hidden layer is ``Linear -> bottleneck``: ``hidden_dims[i]`` Bernoulli units, or
    with ``num_categories = k`` ``hidden_dims[i] / k`` categorical latents of ``k`` classes
    (one-hot, flattened to ``hidden_dims[i]`` inputs of the next layer). The output layer
    gives Bernoulli logits of the ``output_dim`` target pixels.

    The loss of an example is the importance-sampled objective with ``m = train_num_samples``
    samples of the hidden layers from the network itself,
    ``-log (1/m) sum_s p(y | h_s)`` (``m = 1``: the expected negative log-likelihood; an upper
    bound on ``-log p(y | x)``). In eval mode the samples are exact (temperature 1, whatever
    ``eval_mode``), and ``test/nll`` is the same objective with ``test_num_samples`` samples
    (the paper: 1000). Logs ``{stage}/loss`` and ``test/nll``.

    Batches are ``(x, y)`` or ``x`` with ``x`` ``(B, *)`` flattening to
    ``input_dim + output_dim`` features in ``[0, 1]`` (labels ignored).

    Args:
        input_dim: observed pixels (the first ones of the flattened image).
        output_dim: predicted pixels (the rest).
        hidden_dims: width of each stochastic layer.
        num_categories: ``None`` for Bernoulli units, else classes per categorical latent
            (must divide every hidden width).
        train_num_samples: ``m`` of the training objective (``1`` for score-function
            estimators, whose own samples are repeats of the batch).
        test_num_samples: samples per test example of ``test/nll`` (``0``: none).
        test_chunk_size: samples per pass of ``test/nll``.
        **kwargs: ``q_at_tau_f``, ``test_objective``: see
            :class:`~lightning_discrete.models.LatentVariableModule`; estimator, temperatures,
            optimizer, ...: see :class:`DiscreteModule`.

    Examples:
        >>> import torch
        >>> from lightning_discrete.models import StructuredOutputNetwork
        >>> net = StructuredOutputNetwork(8, 8, hidden_dims=(6, 6), num_categories=3, estimator="gumbel_softmax_st", tau=1.0)
        >>> net(torch.rand(4, 8)).shape  # logits of the 8 predicted pixels
        torch.Size([4, 8])
        >>> losses, metrics = net.step(torch.rand(4, 16).round())
        >>> losses.shape, metrics
        (torch.Size([4]), {})
    """

    def __init__(
        self,
        input_dim: int = 392,
        output_dim: int = 392,
        hidden_dims: Sequence[int] = (200, 200),
        num_categories: Optional[int] = None,
        train_num_samples: int = 1,
        test_num_samples: int = 1000,
        test_chunk_size: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(test_num_samples=test_num_samples, test_chunk_size=test_chunk_size, **kwargs)
        hidden_dims = tuple(int(h) for h in hidden_dims)
        if input_dim < 1 or output_dim < 1 or not hidden_dims or any(h < 1 for h in hidden_dims):
            raise ValueError(
                "`input_dim`, `output_dim` and every `hidden_dims` entry must be >= 1 (at least one hidden "
                f"layer), got {input_dim}, {output_dim}, {list(hidden_dims)}"
            )
        if num_categories is not None and (num_categories < 2 or any(h % num_categories for h in hidden_dims)):
            raise ValueError(
                f"`num_categories` must be >= 2 and divide every `hidden_dims` entry, got {num_categories} "
                f"and {list(hidden_dims)}"
            )
        if train_num_samples < 1:
            raise ValueError(f"`train_num_samples` must be >= 1, got {train_num_samples}")
        if train_num_samples > 1 and self.num_score_samples > 1:
            raise ValueError(
                f"`train_num_samples` must be 1 with the score-function estimator {self.bottleneck_config.estimator!r} "
                "(its samples are repeats of the batch: set `num_samples` instead)"
            )
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.num_categories = num_categories
        self.train_num_samples = int(train_num_samples)
        self.linears = nn.ModuleList()
        self.units = nn.ModuleList()
        prev = input_dim
        for h in hidden_dims:
            self.linears.append(nn.Linear(prev, h))
            if num_categories is None:
                self.units.append(BinaryBottleneck(**self.bottleneck_kwargs()))
            else:
                self.units.append(CategoricalBottleneck(num_categories=num_categories, **self.bottleneck_kwargs()))
            prev = h
        self.head = nn.Linear(prev, output_dim)

    def _output_logits(self, x: Tensor, exact: bool) -> Tensor:
        h = x
        for linear, unit in zip(self.linears, self.units):
            logits = linear(h)
            if self.num_categories is not None:
                logits = logits.view(*logits.shape[:-1], -1, self.num_categories)
            z = exact_sample(self.q_logits(logits, unit), self.num_categories is None) if exact else unit(logits)
            h = z.flatten(-2) if self.num_categories is not None else z
        return self.head(h)

    @override
    def forward(self, x: Tensor) -> Tensor:
        """``(B, input_dim) -> (B, output_dim)`` logits of the predicted pixels, through the bottlenecks.

        Args:
            x: ``(B, input_dim)`` observed pixels.
        """
        return self._output_logits(x, exact=False)

    def _split(self, batch: Any) -> Tuple[Tensor, Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        x = x.flatten(1).to(torch.get_default_dtype())
        if x.shape[1] != self.input_dim + self.output_dim:
            raise ValueError(
                f"expected images of input_dim + output_dim = {self.input_dim + self.output_dim} pixels, "
                f"got {x.shape[1]}"
            )
        return x[:, : self.input_dim], x[:, self.input_dim :]

    def _log_likelihoods(self, batch: Any, num_samples: int, exact: bool) -> Tensor:
        """``log p(y | h_s)`` ``(num_samples, B)``, the samples stacked sample-major."""
        x, y = self._split(batch)
        xs = x.repeat(num_samples, 1) if num_samples > 1 else x
        ys = y.repeat(num_samples, 1) if num_samples > 1 else y
        nll = F.binary_cross_entropy_with_logits(self._output_logits(xs, exact), ys, reduction="none").sum(-1)
        return -nll.view(num_samples, -1)

    @override
    def step(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Per-example ``-log (1/m) sum_s p(y | h_s)`` ``(B,)``, ``m = train_num_samples``; no
        extra metrics. Training draws with the estimator, evaluation exactly.

        Args:
            batch: ``(x, y)`` or ``x`` (see the class docstring).
        """
        m = self.train_num_samples
        log_p = self._log_likelihoods(batch, m, exact=not self.training)
        return -(torch.logsumexp(log_p, 0) - math.log(m)), {}

    @override
    def sample_log_weights(self, batch: Any, num_samples: int) -> Tensor:
        """``log p(y | h_s)`` ``(num_samples, B)`` with exact samples ``h_s ~ p(h | x)``.

        Args:
            batch: ``(x, y)`` or ``x``.
            num_samples: samples per example.
        """
        return self._log_likelihoods(batch, num_samples, exact=True)
