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

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
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
    "TemperatureLandscape",
    "temperature_landscape",
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
    idx = _state_digits(torch.arange(k**n, device=device), n, k)
    return torch.nn.functional.one_hot(idx, k).to(dtype)


def _state_digits(index: Tensor, n: int, base: int) -> Tensor:
    """Digits ``(S, n)`` of state numbers ``index`` ``(S,)`` in base ``base``, the first variable
    most significant (the order of ``itertools.product``)."""
    powers = base ** torch.arange(n - 1, -1, -1, device=index.device)
    return torch.div(index.unsqueeze(-1), powers, rounding_mode="floor") % base


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
    return _state_digits(torch.arange(2**n, device=device), n, 2).to(dtype)


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


# --------------------------------------------------------------------------- #
# the exact bias / variance landscape over (tau_f, tau_b)
# --------------------------------------------------------------------------- #

_STAT_DOC = """``bias`` (``||E[g] - g*||``), ``variance`` (``E||g - E[g]||^2``, the trace of the
covariance), ``mse`` (``E||g - g*||^2 = bias^2 + variance``), ``cosine`` (``E[cos(g, g*)]``),
``mean_norm`` (``||E[g]||``), and ``bias_tau1``, ``mse_tau1``, ``cosine_tau1`` against the
``tau = 1`` reference ``exact_tau1``"""


@dataclass(frozen=True)
class TemperatureLandscape:
    """Result of :func:`temperature_landscape` (``docs/design.md``, "Temperature landscape").

    ``g`` is one estimate of the aggregated gradient (see ``aggregate``), ``g*`` the
    reference: for decoupled ST and identity ST at ``tau_f`` the exact gradient of
    ``E_{z ~ p(tau_f)}[L(z)]`` (row ``exact[i]``); for ST Gumbel-Softmax, whose forward
    samples ``Cat(softmax(l))`` whatever its ``tau``, the ``tau = 1`` gradient ``exact_tau1``.

    Attributes:
        tau_f: forward temperatures ``(F,)``, the rows.
        tau_b: backward temperatures ``(T,)``, the columns.
        tau_gs: ST Gumbel-Softmax temperatures ``(G,)``.
        aggregate: ``"sum"`` or ``"stack"`` (see :func:`temperature_landscape`).
        num_samples: Monte-Carlo draws behind ``cosine`` and every ST-GS figure.
        exact: ``(F, D)`` reference gradient per ``tau_f`` (float64).
        exact_tau1: ``(D,)`` the gradient of ``E_{z ~ softmax(l)}[L(z)]``.
        dst: decoupled ST, each ``(F, T)``: {stats}.
        identity: identity-backward ST on the same forward sample, each ``(F,)``: the same keys.
        st_gs: ST Gumbel-Softmax, each ``(G,)``: the same keys (``bias`` is ``bias_tau1``), plus
            ``bias_se``, the Monte-Carlo standard error of the estimated mean (the bias an
            unbiased estimator would show by chance).
    """

    tau_f: Tuple[float, ...]
    tau_b: Tuple[float, ...]
    tau_gs: Tuple[float, ...]
    aggregate: str
    num_samples: int
    exact: Tensor
    exact_tau1: Tensor
    dst: Dict[str, Tensor]
    identity: Dict[str, Tensor]
    st_gs: Dict[str, Tensor]

    def table(self) -> str:
        """The figures as a text table, one line per estimator and temperature cell
        (``std`` is ``sqrt(variance)``; ST-GS lines end with ``bias_se``).

        Examples:
            >>> import torch
            >>> from lightning_discrete import analysis
            >>> land = analysis.temperature_landscape(
            ...     torch.zeros(1, 1, 2), lambda z: z[..., 0, 0], [1.0], [1.0], num_samples=8,
            ...     generator=torch.Generator().manual_seed(0))
            >>> print(land.table().splitlines()[0])
            estimator  tau_f  tau_b       bias        std        mse   cosine  |E g|  bias@1 cos@1
        """
        head = f"{'estimator':<9} {'tau_f':>6} {'tau_b':>6} {'bias':>10} {'std':>10} {'mse':>10} {'cosine':>8}"
        lines = [head + f" {'|E g|':>6}  {'bias@1':>6} {'cos@1':>5}"]

        def row(name: str, tf: str, tb: str, s: Dict[str, Tensor], idx) -> str:
            return (
                f"{name:<9} {tf:>6} {tb:>6} {float(s['bias'][idx]):10.4g} {float(s['variance'][idx]) ** 0.5:10.4g} "
                f"{float(s['mse'][idx]):10.4g} {float(s['cosine'][idx]):8.4f} {float(s['mean_norm'][idx]):6.3g}  "
                f"{float(s['bias_tau1'][idx]):6.3g} {float(s['cosine_tau1'][idx]):5.3f}"
            )

        for i, tf in enumerate(self.tau_f):
            for j, tb in enumerate(self.tau_b):
                lines.append(row("dst", f"{tf:g}", f"{tb:g}", self.dst, (i, j)))
            lines.append(row("identity", f"{tf:g}", "-", self.identity, i))
        for j, t in enumerate(self.tau_gs):
            lines.append(row("st_gs", "1", f"{t:g}", self.st_gs, j) + f"  se {float(self.st_gs['bias_se'][j]):.2g}")
        return "\n".join(lines)


TemperatureLandscape.__doc__ = (TemperatureLandscape.__doc__ or "").replace("{stats}", _STAT_DOC)


def _temperatures(values: Sequence[float], name: str) -> Tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not out or not all(math.isfinite(v) and v > 0 for v in out):
        raise ValueError(f"`{name}` must be a non-empty sequence of finite temperatures > 0, got {list(values)}")
    return out


def _log_probs(logits: Tensor, tau: Tensor, binary: bool) -> Tensor:
    """``(T, B, n, c)`` log-probabilities of each value of each variable at temperatures
    ``tau`` ``(T,)``: ``log softmax(l / tau)`` (``c = k``) or ``[log(1 - s), log s]`` with
    ``s = sigmoid(l / tau)`` (``c = 2``) for binary ``(B, n)`` logits."""
    x = logits.unsqueeze(0) / tau.reshape((-1,) + (1,) * logits.dim())
    if binary:
        return torch.stack((F.logsigmoid(-x), F.logsigmoid(x)), -1)
    return torch.log_softmax(x, -1)


def _backward(q: Tensor, d: Tensor, tau: float, binary: bool) -> Tensor:
    """``J^T d`` for the Jacobian ``J`` of ``q = softmax(x / tau)`` (``(*, n, k)``) or of
    ``q = sigmoid(x / tau)`` (``(*, n, 1)``) with respect to ``x``."""
    if binary:
        return q * (1 - q) * d / tau
    return q * (d - (q * d).sum(-1, keepdim=True)) / tau


def _jacobian(q: Tensor, tau: float, binary: bool) -> Tensor:
    """The symmetric Jacobians of :func:`_backward`, ``(*, n, w, w)``."""
    if binary:
        return (q * (1 - q) / tau).unsqueeze(-1)
    return (torch.diag_embed(q) - q.unsqueeze(-1) * q.unsqueeze(-2)) / tau


def _figures(mean: Tensor, second: Tensor, samples: Tensor, exact: Tensor, exact1: Tensor, agg) -> Dict[str, Tensor]:
    """Figures of an estimator from its per-example mean ``(*, B, n, w)``, per-example
    ``E||g_b||^2`` ``(*, B)`` and draws of the per-example gradient ``(*, M, B, n, w)``;
    ``exact`` ``(*, B, n, w)`` (broadcast) and ``exact1`` ``(B, n, w)`` are the references."""
    m = agg(mean)
    variance = (second - mean.pow(2).sum((-2, -1))).sum(-1).clamp_min(0.0)
    draws = agg(samples)
    out = {"variance": variance, "mean_norm": m.norm(dim=-1)}
    for suffix, ref in (("", agg(exact)), ("_tau1", agg(exact1))):
        bias = (m - ref).norm(dim=-1)
        cos = F.cosine_similarity(draws, ref.unsqueeze(-2).expand_as(draws), dim=-1, eps=1e-30)
        out.update({"bias" + suffix: bias, "mse" + suffix: bias**2 + variance, "cosine" + suffix: cos.mean(-1)})
    return out


def temperature_landscape(
    logits: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    tau_f: Sequence[float],
    tau_b: Sequence[float],
    tau_gs: Optional[Sequence[float]] = None,
    aggregate: str = "sum",
    num_samples: int = 512,
    chunk_size: Optional[int] = 256,
    generator: Optional[torch.Generator] = None,
) -> TemperatureLandscape:
    """Exact bias, variance, MSE and cosine of decoupled ST over a ``(tau_f, tau_b)`` grid,
    with identity ST and ST Gumbel-Softmax for comparison (``docs/design.md``,
    "Temperature landscape"; ``docs/temperature_landscape.md``).

    A batch of ``B`` examples, each with ``n`` independent categorical variables of ``k``
    categories (or ``n`` binary units) and a loss ``L_b(z)`` of its own state. Every one of
    the ``k^n`` (``2^n``) states of every example is enumerated once, ``chunk_size`` states
    at a time (``loss_fn`` sees ``chunk_size * B`` states at once), to get ``L_b(z)`` and
    ``dL_b/dz``; nothing else depends on the number of states.

    **Reference gradient.** The gradient a straight-through estimator at ``tau_f`` is meant
    to follow is that of the objective its forward pass samples, ``E_{z ~ p(tau_f)}[L(z)]``
    with ``p(tau) = softmax(l / tau)`` (``sigmoid`` for binary units): training with
    ``tau_f`` minimises that expectation, so the bias is measured against its exact
    gradient, ``sum_z p(z) L(z) (z - p(tau_f)) / tau_f`` (row ``i`` of ``exact``). The
    ``tau = 1`` objective (the model's own distribution) is the second reference
    (``exact_tau1``, figures ``*_tau1``); ST-GS samples at ``tau = 1`` whatever its ``tau``,
    so its reference is that one.

    **Exact sums.** For decoupled ST the gradient given a state is ``g(z) = J(tau_b)^T dL/dz``
    with ``J`` not depending on ``z``, so ``E[g] = J^T E[dL/dz]`` and
    ``E||g||^2 = tr(J E[dL/dz dL/dz^T] J)`` (per variable: ``J`` is block-diagonal), both
    sums over the states weighted by ``p(tau_f)``: bias, variance and MSE are exact, for
    every ``tau_b`` from one enumeration. Identity ST (forward ``z ~ p(tau_f)`` as decoupled
    ST, backward ``dL/dz``; ``functional.identity_st`` is its ``tau_f -> 0`` limit) is the
    case ``J = I``. The cosine of a sum over independent examples is not a sum over
    states: it is averaged over ``num_samples`` joint draws of the batch's states, whose
    ``dL/dz`` are read from the enumeration. ST-GS's gradient depends on the Gumbel noise,
    not only on ``z``: all its figures are Monte-Carlo over ``num_samples`` draws of the
    noise (``bias_se`` gives the noise floor of its bias).

    **Aggregation.** ``"sum"``: the batch-summed logit gradient ``sum_b dL/dl_b`` ``(D,) = (n * w,)``,
    i.e. the gradient of a bias added to every example's logits (the encoder's last
    layer bias), a parameter gradient training sees, and the one where the
    per-example errors can cancel or add up as they do in training. ``"stack"``: the
    gradient with respect to every example's logits ``(D,) = (B * n * w,)`` (bias^2 and
    variance are sums of the per-example figures). Variances add over independent
    examples either way.

    Args:
        logits: ``(B, n, k)`` categorical or ``(B, n)`` binary logits (any float dtype; the
            figures are float64).
        loss_fn: maps states ``(C, B, n, k)`` (one-hot) or ``(C, B, n)`` (``{0, 1}``), in the
            dtype of ``logits``, to per-example losses ``(C, B)``: entry ``[c, b]`` is
            ``L_b(z[c, b])`` and depends on ``z[c, b]`` only (e.g.
            ``lambda z: autoencoder.code_loss(z, x)``); differentiable in ``z``.
        tau_f: forward temperatures (rows), each ``> 0``.
        tau_b: backward temperatures (columns), each ``> 0``.
        tau_gs: ST Gumbel-Softmax temperatures; default ``tau_b``.
        aggregate: ``"sum"`` or ``"stack"``, see above.
        num_samples: Monte-Carlo draws ``M >= 2`` (cosines, ST-GS); memory ``~ 8 (F + 1) M B n k`` bytes.
        chunk_size: states per call of ``loss_fn``; ``None``: all states in one call (on a
            GPU, where no Python loop over chunks belongs, when they fit).
        generator: random generator for the Monte-Carlo draws (on the device of ``logits``).

    Returns:
        :class:`TemperatureLandscape`.

    Examples:
        >>> import torch
        >>> from lightning_discrete import analysis
        >>> target = torch.tensor([[0.2, 0.5, 0.3]])
        >>> land = analysis.temperature_landscape(
        ...     torch.tensor([[[1.0, 0.0, -1.0]]]), lambda z: ((z - target) ** 2).sum((-2, -1)),
        ...     tau_f=[0.5, 2.0], tau_b=[0.5, 1.0, 2.0], num_samples=64, generator=torch.Generator().manual_seed(0))
        >>> land.dst["mse"].shape, land.identity["bias"].shape, land.st_gs["cosine"].shape
        (torch.Size([2, 3]), torch.Size([2]), torch.Size([3]))
        >>> bool(torch.allclose(land.dst["mse"], land.dst["bias"] ** 2 + land.dst["variance"]))
        True
    """
    if logits.dim() not in (2, 3):
        raise ValueError(f"`logits` must be (B, n, k) categorical or (B, n) binary, got shape {tuple(logits.shape)}")
    binary = logits.dim() == 2
    batch, n = logits.shape[:2]
    base = 2 if binary else logits.shape[-1]
    width = 1 if binary else base
    if batch < 1 or n < 1 or base < 2:
        raise ValueError(f"`logits` needs B >= 1 examples, n >= 1 variables and k >= 2 categories, got {tuple(logits.shape)}")
    num_states = base**n
    if num_states > _MAX_STATES:
        raise ValueError(f"`logits` {tuple(logits.shape)} gives {num_states} states per example; at most {_MAX_STATES}")
    if aggregate not in ("sum", "stack"):
        raise ValueError(f"`aggregate` must be 'sum' or 'stack', got {aggregate!r}")
    if num_samples < 2:
        raise ValueError(f"`num_samples` must be >= 2, got {num_samples}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"`chunk_size` must be >= 1 or None, got {chunk_size}")
    LF.check_logits(logits)
    tf, tb = _temperatures(tau_f, "tau_f"), _temperatures(tau_b, "tau_b")
    tg = tb if tau_gs is None else _temperatures(tau_gs, "tau_gs")
    dev, f64 = logits.device, torch.float64
    l = logits.detach().to(f64)
    nf, m = len(tf), int(num_samples)
    taus = torch.tensor(tf + (1.0,), dtype=f64, device=dev)  # the rows, then the tau = 1 reference
    logp = _log_probs(l, taus, binary)  # (F + 1, B, n, base)
    probs = logp.exp()
    value = probs[..., 1:] if binary else probs  # E[z] per variable, (F + 1, B, n, w)

    # Monte-Carlo draws of every example's state: decoupled ST at each tau_f (inverse CDF), ST-GS at tau = 1
    u = torch.rand((nf, m, batch, n), generator=generator, dtype=f64, device=dev)
    digits = (probs[:nf].cumsum(-1).unsqueeze(1) < u.unsqueeze(-1)).sum(-1).clamp_max(base - 1)  # (F, M, B, n)
    u = torch.rand((m,) + tuple(l.shape), generator=generator, dtype=f64, device=dev).clamp_min(torch.finfo(f64).tiny)
    if binary:
        x_gs = l + u.log() - (-u).log1p()  # logistic noise: z = [l + noise >= 0]
        digits_gs = (x_gs >= 0).long()
    else:
        x_gs = l - (-u.log()).log()  # Gumbel noise: z = argmax(l + noise)
        digits_gs = x_gs.argmax(-1)
    powers = base ** torch.arange(n - 1, -1, -1, device=dev)
    drawn = (torch.cat((digits, digits_gs.unsqueeze(0))) * powers).sum(-1)  # (F + 1, M, B) state numbers

    weighted_loss = torch.zeros(nf + 1, batch, dtype=f64, device=dev)  # sum_z p(z) L(z)
    weighted_state = torch.zeros(nf + 1, batch, n, width, dtype=f64, device=dev)  # sum_z p(z) L(z) z
    d_mean = torch.zeros(nf, batch, n, width, dtype=f64, device=dev)  # E[dL/dz]
    d_second = torch.zeros(nf, batch, n, width, width, dtype=f64, device=dev)  # E[dL/dz dL/dz^T] per variable
    d_drawn = torch.zeros(nf + 1, m, batch, n, width, dtype=f64, device=dev)  # dL/dz of the drawn states
    step = num_states if chunk_size is None else int(chunk_size)
    for start in range(0, num_states, step):  # the enumeration: the only loop over states
        stop = min(start + step, num_states)
        idx = _state_digits(torch.arange(start, stop, device=dev), n, base)  # (C, n)
        z_state = idx.to(f64) if binary else F.one_hot(idx, base).to(f64)
        z = z_state.unsqueeze(1).expand((stop - start, batch) + tuple(z_state.shape[1:]))
        z = z.to(logits.dtype).clone().requires_grad_()
        with torch.enable_grad():
            losses = loss_fn(z)
            if losses.shape != (stop - start, batch):
                raise ValueError(f"`loss_fn` returned shape {tuple(losses.shape)}, expected {(stop - start, batch)}")
            (dz,) = torch.autograd.grad(losses.sum(), z)
        losses, dz = losses.detach().to(f64), dz.to(f64).reshape(stop - start, batch, n, width)
        # p(z) of each state for each example at each temperature: (F + 1, B, C)
        w = logp[:, :, torch.arange(n, device=dev).unsqueeze(-1), idx.T].sum(-2).exp()
        wl = w * losses.T
        weighted_loss += wl.sum(-1)
        weighted_state += torch.einsum("fbc,cnw->fbnw", wl, z_state.reshape(-1, n, width))
        d_mean += torch.einsum("fbc,cbnw->fbnw", w[:nf], dz)
        d_second += torch.einsum("fbc,cbnv,cbnw->fbnvw", w[:nf], dz, dz)
        hit = ((drawn >= start) & (drawn < stop)).nonzero(as_tuple=True)
        d_drawn[hit] = dz[drawn[hit] - start, hit[2]]

    exact = (weighted_state - value * weighted_loss[..., None, None]) / taus.reshape(-1, 1, 1, 1)  # (F + 1, B, n, w)
    exact_rows, exact1 = exact[:nf], exact[nf]

    def agg(x: Tensor) -> Tensor:
        return x.sum(-3).flatten(-2) if aggregate == "sum" else x.flatten(-3)

    cols = []
    for t in tb:
        q = _log_probs(l, taus.new_tensor([t]), binary)[0].exp()
        q = q[..., 1:] if binary else q  # (B, n, w)
        jac = _jacobian(q, t, binary)
        mean = torch.einsum("bnvw,fbnw->fbnv", jac, d_mean)
        second = torch.einsum("bnuv,fbnvw,bnuw->fb", jac, d_second, jac)
        cols.append(_figures(mean, second, _backward(q, d_drawn[:nf], t, binary), exact_rows, exact1, agg))
    dst = {key: torch.stack([c[key] for c in cols], 1) for key in cols[0]}
    identity = _figures(d_mean, torch.einsum("fbnvv->fb", d_second), d_drawn[:nf], exact_rows, exact1, agg)

    gs = []
    for t in tg:
        q = torch.sigmoid(x_gs / t).unsqueeze(-1) if binary else torch.softmax(x_gs / t, -1)
        draws = agg(_backward(q, d_drawn[nf], t, binary))  # (M, D)
        mean, ref = draws.mean(0), agg(exact1)
        variance = draws.var(0, unbiased=True).sum()
        bias = (mean - ref).norm()
        cos = F.cosine_similarity(draws, ref.expand_as(draws), dim=-1, eps=1e-30).mean()
        figures = {"bias": bias, "variance": variance, "mse": bias**2 + variance, "cosine": cos}
        figures.update({"mean_norm": mean.norm(), "bias_se": (variance / m).sqrt()})
        figures.update({"bias_tau1": bias, "mse_tau1": bias**2 + variance, "cosine_tau1": cos})
        gs.append(figures)
    st_gs = {key: torch.stack([g[key] for g in gs]) for key in gs[0]}
    return TemperatureLandscape(tf, tb, tg, aggregate, m, agg(exact_rows), agg(exact1), dst, identity, st_gs)
