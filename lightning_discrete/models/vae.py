"""Variational autoencoder with categorical (or Bernoulli) latents, Bernoulli likelihood."""

from __future__ import annotations

import math
from typing import Any, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from .. import functional as LF
from ..nn.bottleneck import BinaryBottleneck, CategoricalBottleneck
from .autoencoder import _mlp
from .latent_variable import LatentVariableModule, exact_sample

__all__ = ["CategoricalVAE"]

_PRIORS = ("uniform", "learned")


class CategoricalVAE(LatentVariableModule):
    """VAE with ``num_latents`` categorical latents of ``num_categories`` classes (the
    Gumbel-Softmax paper: 20 x 10 on binarised MNIST; with ``bernoulli``: 200 binary units),
    a Bernoulli decoder and the loss ``-ELBO = reconstruction + KL(q(z|x) || p(z))``.

    Input ``(B, *)`` in ``[0, 1]`` (binarised images) is flattened to ``(B, input_dim)``; the
    encoder gives logits ``(B, L, k)`` (``(B, L)`` with ``bernoulli``), the bottleneck a
    sample of the same shape, the decoder pixel logits ``(B, input_dim)``.

    * Reconstruction: binary cross-entropy summed over pixels, ``-log p(x|z)``.
    * KL: analytic, of the categorical distributions ``q(z|x) = Cat(softmax(l))`` and the
      prior (:func:`~lightning_discrete.functional.categorical_kl`), for every estimator.
      The relaxed ``gumbel_softmax`` feeds the decoder a relaxed sample but keeps this
      categorical KL (the Gumbel-Softmax paper's convention), so its training loss is not a
      bound; estimators that sample from ``softmax(l / tau_f)`` (``decoupled_st``,
      ``softmax_st`` with ``tau_f != 1``; ``identity_st``: the mode) optimise the same
      surrogate, unless ``q_at_tau_f`` makes the forward temperature part of the encoder.
      Evaluation is always exact: in eval mode the latents are drawn from ``q(z|x)``
      (:func:`~lightning_discrete.models.exact_sample`, whatever ``eval_mode``), so
      ``val/loss`` and ``test/loss`` are single-sample estimates of the negative ELBO, and
      ``test/nll`` the importance-weighted bound with ``test_num_samples`` samples. Monitors
      that read the bottleneck (``LatentUtilizationMonitor``) therefore see training batches
      only: give them ``stages: [train]``.
    * ``q_at_tau_f``: ``q(z|x) = Cat(softmax(l / tau_f))`` (``Bernoulli(sigmoid(l / tau_f))``),
      the distribution that ``decoupled_st`` and ``softmax_st`` sample in training; the KL,
      evaluation and ``test/nll`` use it too, so the training loss is the negative ELBO of
      what is sampled. With ``softmax_st`` (or ``decoupled_st`` at ``tau_f = tau_b``) and an
      annealed temperature this is the slope-annealed straight-through of Chung et al.
      (2016): the schedule sharpens the encoder's distribution as well as the backward pass
      (``recipes/estimators/softmax_st.yaml`` with the recipe's annealing of ``tau`` and
      ``--model.q_at_tau_f=true``).
    * Prior: ``uniform`` or ``learned`` (logits ``(L, k)`` trained with the rest).

    Logs ``{stage}/loss`` (negative ELBO), ``{stage}/recon`` and ``{stage}/kl`` (nats per
    example) and ``test/nll``. Batches are ``x`` or ``(x, y)`` (labels ignored).

    Args:
        input_dim: flattened input size.
        num_latents: number of latents ``L``.
        num_categories: classes per latent ``k`` (2 with ``bernoulli``).
        hidden_dims: hidden sizes of the encoder (the decoder mirrors them).
        bernoulli: binary latents (one logit per unit, :class:`~lightning_discrete.nn.BinaryBottleneck`).
        prior: ``"uniform"`` or ``"learned"``.
        test_num_samples: samples per test image of ``test/nll`` (``0``: none).
        test_chunk_size: samples per pass of ``test/nll``.
        **kwargs: ``q_at_tau_f``, ``test_objective``: see
            :class:`~lightning_discrete.models.LatentVariableModule`; estimator, temperatures,
            optimizer, ...: see :class:`DiscreteModule`.

    Examples:
        >>> import torch
        >>> from lightning_discrete.models import CategoricalVAE
        >>> vae = CategoricalVAE(16, num_latents=3, num_categories=4, hidden_dims=[8], estimator="gumbel_softmax", tau=0.5)
        >>> vae.encode(torch.rand(2, 16)).shape, vae(torch.rand(2, 16)).shape
        (torch.Size([2, 3, 4]), torch.Size([2, 16]))
        >>> losses, metrics = vae.step(torch.rand(2, 16).round())
        >>> losses.shape, sorted(metrics)
        (torch.Size([2]), ['kl', 'recon'])
    """

    def __init__(
        self,
        input_dim: int = 784,
        num_latents: int = 20,
        num_categories: int = 10,
        hidden_dims: Sequence[int] = (512, 256),
        bernoulli: bool = False,
        prior: str = "uniform",
        test_num_samples: int = 1000,
        test_chunk_size: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(test_num_samples=test_num_samples, test_chunk_size=test_chunk_size, **kwargs)
        if num_categories < 2 or (bernoulli and num_categories != 2):
            raise ValueError(
                f"`num_categories` must be >= 2 (exactly 2 with `bernoulli`), got {num_categories} "
                f"(bernoulli={bernoulli})"
            )
        if num_latents < 1 or input_dim < 1:
            raise ValueError(f"`num_latents` and `input_dim` must be >= 1, got {num_latents}, {input_dim}")
        if prior not in _PRIORS:
            raise ValueError(f"`prior` must be one of {_PRIORS}, got {prior!r}")
        self.num_latents = num_latents
        self.num_categories = num_categories
        self.bernoulli = bernoulli
        self.latent_shape = (num_latents,) if bernoulli else (num_latents, num_categories)
        code = math.prod(self.latent_shape)
        self.encoder = _mlp([input_dim, *hidden_dims, code])
        bottleneck = BinaryBottleneck if bernoulli else CategoricalBottleneck
        extra = {} if bernoulli else {"num_categories": num_categories}
        self.bottleneck = bottleneck(**extra, **self.bottleneck_kwargs())
        self.decoder = _mlp([code, *reversed(list(hidden_dims)), input_dim])
        self.prior = prior
        # the learned prior's logits (L, k) ((L,) with ``bernoulli``); None for the uniform prior
        self.prior_logits = nn.Parameter(torch.zeros(self.latent_shape)) if prior == "learned" else None

    def encode(self, x: Tensor) -> Tensor:
        """``(B, *) -> (B, L, k)`` encoder logits ``l`` (``(B, L)`` with ``bernoulli``): the
        logits of ``q(z|x)``, divided by ``tau_f`` first with ``q_at_tau_f`` (:meth:`q_logits`).

        Args:
            x: ``(B, *)`` inputs, flattened to ``(B, input_dim)``.
        """
        return self.encoder(x.flatten(1)).view(-1, *self.latent_shape)

    def decode(self, z: Tensor) -> Tensor:
        """``(..., L, k) -> (..., input_dim)`` pixel logits of ``p(x|z)`` (``(..., L)`` with ``bernoulli``).

        Args:
            z: latent samples, one-hot (or relaxed) over the last dim.
        """
        return self.decoder(z.flatten(-len(self.latent_shape)))

    def kl(self, logits: Tensor) -> Tensor:
        """``KL(q(z|x) || p(z))`` per example ``(B,)``, summed over the latents.

        Args:
            logits: ``(B, L, k)`` (``(B, L)``) logits of ``q(z|x)`` (:meth:`q_logits`).
        """
        prior = self.prior_logits
        kl = LF.bernoulli_kl(logits, prior) if self.bernoulli else LF.categorical_kl(logits, prior)
        return kl.flatten(1).sum(-1)

    def log_prior(self, z: Tensor) -> Tensor:
        """``log p(z)`` of exact samples ``(..., L, k)`` (``(..., L)``), summed over the latents.

        Args:
            z: one-hot (``{0, 1}``) samples.
        """
        batch_shape = z.shape[: z.dim() - len(self.latent_shape)]
        if self.prior_logits is None:  # uniform: log p(z) = -L log k for every z
            return z.new_full(batch_shape, -self.num_latents * math.log(self.num_categories))
        prior = self.prior_logits  # (L, k) ((L,)): broadcast against the samples
        lp = LF.bernoulli_log_prob(prior, z) if self.bernoulli else LF.categorical_log_prob(prior, z)
        return lp.sum(-1)  # (..., L): the category dim is already reduced

    @override
    def forward(self, x: Tensor) -> Tensor:
        """``(B, *) -> (B, input_dim)`` reconstruction logits through the bottleneck.

        Args:
            x: ``(B, *)`` inputs in ``[0, 1]``.
        """
        return self.decode(self.bottleneck(self.encode(x)))

    @staticmethod
    def _target(batch: Any) -> Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return x.flatten(1).to(torch.get_default_dtype())

    @override
    def step(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Per-example negative ELBO ``(B,)`` and ``{"recon": ..., "kl": ...}`` (batch means).
        Training draws the latents with the estimator, evaluation exactly from ``q(z|x)``.

        Args:
            batch: ``x`` or ``(x, y)`` (labels ignored), ``x`` ``(B, *)`` in ``[0, 1]``.
        """
        x = self._target(batch)
        logits = self.encode(x)
        q_logits = self.q_logits(logits, self.bottleneck)
        z = self.bottleneck(logits) if self.training else exact_sample(q_logits, self.bernoulli)
        recon = F.binary_cross_entropy_with_logits(self.decode(z), x, reduction="none").sum(-1)
        kl = self.kl(q_logits)
        return recon + kl, {"recon": recon.mean(), "kl": kl.mean()}

    @override
    def sample_log_weights(self, batch: Any, num_samples: int) -> Tensor:
        """``log p(x|z_s) + log p(z_s) - log q(z_s|x)`` ``(num_samples, B)``, ``z_s ~ q(z|x)``.

        Args:
            batch: ``x`` or ``(x, y)``.
            num_samples: samples per example.
        """
        x = self._target(batch)
        logits = self.q_logits(self.encode(x), self.bottleneck)
        z = exact_sample(logits.expand(num_samples, *logits.shape), self.bernoulli)
        # log q(z_s|x) from the (B, L, k) logits, broadcast over the samples: normalised once
        log_q = (LF.bernoulli_log_prob(logits, z) if self.bernoulli else LF.categorical_log_prob(logits, z)).sum(-1)
        log_px = -F.binary_cross_entropy_with_logits(
            self.decode(z), x.expand(num_samples, *x.shape), reduction="none"
        ).sum(-1)
        return log_px + self.log_prior(z) - log_q
