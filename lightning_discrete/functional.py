"""Pure gradient estimators for discrete variables (``torch.nn.functional`` style).

Every function takes logits ``l`` of any leading shape, works on any ``dim``,
accepts non-contiguous input in float32 / float64 / bfloat16 / float16 and an
optional :class:`torch.Generator`.  Internally the maths runs in float32 (or
float64 for float64 input); outputs come back in the input dtype.

Notation (see ``docs/design.md``): ``p(t) = softmax(l / t)`` over ``k`` categories and
``J(t) = (diag(p(t)) - p(t) p(t)^T) / t``.

Categorical estimators return a tensor of the same shape as ``logits``; hard ones
return an *exact* one-hot along ``dim`` in the forward pass.  Binary estimators
take one logit per unit (shape ``(*)``) and return exact ``{0, 1}`` values
(``sign_ste``: ``{-1, 0, +1}``).

The score-function family (REINFORCE with a leave-one-out baseline, DisARM) needs
the loss; it is exposed as samplers plus functions returning a *surrogate loss*
whose gradient is the estimator (:func:`reinforce_loo_surrogate`,
:func:`disarm_surrogate`).

Input checks: types, dtypes, ``dim`` and temperatures are always checked (they read no
element).  Checking the logits for NaN / Inf costs a pass over the data and a
host-device synchronisation per call, so it is off by default: turn it on with
:func:`set_validate_args`, the :func:`validate_args` context manager or the environment
variable ``LIGHTNING_DISCRETE_VALIDATE=1``.

All estimators are listed in :data:`ESTIMATORS` by a short name usable from YAML;
:func:`register_estimator` adds your own.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "decoupled_st",
    "softmax_st",
    "identity_st",
    "gumbel_softmax_st",
    "gumbel_softmax",
    "spigot",
    "reinmax",
    "gumbel_rao",
    "bernoulli_decoupled_st",
    "bernoulli_softmax_st",
    "bernoulli_identity_st",
    "bernoulli_gumbel_st",
    "bernoulli_gumbel_softmax",
    "sign_ste",
    "categorical_sample",
    "bernoulli_sample",
    "categorical_log_prob",
    "bernoulli_log_prob",
    "reinforce_loo_surrogate",
    "bernoulli_antithetic_pair",
    "disarm_surrogate",
    "project_simplex",
    "Estimator",
    "ESTIMATORS",
    "register_estimator",
    "get_estimator",
    "set_validate_args",
    "validate_args_enabled",
    "validate_args",
    "check_logits",
    "check_tau",
    "check_dim",
]

# --------------------------------------------------------------------------- #
# validation and small helpers
# --------------------------------------------------------------------------- #


def _is_compiling() -> bool:
    return bool(getattr(torch.compiler, "is_compiling", lambda: False)())


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# Value checks (NaN / Inf in the logits) cost a full pass over the data and, on CUDA, a
# host-device synchronisation per call, so they are off unless asked for (as
# ``torch.distributions.Distribution.set_default_validate_args``). The cheap checks (type,
# dtype, dim, temperatures) look at no element and always run.
_VALIDATE_ARGS = _env_flag("LIGHTNING_DISCRETE_VALIDATE")


def set_validate_args(enabled: bool) -> None:
    """Turn the value checks of every estimator on or off (process-wide).

    When on, logits containing NaN or Inf raise ``ValueError`` naming the argument; this
    costs one reduction over the logits and, on CUDA, a host-device synchronisation per
    call.  Off by default; the environment variable ``LIGHTNING_DISCRETE_VALIDATE=1`` turns
    it on at import.  Checks that read no element (types, dtypes, ``dim``, temperatures)
    always run.
    """
    global _VALIDATE_ARGS
    _VALIDATE_ARGS = bool(enabled)


def validate_args_enabled() -> bool:
    """Whether the value checks (NaN / Inf logits) are on; see :func:`set_validate_args`."""
    return _VALIDATE_ARGS


@contextlib.contextmanager
def validate_args(enabled: bool = True) -> Iterator[None]:
    """Context manager: value checks on (or off) inside, the previous setting restored after.

    Example::

        with LF.validate_args():
            z = LF.decoupled_st(logits, 1.0, 0.5)  # raises on NaN / Inf logits
    """
    previous = _VALIDATE_ARGS
    set_validate_args(enabled)
    try:
        yield
    finally:
        set_validate_args(previous)


def check_logits(logits: Tensor, name: str = "logits") -> None:
    """``ValueError`` unless ``logits`` is a floating-point tensor; with the value checks on
    (:func:`set_validate_args`) also if it contains NaN or Inf."""
    if not isinstance(logits, Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor, got dtype {logits.dtype}")
    if _VALIDATE_ARGS and not _is_compiling() and logits.numel() > 0:
        # one fused min/max reduction (NaN propagates, +-Inf shows up in min or max)
        # instead of materialising an ``isfinite`` mask of the whole input
        lo, hi = torch.aminmax(logits.detach())
        if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
            raise ValueError(f"`{name}` contains NaN or Inf values")


def check_tau(tau: Union[float, Tensor], name: str, allow_zero: bool = False) -> Union[float, Tensor]:
    """``tau`` as a float; ``ValueError`` naming ``name`` unless finite and ``> 0``
    (``>= 0`` with ``allow_zero``).

    A 0-dim floating-point tensor (a bottleneck's temperature buffer, passed as is under
    ``torch.compile`` so that a changing temperature is a graph input, not a constant) is
    returned unchanged: reading its value would be a host-device sync, and the bottleneck
    checked the value when it was set."""
    if isinstance(tau, Tensor):
        if tau.dim() != 0 or not tau.is_floating_point():
            raise ValueError(f"`{name}` must be a number or a 0-dim float tensor, got shape {tuple(tau.shape)}")
        return tau
    try:
        tau = float(tau)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"`{name}` must be a number, got {tau!r}") from None
    if not math.isfinite(tau) or tau < 0 or (tau == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be a finite number {bound}, got {tau}")
    return tau


def check_dim(logits: Tensor, dim: int) -> int:
    """``dim`` normalised to ``[0, logits.dim())``; ``ValueError`` if out of range or if
    ``logits`` has fewer than 2 categories along it."""
    nd = logits.dim()
    if nd == 0:
        raise ValueError("`logits` must have at least one dimension (the categories)")
    if not -nd <= dim < nd:
        raise ValueError(f"`dim`={dim} is out of range for logits with {nd} dimension(s)")
    dim = dim % nd
    if logits.shape[dim] < 2:
        raise ValueError(
            f"`logits` needs at least 2 categories along `dim`={dim}, got {logits.shape[dim]}"
        )
    return dim


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _uniform(shape, like: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """Uniforms in (0, 1) (never exactly 0), float32 (float64 for float64 input)."""
    dtype = _compute_dtype(like.dtype)
    # ``torch.rand(..., generator=None)`` takes the generator overload, which torch.compile
    # cannot trace with a dynamic (symbolic) shape; ``uniform_`` on an empty tensor can
    u = torch.empty(shape, dtype=dtype, device=like.device).uniform_(generator=generator)
    return u.clamp_min_(torch.finfo(dtype).tiny)


def _gumbel(like: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """Standard Gumbel noise shaped like ``like``, drawn from the random stream exactly as
    ``F.gumbel_softmax`` draws it for a float32 input (a contiguous ``exponential_`` draw
    of the same shape), but always in float32 (float64 for float64 input) and with the
    exponentials kept away from 0, so low-precision input never gets an infinite draw."""
    dtype = _compute_dtype(like.dtype)
    e = torch.empty(like.shape, dtype=dtype, device=like.device)
    return e.exponential_(generator=generator).clamp_min_(torch.finfo(dtype).tiny).log_().neg_()


def _softmax_backward(p: Tensor, grad: Tensor, tau: float) -> Tensor:
    """``J^T grad`` for ``p = softmax(x / tau)`` along the last dim."""
    return p * (grad - (grad * p).sum(-1, keepdim=True)) / tau


def _one_hot_like(index: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    """Exact one-hot of ``index`` (shape ``(*)``) as shape ``(*, k)``."""
    out = torch.zeros(*index.shape, k, dtype=dtype, device=index.device)
    return out.scatter_(-1, index.unsqueeze(-1), 1.0)


def _inverse_cdf_index_from(x: Tensor, u: Tensor, tau: float = 1.0) -> Tensor:
    """Index ``i`` with ``cdf[i-1] < u * cdf[-1] <= cdf[i]`` for ``cdf`` the running sum of
    ``exp((x - max x) / tau)`` along the last dim; ``u``: ``(*)`` uniforms in ``(0, 1)``."""
    inv = 1.0 / tau
    # w = (x - max x) / tau in one op: -max/tau + x * (1/tau)
    w = torch.add(x.amax(-1, keepdim=True).mul_(-inv), x, alpha=inv) if tau != 1.0 else (
        x - x.amax(-1, keepdim=True)
    )
    cdf = w.exp_().cumsum_(-1)
    threshold = u.to(cdf.dtype).unsqueeze(-1).mul_(cdf[..., -1:])
    idx = torch.searchsorted(cdf, threshold, right=False)
    return idx.squeeze(-1).clamp_(max=x.shape[-1] - 1)


def _inverse_cdf_index(x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """Sample an index from ``softmax(x)`` along the last dim with one uniform per row."""
    u = _uniform(x.shape[:-1], x, generator)
    return _inverse_cdf_index_from(x.contiguous(), u)


# CPU kernels work on chunks of about ``_CHUNK_ELEMENTS`` elements (``_FLAT_CHUNK_ELEMENTS``
# for the elementwise binary kernels): temporaries stay in the CPU cache (and in the
# allocator's cache: a fresh full-size temporary costs a page fault per 4 KiB), and the
# peak memory of decoupled ST is its output (forward) or its gradient (backward) alone.
# Sizes measured on a 2 MiB-L2 x86 core: smaller chunks pay Python overhead per op,
# larger ones fall out of L2.  Chunks are used by single-threaded CPU runs only (see
# ``_one_pass``); on other devices (CUDA) each op makes one pass over the whole tensor.
_CHUNK_ELEMENTS = 1 << 17
_FLAT_CHUNK_ELEMENTS = 1 << 19

# From this many categories on, ATen's fused CPU softmax (and its backward) beats the
# hand-written passes; below it ATen's last-dim kernels are slow (k = 8: ~30x).
_FUSED_SOFTMAX_MIN_K = 16


def _one_pass(device: torch.device) -> bool:
    """Whether the kernels skip the CPU chunk loop: off the CPU (CUDA: one pass per op),
    under ``torch.compile`` (the compiler fuses), and with several intra-op threads: there
    every op of every chunk is a parallel region whose threads must all be scheduled, and
    chunks measured slower than one pass (2 threads, 2 cores shared with other jobs)."""
    return device.type != "cpu" or _is_compiling() or torch.get_num_threads() > 1


def _chunks(n: int, step: int, device: torch.device):
    """``[(start, stop), ...]`` covering ``range(n)`` in pieces of ``step`` (one piece when
    :func:`_one_pass`)."""
    if n <= 0:
        return []
    if _one_pass(device):
        return [(0, n)]
    return [(i, min(n, i + step)) for i in range(0, n, step)]


def _row_chunks(n: int, k: int, device: torch.device):
    """Chunks of rows of ``k`` categories, about ``_CHUNK_ELEMENTS`` elements each."""
    return _chunks(n, max(1, _CHUNK_ELEMENTS // max(k, 1)), device)


def _softmax_vjp_into(out: Tensor, x: Tensor, g: Tensor, tau: float) -> None:
    """``out = J(tau)^T g`` for ``p = softmax(x / tau)`` along the last dim of 2-D ``x``;
    ``x``, ``g`` in the compute dtype, ``out`` any float dtype (may be a row slice).

    Rounds as autograd through ``torch.softmax(x / tau)`` does: divide by ``tau`` (not
    multiply by ``1 / tau``), ``p (g - <g, p>)``, then divide by ``tau``."""
    k = x.shape[-1]
    cdt = x.dtype
    if k >= _FUSED_SOFTMAX_MIN_K or x.device.type != "cpu":
        p = torch.softmax(x / tau if tau != 1.0 else x, -1)
        if out.dtype == cdt:
            torch.ops.aten._softmax_backward_data.out(g, p, -1, cdt, grad_input=out)
            if tau != 1.0:
                out.div_(tau)
        else:
            gi = torch._softmax_backward_data(g, p, -1, cdt)
            out.copy_(gi.div_(tau) if tau != 1.0 else gi)
        return
    p = x / tau if tau != 1.0 else x.clone()
    p.sub_(p.amax(-1, keepdim=True)).exp_()
    p.div_(p.sum(-1, keepdim=True))
    gp = (g * p).sum(-1, keepdim=True)
    if out.dtype == cdt:
        gi = torch.sub(g, gp, out=out).mul_(p)
        if tau != 1.0:
            gi.div_(tau)
    else:
        gi = torch.sub(g, gp).mul_(p)
        out.copy_(gi.div_(tau) if tau != 1.0 else gi)


# --------------------------------------------------------------------------- #
# categorical straight-through estimators
# --------------------------------------------------------------------------- #


class _DecoupledST(torch.autograd.Function):
    """Decoupled ST on ``(*, k)`` logits (categories last).

    Memory: on a single-threaded CPU, rows are processed in chunks, so besides its
    output (forward) and the gradient it returns (backward) it allocates only one float
    per row (the uniforms) and temporaries of about one chunk (~512 KiB); elsewhere
    (CUDA, several threads) each op makes one pass.  It saves only the logits for
    backward.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, tau_f: float, tau_b: float, generator):  # type: ignore[override]
        k = logits.shape[-1]
        cdt = _compute_dtype(logits.dtype)
        x2 = logits.reshape(-1, k)
        n = x2.shape[0]
        ctx.save_for_backward(logits)
        ctx.tau_b = tau_b
        if isinstance(tau_f, Tensor):  # temperatures as tensors (torch.compile): no branch on values
            u = _uniform((n,), x2, generator)
            x = x2.to(cdt)
            w = (x - x.amax(-1, keepdim=True)) / tau_f.to(cdt).clamp_min(torch.finfo(cdt).tiny)
            cdf = w.exp().cumsum(-1)
            # the inverse CDF as a count (what searchsorted returns), which the compiler fuses
            idx = (cdf < u.unsqueeze(-1) * cdf[:, -1:]).sum(-1).clamp(max=k - 1)
            idx = torch.where(tau_f > 0, idx, x.argmax(-1))
            return _one_hot_like(idx, k, logits.dtype).view(logits.shape)
        out = torch.empty((n, k), dtype=logits.dtype, device=logits.device)
        # one uniform per row, drawn up front: the sample does not depend on the chunking
        u = None if tau_f == 0.0 else _uniform((n,), x2, generator)
        for a, b in _row_chunks(n, k, logits.device):
            xc = x2[a:b]
            if u is None:
                idx = xc.max(-1).indices  # = argmax (first maximum), ~2x faster on CPU
            else:
                idx = _inverse_cdf_index_from(xc.to(cdt).contiguous(), u[a:b], tau_f)
            out[a:b].zero_().scatter_(-1, idx.unsqueeze(-1), 1.0)
        return out.view(logits.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (logits,) = ctx.saved_tensors
        tau_b = ctx.tau_b
        k = logits.shape[-1]
        cdt = _compute_dtype(logits.dtype)
        x2 = logits.reshape(-1, k)
        g2 = grad.reshape(-1, k)
        if isinstance(tau_b, Tensor):  # torch.compile path: one pass, the compiler fuses
            t = tau_b.to(cdt)
            gi = _softmax_backward(torch.softmax(x2.to(cdt) / t, -1), g2.to(cdt), t)
            return gi.to(logits.dtype).view(logits.shape), None, None, None
        n = x2.shape[0]
        out = torch.empty((n, k), dtype=logits.dtype, device=logits.device)
        for a, b in _row_chunks(n, k, logits.device):
            xc = x2[a:b].to(cdt).contiguous()
            _softmax_vjp_into(out[a:b], xc, g2[a:b].to(cdt).contiguous(), tau_b)
        return out.view(logits.shape), None, None, None


def decoupled_st(
    logits: Tensor,
    tau_f: float = 1.0,
    tau_b: float = 1.0,
    dim: int = -1,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Decoupled straight-through estimator.

    Forward: ``z ~ Categorical(softmax(l / tau_f))`` as an exact one-hot
    (``tau_f = 0``: ``one_hot(argmax l)``). Backward: ``dL/dl = J(tau_b)^T dL/dz``.

    Args:
        logits: ``(*, k, *)`` unnormalised log-probabilities, categories on ``dim``.
        tau_f: forward temperature, ``>= 0``.
        tau_b: backward temperature, ``> 0``.
        dim: the category dimension.
        generator: optional random generator for the sample.

    Returns:
        One-hot tensor of the same shape and dtype as ``logits``.
    """
    check_logits(logits)
    dim = check_dim(logits, dim)
    tau_f = check_tau(tau_f, "tau_f", allow_zero=True)
    tau_b = check_tau(tau_b, "tau_b")
    x = logits.movedim(dim, -1)
    return _DecoupledST.apply(x, tau_f, tau_b, generator).movedim(-1, dim)


def softmax_st(
    logits: Tensor, tau: float = 1.0, dim: int = -1, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Softmax straight-through: ``decoupled_st`` with ``tau_f = tau_b = tau`` (shapes as there)."""
    check_tau(tau, "tau")
    return decoupled_st(logits, tau, tau, dim=dim, generator=generator)


class _IdentityST(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor):  # type: ignore[override]
        return _one_hot_like(logits.argmax(-1), logits.shape[-1], logits.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad


def identity_st(logits: Tensor, dim: int = -1) -> Tensor:
    """Identity straight-through: forward ``one_hot(argmax l)``, backward ``dL/dl = dL/dz``.

    Args:
        logits: ``(*, k, *)``, categories on ``dim``.

    Returns:
        One-hot tensor shaped like ``logits``.
    """
    check_logits(logits)
    dim = check_dim(logits, dim)
    return _IdentityST.apply(logits.movedim(dim, -1)).movedim(-1, dim)


class _GumbelST(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, gumbels: Tensor, tau: float):  # type: ignore[override]
        y = torch.softmax((logits.to(gumbels.dtype) + gumbels) / tau, -1)
        ctx.save_for_backward(y)
        ctx.tau = tau
        return _one_hot_like(y.argmax(-1), logits.shape[-1], logits.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        g = _softmax_backward(y, grad.to(y.dtype), ctx.tau)
        return g.to(grad.dtype), None, None


def gumbel_softmax_st(
    logits: Tensor, tau: float = 1.0, dim: int = -1, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Straight-through Gumbel-Softmax.

    Forward ``one_hot(argmax(l + g))`` with ``g ~ Gumbel(0, 1)``; backward through the
    Jacobian of ``softmax((l + g) / tau)``.  Equals
    ``F.gumbel_softmax(logits, tau, hard=True)`` given the same noise.

    Args:
        logits: ``(*, k, *)``, categories on ``dim``.

    Returns:
        One-hot tensor shaped like ``logits``.
    """
    check_logits(logits)
    dim = check_dim(logits, dim)
    tau = check_tau(tau, "tau")
    gumbels = _gumbel(logits, generator)  # drawn in the caller's layout, as F.gumbel_softmax
    return _GumbelST.apply(logits.movedim(dim, -1), gumbels.movedim(dim, -1), tau).movedim(-1, dim)


def gumbel_softmax(
    logits: Tensor, tau: float = 1.0, dim: int = -1, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Relaxed Gumbel-Softmax ``softmax((l + g) / tau)`` (not discrete), plain autograd.

    Args:
        logits: ``(*, k, *)``, categories on ``dim``.

    Returns:
        Probability vectors shaped like ``logits``.
    """
    check_logits(logits)
    dim = check_dim(logits, dim)
    tau = check_tau(tau, "tau")
    gumbels = _gumbel(logits, generator)
    y = torch.softmax((logits.to(gumbels.dtype) + gumbels) / tau, dim)
    return y.to(logits.dtype)


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row of ``v`` (shape ``(*, k)``) onto the probability simplex."""
    k = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1.0
    ks = torch.arange(1, k + 1, device=v.device, dtype=v.dtype)
    cond = (u - css / ks) > 0
    rho = cond.to(v.dtype).cumsum(-1).argmax(-1, keepdim=True)  # last index where cond holds
    theta = css.gather(-1, rho) / (rho + 1).to(v.dtype)
    return (v - theta).clamp_min(0.0)


class _Spigot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, step_size: float):  # type: ignore[override]
        z = _one_hot_like(logits.argmax(-1), logits.shape[-1], logits.dtype)
        ctx.save_for_backward(z)
        ctx.step_size = step_size
        return z

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (z,) = ctx.saved_tensors
        cdt = _compute_dtype(z.dtype)
        zc = z.to(cdt)
        g = zc - project_simplex(zc - ctx.step_size * grad.to(cdt))
        return g.to(z.dtype), None


def spigot(logits: Tensor, step_size: float = 1.0, dim: int = -1) -> Tensor:
    """SPIGOT: forward ``z = one_hot(argmax l)``; backward
    ``dL/dl = z - Proj_simplex(z - step_size * dL/dz)``.

    Args:
        logits: ``(*, k, *)``, categories on ``dim``.
        step_size: the projected step ``eta > 0``.

    Returns:
        One-hot tensor shaped like ``logits``.
    """
    check_logits(logits)
    dim = check_dim(logits, dim)
    step_size = check_tau(step_size, "step_size")
    return _Spigot.apply(logits.movedim(dim, -1), step_size).movedim(-1, dim)


class _ReinMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, tau: float, generator):  # type: ignore[override]
        x = logits.to(_compute_dtype(logits.dtype))
        idx = _inverse_cdf_index(x, generator)
        z = _one_hot_like(idx, logits.shape[-1], x.dtype)
        ctx.save_for_backward(logits, z)
        ctx.tau = tau
        return z.to(logits.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        logits, z = ctx.saved_tensors
        x = logits.to(z.dtype)
        g = grad.to(z.dtype)
        p = torch.softmax(x, -1)
        # second-order (Heun) term at the midpoint between the sample and p(tau)
        d = 0.5 * (torch.softmax(x / ctx.tau, -1) + z)
        g1 = 2.0 * g * d
        g1 = g1 - d * g1.sum(-1, keepdim=True)
        g0 = -0.5 * g * p
        g0 = g0 - p * g0.sum(-1, keepdim=True)
        out = g0 + g1
        out = out - out.mean(-1, keepdim=True)
        return out.to(logits.dtype), None, None


def reinmax(
    logits: Tensor, tau: float = 1.0, dim: int = -1, generator: Optional[torch.Generator] = None
) -> Tensor:
    """ReinMax (Liu et al., 2023): forward ``z ~ Categorical(softmax(l))``; backward the
    second-order (Heun's method) estimator with temperature ``tau``, as in the
    authors' ``reinmax`` package.

    Args:
        logits: ``(*, k, *)``, categories on ``dim``.

    Returns:
        One-hot tensor shaped like ``logits``.
    """
    check_logits(logits)
    dim = check_dim(logits, dim)
    tau = check_tau(tau, "tau")
    return _ReinMax.apply(logits.movedim(dim, -1), tau, generator).movedim(-1, dim)


def _conditional_gumbel_perturbed(x: Tensor, z: Tensor, num_samples: int, generator) -> Tensor:
    """``num_samples`` draws of ``l + g`` with ``g ~ Gumbel`` conditioned on ``argmax = z``.

    x: ``(*, k)`` logits (compute dtype); z: ``(*, k)`` one-hot. Returns ``(S, *, k)``.
    """
    e = torch.empty((num_samples,) + x.shape, dtype=x.dtype, device=x.device)
    log_e = e.exponential_(generator=generator).clamp_min_(torch.finfo(x.dtype).tiny).log_()
    log_z = torch.logsumexp(x, -1, keepdim=True)
    log_e_top = (log_e * z).sum(-1, keepdim=True)
    top = log_z - log_e_top  # the max of l + g, ~ Gumbel(log Z)
    rest = -torch.logaddexp(log_e - x, log_e_top - log_z)
    return torch.where(z.bool(), top, rest)


class _GumbelRao(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, tau: float, num_samples: int, generator):  # type: ignore[override]
        x = logits.to(_compute_dtype(logits.dtype))
        idx = (x + _gumbel(x, generator)).argmax(-1)
        z = _one_hot_like(idx, x.shape[-1], x.dtype)
        ctx.save_for_backward(logits, z)
        ctx.tau, ctx.num_samples, ctx.generator = tau, num_samples, generator
        return z.to(logits.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        logits, z = ctx.saved_tensors
        x = logits.to(z.dtype)
        perturbed = _conditional_gumbel_perturbed(x, z, ctx.num_samples, ctx.generator)
        y = torch.softmax(perturbed / ctx.tau, -1)
        g = _softmax_backward(y, grad.to(z.dtype).unsqueeze(0), ctx.tau).mean(0)
        return g.to(logits.dtype), None, None, None


def gumbel_rao(
    logits: Tensor,
    tau: float = 1.0,
    num_samples: int = 10,
    dim: int = -1,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Gumbel-Rao (Paulus et al., 2021): forward as ST Gumbel-Softmax; backward averages
    the ST-GS Jacobian over ``num_samples`` Gumbel draws conditioned on the sample.

    Args:
        logits: ``(*, k, *)``, categories on ``dim``.
        num_samples: conditional Gumbel samples ``K >= 1`` in the backward pass.

    Returns:
        One-hot tensor shaped like ``logits``.
    """
    check_logits(logits)
    dim = check_dim(logits, dim)
    tau = check_tau(tau, "tau")
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer, got {num_samples}")
    return _GumbelRao.apply(logits.movedim(dim, -1), tau, int(num_samples), generator).movedim(
        -1, dim
    )


# --------------------------------------------------------------------------- #
# binary units: one logit per unit, z in {0, 1}
# --------------------------------------------------------------------------- #


# ``softplus_backward(c, x, beta, threshold) = c * sigmoid(beta * x)`` (``c`` where
# ``beta * x > threshold``): a scaled sigmoid of a scaled input in one fused pass.  Above the
# threshold the sigmoid is 1 in the compute dtype anyway.
_SIGMOID_THRESHOLD = {torch.float32: 20.0, torch.float64: 40.0}
# float32 sampling compares 31 random bits (``random_`` on int32: uniform on [0, 2^31),
# cheaper than a float ``uniform_``) with ``C * p``; C = 2^31 + 256 (the next float32 above
# 2^31) so that p = 1 beats every bit pattern once rounded to float32, and p = 0 none.
_BITS_SCALE = 2.0**31 + 256.0


_SCALARS: Dict[Tuple[float, torch.dtype, torch.device], Tensor] = {}


def _scalar(c: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A cached 0-dim tensor (no host-to-device copy per call on CUDA)."""
    if _is_compiling():
        return torch.tensor(c, dtype=dtype, device=device)
    key = (c, dtype, device)
    t = _SCALARS.get(key)
    if t is None:
        t = _SCALARS[key] = torch.tensor(c, dtype=dtype, device=device)
    return t


def _scaled_sigmoid(c: float, x: Tensor, inv_tau: float) -> Tensor:
    """``c * sigmoid(x * inv_tau)`` in one pass (``x`` float32 or float64)."""
    return torch.ops.aten.softplus_backward(
        _scalar(c, x.dtype, x.device), x, inv_tau, _SIGMOID_THRESHOLD[x.dtype]
    )


class _BernoulliDecoupledST(torch.autograd.Function):
    """Binary decoupled ST; saves only the logits.

    Forward: ``z = [u < sigmoid(l / tau_f)]`` with one uniform ``u`` per unit (float32: 31
    random bits, float64: a float64 uniform), exact at ``p = 0`` and ``p = 1``, written
    straight into the output.  Backward: ``g * s (1 - s) / tau_b`` with
    ``s = sigmoid(l / tau_b)`` recomputed (the fused ``sigmoid_backward``).  On a single-threaded CPU
    both run on cache-sized chunks, so the only full-size allocations are the output and
    the gradient.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, tau_f: float, tau_b: float, generator):  # type: ignore[override]
        cdt = _compute_dtype(logits.dtype)
        x = logits.to(cdt).reshape(-1)
        n = x.shape[0]
        ctx.save_for_backward(logits)
        ctx.tau_b = tau_b
        if isinstance(tau_f, Tensor):  # temperatures as tensors (torch.compile): no branch on values
            t = tau_f.to(cdt).clamp_min(torch.finfo(cdt).tiny)
            sampled = _uniform((n,), x, generator) < torch.sigmoid(x / t)
            z = torch.where(tau_f > 0, sampled, x >= 0)
            return z.to(logits.dtype).view(logits.shape)
        if tau_f == 0.0:
            z = x >= 0  # argmax of [l, 0] picks the first on ties
        else:
            inv = 1.0 / tau_f
            z = torch.empty(n, dtype=cdt, device=x.device)
            for a, b in _chunks(n, _FLAT_CHUNK_ELEMENTS, x.device):
                # chunks draw consecutive parts of one stream: same as a single draw
                zc = z[a:b]
                if cdt == torch.float32:
                    # uniform on [0, 2^31), one 32-bit draw each (``randint`` spends two);
                    # the aten op, not ``Tensor.random_``, so that torch.compile traces it
                    bits = torch.ops.aten.random_.default(
                        torch.empty(b - a, dtype=torch.int32, device=x.device), generator=generator
                    )
                    torch.lt(bits, _scaled_sigmoid(_BITS_SCALE, x[a:b], inv), out=zc)
                else:
                    zc.uniform_(generator=generator)
                    torch.lt(zc, _scaled_sigmoid(1.0, x[a:b], inv), out=zc)
        return z.to(logits.dtype).view(logits.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (logits,) = ctx.saved_tensors
        tau_b = ctx.tau_b
        cdt = _compute_dtype(logits.dtype)
        if isinstance(tau_b, Tensor):  # torch.compile path: one pass, the compiler fuses
            t = tau_b.to(cdt)
            sb = torch.sigmoid(logits.to(cdt) / t)
            return (grad.to(cdt) * sb * (1.0 - sb) / t).to(logits.dtype), None, None, None
        inv = 1.0 / tau_b
        x = logits.to(cdt).reshape(-1)
        g = grad.to(cdt).reshape(-1)
        n = x.shape[0]
        out = torch.empty(n, dtype=cdt, device=x.device)
        for a, b in _chunks(n, _FLAT_CHUNK_ELEMENTS, x.device):
            s = _scaled_sigmoid(1.0, x[a:b], inv)
            oc = torch.ops.aten.sigmoid_backward.grad_input(g[a:b], s, grad_input=out[a:b])
            if tau_b != 1.0:
                oc.div_(tau_b)
        return out.to(logits.dtype).view(logits.shape), None, None, None


def bernoulli_decoupled_st(
    logits: Tensor,
    tau_f: float = 1.0,
    tau_b: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Decoupled ST for binary units: the ``k = 2`` case with logits ``[l, 0]``.

    Forward ``z ~ Bernoulli(sigmoid(l / tau_f))`` (``tau_f = 0``: ``z = [l >= 0]``);
    backward ``dL/dl = sigmoid'(l / tau_b) / tau_b * dL/dz``.

    Args:
        logits: ``(*)``, one logit per unit.

    Returns:
        Exact ``{0, 1}`` tensor shaped like ``logits``.
    """
    check_logits(logits)
    tau_f = check_tau(tau_f, "tau_f", allow_zero=True)
    tau_b = check_tau(tau_b, "tau_b")
    return _BernoulliDecoupledST.apply(logits, tau_f, tau_b, generator)


def bernoulli_softmax_st(
    logits: Tensor, tau: float = 1.0, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Binary softmax ST: :func:`bernoulli_decoupled_st` with ``tau_f = tau_b = tau``."""
    check_tau(tau, "tau")
    return bernoulli_decoupled_st(logits, tau, tau, generator=generator)


class _BernoulliIdentityST(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor):  # type: ignore[override]
        return (logits >= 0).to(logits.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad


def bernoulli_identity_st(logits: Tensor) -> Tensor:
    """Binary identity ST: forward ``[l >= 0]``, backward identity. Shapes ``(*) -> (*)``."""
    check_logits(logits)
    return _BernoulliIdentityST.apply(logits)


def _logistic(like: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    u = _uniform(like.shape, like, generator)
    return torch.log(u) - torch.log1p(-u)


class _BernoulliGumbelST(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, tau: float, generator):  # type: ignore[override]
        x = logits.to(_compute_dtype(logits.dtype))
        y = x + _logistic(x, generator)
        ctx.save_for_backward(torch.sigmoid(y / tau))
        ctx.tau = tau
        return (y >= 0).to(logits.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (s,) = ctx.saved_tensors
        return (grad.to(s.dtype) * s * (1.0 - s) / ctx.tau).to(grad.dtype), None, None


def bernoulli_gumbel_st(
    logits: Tensor, tau: float = 1.0, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Binary ST Gumbel-Softmax with logistic noise ``n``: forward ``[l + n >= 0]``,
    backward through ``sigmoid((l + n) / tau)``. Shapes ``(*) -> (*)``."""
    check_logits(logits)
    tau = check_tau(tau, "tau")
    return _BernoulliGumbelST.apply(logits, tau, generator)


def bernoulli_gumbel_softmax(
    logits: Tensor, tau: float = 1.0, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Relaxed binary Gumbel-Softmax (binary Concrete): ``sigmoid((l + n) / tau)``."""
    check_logits(logits)
    tau = check_tau(tau, "tau")
    x = logits.to(_compute_dtype(logits.dtype))
    return torch.sigmoid((x + _logistic(x, generator)) / tau).to(logits.dtype)


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor):  # type: ignore[override]
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad


def sign_ste(x: Tensor) -> Tensor:
    """Sign straight-through: forward ``sign(x)`` (``sign(0) = 0``), identity backward."""
    check_logits(x)
    return _SignSTE.apply(x)


def _as_binary(categorical: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Binary form of a categorical estimator: run it on logits ``[l, 0]``, keep category 0."""

    def fn(logits: Tensor, **kwargs) -> Tensor:
        check_logits(logits)
        stacked = torch.stack([logits, torch.zeros_like(logits)], dim=-1)
        return categorical(stacked, dim=-1, **kwargs)[..., 0]

    fn.__name__ = f"bernoulli_{categorical.__name__}"
    fn.__doc__ = f"Binary form of :func:`{categorical.__name__}` (the ``k = 2`` case ``[l, 0]``)."
    return fn


# --------------------------------------------------------------------------- #
# score-function estimators
# --------------------------------------------------------------------------- #


def categorical_sample(
    logits: Tensor, dim: int = -1, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Exact one-hot sample ``z ~ Categorical(softmax(l))`` with no gradient. Shape as ``logits``."""
    check_logits(logits)
    dim = check_dim(logits, dim)
    x = logits.detach().movedim(dim, -1)
    idx = _inverse_cdf_index(x.to(_compute_dtype(x.dtype)), generator)
    return _one_hot_like(idx, x.shape[-1], logits.dtype).movedim(-1, dim)


def bernoulli_sample(logits: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Sample ``z ~ Bernoulli(sigmoid(l))`` in ``{0, 1}`` with no gradient. Shape as ``logits``."""
    check_logits(logits)
    x = logits.detach().to(_compute_dtype(logits.dtype))
    return (_uniform(x.shape, x, generator) <= torch.sigmoid(x)).to(logits.dtype)


def categorical_log_prob(logits: Tensor, z: Tensor, dim: int = -1) -> Tensor:
    """``log softmax(l)[z]`` for one-hot ``z``; the category ``dim`` is reduced away.

    Computed in float32 (float64 for float64 logits)."""
    check_logits(logits)
    dim = check_dim(logits, dim)
    x = logits.to(_compute_dtype(logits.dtype))
    return (torch.log_softmax(x, dim) * z.to(x.dtype)).sum(dim)


def bernoulli_log_prob(logits: Tensor, z: Tensor) -> Tensor:
    """Elementwise ``log Bernoulli(z; sigmoid(l))`` for ``z`` in ``{0, 1}`` (float32, or
    float64 for float64 logits)."""
    check_logits(logits)
    x = logits.to(_compute_dtype(logits.dtype))
    z = z.to(x.dtype)
    return z * F.logsigmoid(x) + (1 - z) * F.logsigmoid(-x)


def reinforce_loo_surrogate(log_probs: Tensor, losses: Tensor) -> Tensor:
    """Surrogate loss for REINFORCE with a leave-one-out baseline.

    Draw ``S >= 2`` samples per example.  The gradient of the returned scalar with
    respect to the logits is the mean over examples of
    ``1/S sum_s (L_s - mean_{j != s} L_j) grad log p(z_s)``, an unbiased estimate of
    ``grad E[L]``.  Its value is zero in expectation (add it to the task loss).

    Args:
        log_probs: ``(S, *)`` log-probabilities of the drawn samples (with gradient).
        losses: ``(S, *)`` per-sample losses (treated as constants).

    Returns:
        A scalar tensor.
    """
    if log_probs.shape != losses.shape:
        raise ValueError(
            f"`log_probs` {tuple(log_probs.shape)} and `losses` {tuple(losses.shape)} must match"
        )
    s = log_probs.shape[0] if log_probs.dim() > 0 else 0
    if s < 2:
        raise ValueError(f"the leave-one-out baseline needs `num_samples` >= 2, got {s}")
    losses = losses.detach().to(log_probs.dtype)
    baseline = (losses.sum(0, keepdim=True) - losses) / (s - 1)
    return ((losses - baseline) * log_probs).mean()


def bernoulli_antithetic_pair(
    logits: Tensor, generator: Optional[torch.Generator] = None
) -> Tuple[Tensor, Tensor]:
    """Antithetic pair ``b = [u < sigmoid(l)]``, ``b~ = [1 - u < sigmoid(l)]`` (no gradient).

    Args:
        logits: ``(*)``.

    Returns:
        Two ``{0, 1}`` tensors shaped like ``logits``.
    """
    check_logits(logits)
    x = logits.detach().to(_compute_dtype(logits.dtype))
    u = _uniform(x.shape, x, generator)
    s = torch.sigmoid(x)
    return (u < s).to(logits.dtype), ((1 - u) < s).to(logits.dtype)


def disarm_surrogate(logits: Tensor, b1: Tensor, b2: Tensor, loss1: Tensor, loss2: Tensor) -> Tensor:
    """Surrogate loss for DisARM (Dong, Mnih & Tucker, 2020), an unbiased antithetic
    estimator for binary units.

    Its gradient with respect to ``logits`` is, per example and unit,
    ``1/2 (L(b) - L(b~)) (-1)^{b~} [b != b~] sigmoid(|l|)``, averaged over examples.

    Args:
        logits: ``(B, *)`` logits with gradient.
        b1, b2: ``(B, *)`` antithetic pair from :func:`bernoulli_antithetic_pair`.
        loss1, loss2: ``(B,)`` losses at ``b1`` and ``b2`` (treated as constants).

    Returns:
        A scalar tensor.
    """
    if loss1.shape != loss2.shape or loss1.dim() != 1 or loss1.shape[0] != logits.shape[0]:
        raise ValueError(
            "`loss1` and `loss2` must both have shape (B,) with B = logits.shape[0], got "
            f"{tuple(loss1.shape)} and {tuple(loss2.shape)} for logits {tuple(logits.shape)}"
        )
    x = logits.to(_compute_dtype(logits.dtype))
    diff = (loss1 - loss2).detach().to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 1))
    sign = 1.0 - 2.0 * b2.to(x.dtype)
    w = 0.5 * diff * sign * (b1 != b2).to(x.dtype) * torch.sigmoid(x.detach().abs())
    return (w * x).sum() / x.shape[0]


# --------------------------------------------------------------------------- #
# registry
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Estimator:
    """A registered estimator.

    Attributes:
        name: registry name (used in YAML).
        categorical: ``fn(logits, *, tau_f, tau_b, dim, generator) -> z`` or ``None``.
        binary: ``fn(logits, *, tau_f, tau_b, generator) -> z`` or ``None``.
        temperature: ``"decoupled"`` (separate ``tau_f``/``tau_b``), ``"single"``
            (one ``tau``, ``tau_f == tau_b``) or ``"none"``.
        score_function: samples carry no pathwise gradient; the model must add a
            surrogate loss (``"reinforce"``, ``"disarm"``).
        hard: the forward output is exactly discrete.
    """

    name: str
    categorical: Optional[Callable[..., Tensor]]
    binary: Optional[Callable[..., Tensor]]
    temperature: str = "single"
    score_function: bool = False
    hard: bool = True

    def __reduce__(self):
        # pickle by registry name (ddp_spawn, checkpoints): the functions may be lambdas
        return (get_estimator, (self.name,))


ESTIMATORS: Dict[str, Estimator] = {}


def register_estimator(estimator: Estimator, overwrite: bool = False) -> Estimator:
    """Add ``estimator`` to :data:`ESTIMATORS` under ``estimator.name``."""
    if estimator.temperature not in ("decoupled", "single", "none"):
        raise ValueError(
            f"`temperature` must be 'decoupled', 'single' or 'none', got {estimator.temperature!r}"
        )
    if estimator.categorical is None and estimator.binary is None:
        raise ValueError("an estimator needs a `categorical` or a `binary` function")
    if estimator.name in ESTIMATORS and not overwrite:
        raise ValueError(f"estimator {estimator.name!r} is already registered (pass overwrite=True)")
    ESTIMATORS[estimator.name] = estimator
    return estimator


def get_estimator(name: str) -> Estimator:
    """Look up an estimator by registry name; ``ValueError`` lists the known names."""
    try:
        return ESTIMATORS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown `estimator` {name!r}; known estimators: {', '.join(sorted(ESTIMATORS))}"
        ) from None


def _builtin() -> None:
    def single(fn):  # categorical fn(logits, tau, dim, generator)
        return lambda l, *, tau_f, tau_b, dim=-1, generator=None: fn(l, tau_f, dim=dim, generator=generator)

    def single_bin(fn):
        return lambda l, *, tau_f, tau_b, generator=None: fn(l, tau_f, generator=generator)

    register_estimator(Estimator(
        "decoupled",
        lambda l, *, tau_f, tau_b, dim=-1, generator=None: decoupled_st(l, tau_f, tau_b, dim, generator),
        lambda l, *, tau_f, tau_b, generator=None: bernoulli_decoupled_st(l, tau_f, tau_b, generator),
        temperature="decoupled",
    ))
    register_estimator(Estimator(
        "identity",
        lambda l, *, tau_f, tau_b, dim=-1, generator=None: identity_st(l, dim),
        lambda l, *, tau_f, tau_b, generator=None: bernoulli_identity_st(l),
        temperature="none",
    ))
    register_estimator(Estimator("softmax", single(softmax_st), single_bin(bernoulli_softmax_st)))
    register_estimator(Estimator("gumbel_st", single(gumbel_softmax_st), single_bin(bernoulli_gumbel_st)))
    register_estimator(Estimator(
        "gumbel_softmax", single(gumbel_softmax), single_bin(bernoulli_gumbel_softmax), hard=False
    ))
    register_estimator(Estimator(
        "sign", None, lambda l, *, tau_f, tau_b, generator=None: sign_ste(l), temperature="none"
    ))
    spigot_fn = lambda l, *, tau_f, tau_b, dim=-1, generator=None: spigot(l, tau_f, dim)  # noqa: E731
    register_estimator(Estimator(
        "spigot", spigot_fn,
        lambda l, *, tau_f, tau_b, generator=None: _as_binary(spigot_fn)(l, tau_f=tau_f, tau_b=tau_b),
    ))
    reinmax_fn = single(reinmax)
    register_estimator(Estimator(
        "reinmax", reinmax_fn,
        lambda l, *, tau_f, tau_b, generator=None: _as_binary(reinmax_fn)(
            l, tau_f=tau_f, tau_b=tau_b, generator=generator
        ),
    ))
    rao_fn = single(gumbel_rao)
    register_estimator(Estimator(
        "gumbel_rao", rao_fn,
        lambda l, *, tau_f, tau_b, generator=None: _as_binary(rao_fn)(
            l, tau_f=tau_f, tau_b=tau_b, generator=generator
        ),
    ))
    register_estimator(Estimator(
        "reinforce",
        lambda l, *, tau_f, tau_b, dim=-1, generator=None: categorical_sample(l, dim, generator),
        lambda l, *, tau_f, tau_b, generator=None: bernoulli_sample(l, generator),
        temperature="none",
        score_function=True,
    ))
    register_estimator(Estimator(
        "disarm",
        None,
        lambda l, *, tau_f, tau_b, generator=None: bernoulli_antithetic_pair(l, generator)[0],
        temperature="none",
        score_function=True,
    ))


_builtin()
