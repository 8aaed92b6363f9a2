"""Exact gradients of small discrete problems and bias / variance of estimators.

For a small problem (``n`` categorical variables with ``k`` categories, or ``n``
binary units) the expectation ``E_z[L(z)]`` is a finite sum over all ``k^n``
(``2^n``) states, so its gradient is exact (``docs/design.md``, "Estimator maths").
:func:`estimator_stats` compares many draws of an estimator with it.

Everything is vectorised over samples: an estimator draws all its samples as
one batch.  Nothing here depends on Lightning.

Examples:
    >>> import torch
    >>> from lightning_discrete import analysis, functional as LF
    >>> logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))  # 3 variables, 4 categories
    >>> target = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    >>> loss_fn = lambda z: ((z - target) ** 2).sum((-2, -1))  # (S, 3, 4) -> (S,)
    >>> est = analysis.pathwise(lambda l, g: LF.softmax_st(l, 1.0, generator=g))
    >>> stats = analysis.estimator_stats(est, logits, loss_fn, num_samples=1000, generator=torch.Generator().manual_seed(2))
    >>> sorted(k for k in stats if not isinstance(stats[k], torch.Tensor))
    ['bias', 'bias_se', 'cosine', 'max_abs_err_zero_se', 'max_z', 'std']
"""

from __future__ import annotations

import itertools
from typing import Callable, Dict, Optional

import torch
from torch import Tensor

from . import functional as LF

__all__ = [
    "enumerate_categorical",
    "enumerate_binary",
    "exact_expectation",
    "exact_gradient",
    "exact_expectation_binary",
    "exact_gradient_binary",
    "pathwise",
    "reinforce_loo",
    "disarm",
    "estimator_stats",
]

LossFn = Callable[[Tensor], Tensor]
# estimator_fn(logits, loss_fn, num_samples, generator) -> (num_samples, *logits.shape)
GradientSampler = Callable[[Tensor, LossFn, int, Optional[torch.Generator]], Tensor]

_MAX_STATES = 1 << 20


def enumerate_categorical(n: int, k: int, dtype=torch.float64, device=None) -> Tensor:
    """All ``k^n`` joint states of ``n`` categorical variables as one-hots ``(k^n, n, k)``.

    Args:
        n: number of variables.
        k: categories per variable.
        dtype: dtype of the result.
        device: device of the result.

    Examples:
        >>> from lightning_discrete import analysis
        >>> analysis.enumerate_categorical(2, 3).shape
        torch.Size([9, 2, 3])
    """
    if k**n > _MAX_STATES:
        raise ValueError(f"`n`={n}, `k`={k} gives {k ** n} states; at most {_MAX_STATES}")
    idx = torch.tensor(list(itertools.product(range(k), repeat=n)), device=device).reshape(-1, n)
    return torch.nn.functional.one_hot(idx, k).to(dtype)


def enumerate_binary(n: int, dtype=torch.float64, device=None) -> Tensor:
    """All ``2^n`` states of ``n`` binary units, ``(2^n, n)`` in ``{0, 1}``.

    Args:
        n: number of units.
        dtype: dtype of the result.
        device: device of the result.

    Examples:
        >>> from lightning_discrete import analysis
        >>> analysis.enumerate_binary(2).tolist()
        [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    """
    if 2**n > _MAX_STATES:
        raise ValueError(f"`n`={n} gives {2 ** n} states; at most {_MAX_STATES}")
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=dtype, device=device).reshape(-1, n)


def exact_expectation(logits: Tensor, loss_fn: LossFn, tau: float = 1.0) -> Tensor:
    """``E_{z ~ Cat(softmax(l / tau))}[loss_fn(z)]`` by enumeration, differentiable in ``logits``.

    Args:
        logits: ``(n, k)``, one row per independent categorical variable.
        loss_fn: maps one-hot states ``(S, n, k)`` to losses ``(S,)``.
        tau: temperature of the sampling distribution.

    Examples:
        >>> import torch
        >>> from lightning_discrete import analysis
        >>> analysis.exact_expectation(torch.zeros(1, 2), lambda z: z[:, 0, 0])  # P(category 0)
        tensor(0.5000)
    """
    if logits.dim() != 2:
        raise ValueError(f"`logits` must have shape (n, k), got {tuple(logits.shape)}")
    n, k = logits.shape
    states = enumerate_categorical(n, k, dtype=logits.dtype, device=logits.device)
    log_p = torch.log_softmax(logits / tau, -1)  # (n, k)
    log_prob_states = (states * log_p).sum((-2, -1))  # (k^n,)
    return (log_prob_states.exp() * loss_fn(states).to(logits.dtype)).sum()


def exact_gradient(logits: Tensor, loss_fn: LossFn, tau: float = 1.0) -> Tensor:
    """Exact ``d/dl E_{z ~ Cat(softmax(l / tau))}[loss_fn(z)]``, shape ``(n, k)`` (float64).

    Args:
        logits: ``(n, k)``.
        loss_fn: maps one-hot states ``(S, n, k)`` to losses ``(S,)``.
        tau: temperature of the sampling distribution.

    Examples:
        >>> import torch
        >>> from lightning_discrete import analysis
        >>> analysis.exact_gradient(torch.zeros(1, 2), lambda z: z[:, 0, 0])  # d p_0 / d l
        tensor([[ 0.2500, -0.2500]], dtype=torch.float64)
    """
    x = logits.detach().to(torch.float64).requires_grad_()
    (g,) = torch.autograd.grad(exact_expectation(x, loss_fn, tau), x)
    return g


def exact_expectation_binary(logits: Tensor, loss_fn: LossFn, tau: float = 1.0) -> Tensor:
    """``E_{z ~ Bernoulli(sigmoid(l / tau))}[loss_fn(z)]`` by enumeration over ``2^n`` states.

    Args:
        logits: ``(n,)``.
        loss_fn: maps states ``(S, n)`` in ``{0, 1}`` to losses ``(S,)``.
        tau: temperature of the sampling distribution.

    Examples:
        >>> import torch
        >>> from lightning_discrete import analysis
        >>> analysis.exact_expectation_binary(torch.zeros(2), lambda b: b.sum(-1))
        tensor(1.)
    """
    if logits.dim() != 1:
        raise ValueError(f"`logits` must have shape (n,), got {tuple(logits.shape)}")
    states = enumerate_binary(logits.shape[0], dtype=logits.dtype, device=logits.device)
    x = logits / tau
    log_prob = (states * torch.nn.functional.logsigmoid(x) + (1 - states) * torch.nn.functional.logsigmoid(-x)).sum(-1)
    return (log_prob.exp() * loss_fn(states).to(logits.dtype)).sum()


def exact_gradient_binary(logits: Tensor, loss_fn: LossFn, tau: float = 1.0) -> Tensor:
    """Exact gradient of :func:`exact_expectation_binary`, shape ``(n,)`` (float64).

    Args:
        logits: ``(n,)`` logits of the units (any float dtype; the result is float64).
        loss_fn: the loss of a batch of states, as in :func:`exact_expectation_binary`.
        tau: temperature of the Bernoulli distribution.

    Examples:
        >>> import torch
        >>> from lightning_discrete import analysis
        >>> analysis.exact_gradient_binary(torch.zeros(2), lambda b: b.sum(-1))
        tensor([0.2500, 0.2500], dtype=torch.float64)
    """
    x = logits.detach().to(torch.float64).requires_grad_()
    (g,) = torch.autograd.grad(exact_expectation_binary(x, loss_fn, tau), x)
    return g


# --------------------------------------------------------------------------- #
# gradient samplers: (logits, loss_fn, num_samples, generator) -> (S, *logits.shape)
# --------------------------------------------------------------------------- #


def _replicate(logits: Tensor, num: int) -> Tensor:
    return logits.detach().unsqueeze(0).expand((num,) + tuple(logits.shape)).clone().requires_grad_()


def pathwise(st_fn: Callable[[Tensor, Optional[torch.Generator]], Tensor]) -> GradientSampler:
    """Gradient sampler for a pathwise (straight-through-style) estimator.

    ``st_fn(logits, generator) -> z`` is applied to ``num_samples`` stacked copies of
    the logits in one call; sample ``s`` of the result is ``d loss_fn(z_s) / d logits``.

    Args:
        st_fn: the estimator, ``(logits (S, *), generator) -> z`` with a pathwise gradient.

    Returns:
        A gradient sampler ``(logits, loss_fn, num_samples, generator) -> (S, *logits.shape)``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import analysis, functional as LF
        >>> sampler = analysis.pathwise(lambda l, g: LF.decoupled_st(l, 1.0, 0.5, generator=g))
        >>> sampler(torch.zeros(3, 4), lambda z: z[..., 0].sum((-1)), 5).shape
        torch.Size([5, 3, 4])
    """

    def sample(logits: Tensor, loss_fn: LossFn, num_samples: int, generator=None) -> Tensor:
        rep = _replicate(logits, num_samples)
        z = st_fn(rep, generator)
        (g,) = torch.autograd.grad(loss_fn(z).sum(), rep)
        return g

    return sample


def reinforce_loo(samples_per_estimate: int = 2) -> GradientSampler:
    """Gradient sampler for REINFORCE with a leave-one-out baseline on ``(n, k)`` logits:
    each estimate uses ``samples_per_estimate`` (``>= 2``) samples
    (:func:`~lightning_discrete.functional.reinforce`,
    :func:`~lightning_discrete.functional.reinforce_loo_surrogate`).

    Args:
        samples_per_estimate: samples ``>= 2`` behind each gradient estimate.

    Returns:
        A gradient sampler ``(logits, loss_fn, num_samples, generator) -> (S, n, k)``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import analysis
        >>> analysis.reinforce_loo(2)(torch.zeros(3, 4), lambda z: z[..., 0].sum(-1), 5).shape
        torch.Size([5, 3, 4])
    """
    m = int(samples_per_estimate)

    def sample(logits: Tensor, loss_fn: LossFn, num_samples: int, generator=None) -> Tensor:
        rep = _replicate(logits, num_samples)  # (G, n, k)
        lg = rep.unsqueeze(0).expand((m,) + tuple(rep.shape))  # (m, G, n, k)
        z = LF.reinforce(lg, dim=-1, generator=generator)
        log_probs = LF.categorical_log_prob(lg, z, dim=-1).sum(-1)  # (m, G)
        losses = loss_fn(z.reshape((-1,) + tuple(logits.shape))).reshape(m, num_samples)
        surrogate = LF.reinforce_loo_surrogate(log_probs, losses)  # mean over m * G
        (g,) = torch.autograd.grad(surrogate, rep)
        return g * num_samples  # undo the mean over the G independent estimates

    return sample


def disarm() -> GradientSampler:
    """Gradient sampler for DisARM on ``(n,)`` binary logits: each estimate uses one
    antithetic pair (:func:`~lightning_discrete.functional.bernoulli_disarm`,
    :func:`~lightning_discrete.functional.disarm_surrogate`).

    Returns:
        A gradient sampler ``(logits, loss_fn, num_samples, generator) -> (S, n)``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import analysis
        >>> analysis.disarm()(torch.zeros(4), lambda b: b.sum(-1), 5).shape
        torch.Size([5, 4])
    """

    def sample(logits: Tensor, loss_fn: LossFn, num_samples: int, generator=None) -> Tensor:
        rep = _replicate(logits, num_samples)  # (G, n)
        b1, b2 = LF.bernoulli_disarm(rep, generator=generator)
        surrogate = LF.disarm_surrogate(rep, b1, b2, loss_fn(b1), loss_fn(b2))
        (g,) = torch.autograd.grad(surrogate, rep)
        return g * num_samples

    return sample


def estimator_stats(
    estimator_fn: GradientSampler,
    logits: Tensor,
    loss_fn: LossFn,
    num_samples: int,
    exact: Optional[Tensor] = None,
    tau: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> Dict[str, object]:
    """Bias, spread and alignment of a gradient estimator against the exact gradient.

    Args:
        estimator_fn: ``(logits, loss_fn, num_samples, generator) -> (S, *logits.shape)``
            per-sample gradient estimates (see :func:`pathwise`, :func:`reinforce_loo`,
            :func:`disarm`).
        logits: ``(n, k)`` categorical or ``(n,)`` binary logits.
        loss_fn: loss of a batch of states (see :func:`exact_expectation`).
        num_samples: number of independent gradient estimates ``S``.
        exact: the reference gradient; default :func:`exact_gradient` (2-D logits) or
            :func:`exact_gradient_binary` (1-D logits) at temperature ``tau``.
        tau: temperature of the default reference gradient.
        generator: random generator for the estimator.

    Returns:
        dict with ``bias`` (L2 norm of ``mean - exact``), ``bias_se`` (L2 norm of the
        standard errors of the mean: the bias an unbiased estimator shows by chance),
        ``max_z`` (largest ``|mean - exact| / standard error`` over coordinates whose
        standard error is not ~0), ``std`` (square root of the total variance of one
        estimate), ``cosine`` (mean cosine similarity of single estimates with
        ``exact``), ``mean``, ``stderr`` and ``exact`` (tensors shaped like logits).

    Examples:
        >>> import torch
        >>> from lightning_discrete import analysis
        >>> logits = torch.tensor([0.5, -1.0])
        >>> stats = analysis.estimator_stats(
        ...     analysis.disarm(), logits, lambda b: b.sum(-1), 2000, generator=torch.Generator().manual_seed(0)
        ... )
        >>> stats["max_z"] < 5  # unbiased: the mean is within 5 standard errors of the exact gradient
        True
    """
    if exact is None:
        exact = exact_gradient(logits, loss_fn, tau) if logits.dim() == 2 else exact_gradient_binary(logits, loss_fn, tau)
    grads = estimator_fn(logits, loss_fn, num_samples, generator).detach().to(torch.float64)
    if grads.shape != (num_samples,) + tuple(logits.shape):
        raise ValueError(
            f"`estimator_fn` returned shape {tuple(grads.shape)}, expected {(num_samples,) + tuple(logits.shape)}"
        )
    exact = exact.detach().to(torch.float64)
    flat = grads.reshape(num_samples, -1)
    ex = exact.reshape(-1)
    mean = flat.mean(0)
    var = flat.var(0, unbiased=True)
    se = (var / num_samples).sqrt()
    err = (mean - ex).abs()
    tiny = 1e-12 * max(1.0, float(ex.abs().max()))
    informative = se > tiny
    max_z = float((err[informative] / se[informative]).max()) if bool(informative.any()) else 0.0
    cos = torch.nn.functional.cosine_similarity(flat, ex.unsqueeze(0).expand_as(flat), dim=-1, eps=1e-30)
    return {
        "bias": float((mean - ex).norm()),
        "bias_se": float(se.norm()),
        "max_z": max_z,
        "max_abs_err_zero_se": float(err[~informative].max()) if bool((~informative).any()) else 0.0,
        "std": float(var.sum().sqrt()),
        "cosine": float(cos.mean()),
        "mean": mean.reshape(logits.shape),
        "stderr": se.reshape(logits.shape),
        "exact": exact,
    }
