"""``LatentVariableModule``: a :class:`DiscreteModule` whose test step also reports the
importance-weighted bound on the negative log-likelihood (``m`` samples per test example)."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from typing_extensions import override

from .. import functional as LF
from ..metrics import ImportanceWeightedNLL
from ..nn.bottleneck import DiscreteBottleneck
from .base import DiscreteModule

__all__ = ["LatentVariableModule", "exact_sample"]


def exact_sample(logits: Tensor, binary: bool) -> Tensor:
    """A sample of the distribution the logits define, at temperature 1 and without gradient:
    one-hot ``z ~ Cat(softmax(l))`` over the last dim, or ``{0, 1}`` units
    ``z ~ Bernoulli(sigmoid(l))`` with ``binary``. What evaluation and the importance-weighted
    bound draw, whatever the training estimator and its ``eval_mode``.

    Args:
        logits: ``(*, k)`` categorical logits, or ``(*)`` with ``binary``.
        binary: one logit per unit.

    Returns:
        A sample shaped like ``logits``.

    Examples:
        >>> import torch
        >>> exact_sample(torch.tensor([[-40.0, 40.0, -40.0]]), binary=False)
        tensor([[0., 1., 0.]])
        >>> exact_sample(torch.tensor([-40.0, 40.0]), binary=True)
        tensor([0., 1.])
    """
    return LF.bernoulli_reinforce(logits) if binary else LF.reinforce(logits, dim=-1)


class LatentVariableModule(DiscreteModule):
    """Base of the latent-variable models (:class:`~lightning_discrete.models.CategoricalVAE`,
    :class:`~lightning_discrete.models.StructuredOutputNetwork`): ``test`` also logs
    ``test/nll``, the importance-weighted bound on the negative log-likelihood with
    ``test_num_samples`` samples per example (:class:`~lightning_discrete.metrics.ImportanceWeightedNLL`,
    summed across ranks).

    ``test`` also logs ``test/objective`` (with ``test_objective``): the training objective on
    the test set, :meth:`step` with the estimator's own forward at its current temperatures
    (:meth:`training_objective`). It differs from ``test/loss`` where training does not draw
    exact samples of the latent distribution: the relaxed ``gumbel_softmax`` (its relaxed
    objective, not a bound, is what a paper that reports its training loss on test data
    reports) or ``tau_f != 1`` without ``q_at_tau_f``.

    Subclasses write :meth:`sample_log_weights` besides ``forward`` and ``step``, and draw
    their evaluation samples from :meth:`q_logits` of each bottleneck's logits.

    Args:
        test_num_samples: samples ``m`` per test example (the Gumbel-Softmax paper: 1000);
            ``0`` logs no ``test/nll``.
        test_chunk_size: samples evaluated at once (memory grows with
            ``test_chunk_size * batch_size``); ``None`` evaluates all ``m`` in one pass.
        q_at_tau_f: the latent distribution is ``Cat(softmax(l / tau_f))``
            (``Bernoulli(sigmoid(l / tau_f))``), the one that estimators with an exact sample
            at ``tau_f`` (``decoupled_st``, ``softmax_st``: ``Estimator.tempered_sample``)
            draw in training; evaluation, the KL of a VAE and ``test/nll`` use it too. With
            ``softmax_st`` and an annealed ``tau`` this is the slope-annealed straight-through
            of Chung et al. (2016): the schedule sharpens the distribution, not just the
            backward pass. ``False``: the distribution is at temperature 1 whatever ``tau_f``.
        test_objective: log ``test/objective`` (one more forward pass per test batch).
        **kwargs: estimator, temperatures, optimizer, ...: see :class:`DiscreteModule`.

    Examples:
        >>> from lightning_discrete.models import CategoricalVAE
        >>> vae = CategoricalVAE(16, num_latents=2, num_categories=3, hidden_dims=[8], test_num_samples=50, test_chunk_size=20)
        >>> vae.log_weights(torch.rand(4, 16), 50, chunk_size=20).shape
        torch.Size([50, 4])
    """

    def __init__(
        self,
        test_num_samples: int = 1000,
        test_chunk_size: Optional[int] = 100,
        q_at_tau_f: bool = False,
        test_objective: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if q_at_tau_f:
            config = self.bottleneck_config
            if not LF.get_estimator(config.estimator).tempered_sample:
                raise ValueError(
                    "`q_at_tau_f` needs an estimator whose forward is an exact sample at tau_f "
                    f"(decoupled_st, softmax_st), got {config.estimator!r}"
                )
            if config.tau_f == 0:
                raise ValueError("`q_at_tau_f` needs tau_f > 0 (tau_f = 0 is the argmax, not a distribution)")
        self.q_at_tau_f = bool(q_at_tau_f)
        self.test_objective = bool(test_objective)
        if isinstance(test_num_samples, bool) or int(test_num_samples) != test_num_samples or test_num_samples < 0:
            raise ValueError(f"`test_num_samples` must be an integer >= 0, got {test_num_samples!r}")
        if test_chunk_size is not None and (int(test_chunk_size) != test_chunk_size or test_chunk_size < 1):
            raise ValueError(f"`test_chunk_size` must be an integer >= 1 or null, got {test_chunk_size!r}")
        self.test_num_samples = int(test_num_samples)
        self.test_chunk_size = None if test_chunk_size is None else int(test_chunk_size)
        self.test_nll = ImportanceWeightedNLL()

    def q_logits(self, logits: Tensor, bottleneck: DiscreteBottleneck) -> Tensor:
        """The logits of the latent distribution from a bottleneck's input logits (same shape):
        ``l / tau_f`` of that bottleneck with ``q_at_tau_f``, else ``l``.

        Args:
            logits: the logits the bottleneck is given.
            bottleneck: the bottleneck (its ``tau_f`` buffer).
        """
        return logits / bottleneck.tau_f if self.q_at_tau_f else logits

    def sample_log_weights(self, batch: Any, num_samples: int) -> Tensor:
        """Log importance weights ``(num_samples, B)`` of the examples of ``batch``, each
        from a fresh exact sample of the latents (the subclass hook; see the class example).

        Args:
            batch: a batch of the datamodule.
            num_samples: samples per example.
        """
        raise NotImplementedError("subclasses of LatentVariableModule implement sample_log_weights(batch, num_samples)")

    @torch.no_grad()
    def log_weights(self, batch: Any, num_samples: int, chunk_size: Optional[int] = None) -> Tensor:
        """Log importance weights ``(num_samples, B)``, computed ``chunk_size`` samples at a
        time so that memory stays bounded (see the class example).

        Args:
            batch: a batch of the datamodule.
            num_samples: samples per example, ``>= 1``.
            chunk_size: samples per pass; ``None``: all at once.
        """
        if num_samples < 1:
            raise ValueError(f"`num_samples` must be >= 1, got {num_samples}")
        step = num_samples if chunk_size is None else min(int(chunk_size), num_samples)
        chunks = [self.sample_log_weights(batch, min(step, num_samples - s)) for s in range(0, num_samples, step)]
        return torch.cat(chunks, 0)

    @torch.no_grad()
    def training_objective(self, batch: Any) -> Tensor:
        """Per-example losses ``(B,)`` of the training objective, without gradient: :meth:`step`
        in training mode, i.e. with the estimator's own forward (a relaxed sample for
        ``gumbel_softmax``) at the bottlenecks' current temperatures; the module's mode is
        restored after.

        Args:
            batch: a batch of the datamodule.
        """
        was_training = self.training
        self.train()
        try:
            losses, _ = self.step(batch)
        finally:
            self.train(was_training)
        return losses

    @override
    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        extra = {"objective": self.training_objective(batch).mean()} if self.test_objective else None
        loss = self._eval_step("test", batch, batch_idx, extra)
        if self.test_num_samples:
            self.test_nll.update(self.log_weights(batch, self.test_num_samples, self.test_chunk_size))
            self.log("test/nll", self.test_nll, on_step=False, on_epoch=True)
        return loss
