"""Pure gradient estimators for discrete variables (``torch.nn.functional`` style).

Every function takes logits ``l`` of any leading shape, works on any ``dim``,
accepts non-contiguous input in float32 / float64 / bfloat16 / float16 and an
optional :class:`torch.Generator`.  Internally the maths runs in float32 (or
float64 for float64 input); outputs come back in the input dtype.

Notation (see ``docs/design.md``, "Estimator maths"): ``p(t) = softmax(l / t)`` over ``k``
categories and ``J(t) = (diag(p(t)) - p(t) p(t)^T) / t``.

Naming rule: the estimator registered as ``N`` in :data:`ESTIMATORS` (the name used in
YAML, ``--model.estimator=N``) is the function ``N`` for categorical logits and
``bernoulli_N`` for binary units (one logit per unit, ``z`` in ``{0, 1}``, the ``k = 2``
case with logits ``[l, 0]``)::

    registry name       categorical              binary
    decoupled_st        decoupled_st             bernoulli_decoupled_st
    identity_st         identity_st              bernoulli_identity_st
    softmax_st          softmax_st               bernoulli_softmax_st
    gumbel_softmax_st   gumbel_softmax_st        bernoulli_gumbel_softmax_st
    gumbel_softmax      gumbel_softmax           bernoulli_gumbel_softmax
    spigot              spigot                   bernoulli_spigot
    reinmax             reinmax                  bernoulli_reinmax
    gumbel_rao          gumbel_rao               bernoulli_gumbel_rao
    reinforce           reinforce                bernoulli_reinforce
    disarm              --                       bernoulli_disarm
    sign_st             --                       sign_st

The one exception is ``sign_st``: its output ``sign(l)`` in ``{-1, 0, +1}`` is not a
Bernoulli variable, so its (binary-only) function carries no ``bernoulli_`` prefix.

Categorical estimators return a tensor of the same shape as ``logits``; hard ones
return an *exact* one-hot along ``dim`` in the forward pass.  Binary estimators
take one logit per unit (shape ``(*)``) and return exact ``{0, 1}`` values
(``sign_st``: ``{-1, 0, +1}``).

The score-function family needs the loss: :func:`reinforce` / :func:`bernoulli_reinforce`
draw a sample with no pathwise gradient, to pair with :func:`reinforce_loo_surrogate`;
:func:`bernoulli_disarm` draws an antithetic pair, to pair with :func:`disarm_surrogate`.
The surrogates are losses whose gradient is the estimator.

Input checks: types, dtypes, ``dim`` and temperatures are always checked (they read no
element; :func:`check_logits`, :func:`check_tau`, :func:`check_dim`).  Checking the logits
for NaN / Inf costs a pass over the data and a host-device synchronisation per call, so it
is off by default: turn it on with :func:`set_validate_args`, the :func:`validate_args`
context manager or the environment variable ``LIGHTNING_DISCRETE_VALIDATE=1``.

:func:`get_estimator` looks an :class:`Estimator` up by its registry name (the older
names ``decoupled``, ``identity``, ``softmax``, ``gumbel_st`` and ``sign`` still resolve,
with a ``FutureWarning``); :func:`register_estimator` adds your own.

Examples:
    >>> import torch
    >>> from lightning_discrete import functional as LF
    >>> logits = torch.randn(4, 8, requires_grad=True)
    >>> z = LF.decoupled_st(logits, tau_f=1.0, tau_b=0.5)
    >>> z.detach().sum(-1)
    tensor([1., 1., 1., 1.])
    >>> LF.get_estimator("decoupled_st").categorical is LF.decoupled_st
    True
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "decoupled_st",
    "softmax_st",
    "identity_st",
    "gumbel_softmax_st",
    "gumbel_softmax",
    "spigot",
    "reinmax",
    "gumbel_rao",
    "reinforce",
    "bernoulli_decoupled_st",
    "bernoulli_softmax_st",
    "bernoulli_identity_st",
    "bernoulli_gumbel_softmax_st",
    "bernoulli_gumbel_softmax",
    "bernoulli_spigot",
    "bernoulli_reinmax",
    "bernoulli_gumbel_rao",
    "bernoulli_reinforce",
    "bernoulli_disarm",
    "sign_st",
    "categorical_log_prob",
    "bernoulli_log_prob",
    "categorical_kl",
    "bernoulli_kl",
    "reinforce_loo_surrogate",
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

    Args:
        enabled: ``True`` to check the logits of every call for NaN / Inf.

    Examples:
        >>> from lightning_discrete import functional as LF
        >>> LF.set_validate_args(True); LF.validate_args_enabled()
        True
        >>> LF.set_validate_args(False); LF.validate_args_enabled()
        False
    """
    global _VALIDATE_ARGS
    _VALIDATE_ARGS = bool(enabled)


def validate_args_enabled() -> bool:
    """Whether the value checks (NaN / Inf logits) are on; see :func:`set_validate_args`.

    Examples:
        >>> from lightning_discrete import functional as LF
        >>> LF.validate_args_enabled()
        False
    """
    return _VALIDATE_ARGS


@contextlib.contextmanager
def validate_args(enabled: bool = True) -> Iterator[None]:
    """Context manager: value checks on (or off) inside, the previous setting restored after.

    Args:
        enabled: the setting inside the block.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> with LF.validate_args():
        ...     LF.decoupled_st(torch.tensor([[0.0, float("nan")]]), 1.0, 0.5)
        Traceback (most recent call last):
        ...
        ValueError: `logits` contains NaN or Inf values
    """
    previous = _VALIDATE_ARGS
    set_validate_args(enabled)
    try:
        yield
    finally:
        set_validate_args(previous)


def check_logits(logits: Tensor, name: str = "logits") -> None:
    """``ValueError`` unless ``logits`` is a floating-point tensor; with the value checks on
    (:func:`set_validate_args`) also if it contains NaN or Inf.

    Args:
        logits: the tensor to check, any shape.
        name: the argument name the error message uses.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.check_logits(torch.zeros(2, 3))
        >>> LF.check_logits(torch.zeros(2, dtype=torch.long), "scores")
        Traceback (most recent call last):
        ...
        ValueError: `scores` must be a floating-point tensor, got dtype torch.int64
    """
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
    checked the value when it was set.

    Args:
        tau: the temperature, a number or a 0-dim float tensor.
        name: the argument name the error message uses.
        allow_zero: accept ``0`` (``tau_f = 0`` means argmax).

    Examples:
        >>> from lightning_discrete import functional as LF
        >>> LF.check_tau(2, "tau_b")
        2.0
        >>> LF.check_tau(0.0, "tau_b")
        Traceback (most recent call last):
        ...
        ValueError: `tau_b` must be a finite number > 0, got 0.0
    """
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
    ``logits`` has fewer than 2 categories along it.

    Args:
        logits: ``(*)`` tensor with the categories on ``dim``.
        dim: the category dimension, negative values count from the end.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.check_dim(torch.zeros(2, 3, 4), -2)
        1
    """
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


def _distinct(tau_f: Union[float, Tensor], tau_b: Union[float, Tensor]) -> Union[float, Tensor]:
    """``tau_b``, copied when it is the very tensor ``tau_f`` is (``softmax_st`` passes its one
    temperature as both): under ``torch.compile`` an autograd Function may not take one tensor
    twice."""
    return tau_b.clone() if isinstance(tau_b, Tensor) and tau_b is tau_f else tau_b


def _scales(tau: Union[float, Tensor]) -> bool:
    """Whether dividing by ``tau`` changes anything: a float other than 1, or a tensor
    temperature (a graph input under ``torch.compile``; its value is not read)."""
    return isinstance(tau, Tensor) or tau != 1.0


def _softmax_backward(p: Tensor, grad: Tensor, tau: float) -> Tensor:
    """``J^T grad`` for ``p = softmax(x / tau)`` along the last dim."""
    return p * (grad - (grad * p).sum(-1, keepdim=True)) / tau


def _own_softmax_passes(x: Tensor) -> bool:
    """Whether a softmax over the last dim of ``x`` is faster as hand-written passes than as
    ATen's kernels: on the CPU, below ``_FUSED_SOFTMAX_MIN_K`` categories, outside
    ``torch.compile`` (which fuses either way)."""
    return x.shape[-1] < _FUSED_SOFTMAX_MIN_K and x.device.type == "cpu" and not _is_compiling()


def _softmax(x: Tensor) -> Tensor:
    """``softmax(x)`` along the last dim, for kernels that run without autograd (inside an
    autograd Function): hand-written passes (max, exp, sum, divide; about 5x faster than
    ATen's last-dim kernel at k = 8-10) where :func:`_own_softmax_passes`, else ``torch.softmax``."""
    if not _own_softmax_passes(x):
        return torch.softmax(x, -1)
    p = x - x.amax(-1, keepdim=True)
    p.exp_()
    return p.div_(p.sum(-1, keepdim=True))


def _one_hot_like(index: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    """Exact one-hot of ``index`` (shape ``(*)``) as shape ``(*, k)``."""
    out = torch.zeros(*index.shape, k, dtype=dtype, device=index.device)
    return out.scatter_(-1, index.unsqueeze(-1), 1.0)


def _inverse_cdf_index_from(x: Tensor, u: Tensor, tau: float = 1.0) -> Tensor:
    """Index ``i`` with ``cdf[i-1] < u * cdf[-1] <= cdf[i]`` for ``cdf`` the running sum of
    ``exp((x - max x) / tau)`` along the last dim; ``u``: ``(*)`` uniforms in ``(0, 1)``."""
    inv = 1.0 / tau
    # w = (x - max x) / tau in one op: -max/tau + x * (1/tau)
    w = torch.add(x.amax(-1, keepdim=True).mul_(-inv), x, alpha=inv) if _scales(tau) else (
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
    p = _softmax(x / tau if _scales(tau) else x)
    if not _own_softmax_passes(x):
        if out.dtype == cdt:
            torch.ops.aten._softmax_backward_data.out(g, p, -1, cdt, grad_input=out)
            if _scales(tau):
                out.div_(tau)
        else:
            gi = torch._softmax_backward_data(g, p, -1, cdt)
            out.copy_(gi.div_(tau) if _scales(tau) else gi)
        return
    gp = (g * p).sum(-1, keepdim=True)
    if out.dtype == cdt:
        gi = torch.sub(g, gp, out=out).mul_(p)
        if _scales(tau):
            gi.div_(tau)
    else:
        gi = torch.sub(g, gp).mul_(p)
        out.copy_(gi.div_(tau) if _scales(tau) else gi)


def _apply_on_dim(
    function: Any,
    logits: Tensor,
    dim: int,
    *args: Any,
    noise: Optional[Callable[[Tensor, Optional[torch.Generator]], Tensor]] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """``function.apply(logits, *args)`` (an autograd Function working on the last dim) on
    any ``dim``: check ``logits`` and ``dim``, move the categories last, move the result back.

    ``noise(logits, generator)``, when given, is drawn in the caller's layout (so a draw
    does not depend on ``dim``, as in ``F.gumbel_softmax``), moved the same way and passed
    as the first argument after the logits."""
    check_logits(logits)
    dim = check_dim(logits, dim)
    if noise is not None:
        args = (noise(logits, generator).movedim(dim, -1),) + args
    return function.apply(logits.movedim(dim, -1), *args).movedim(-1, dim)


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

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> logits = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
        >>> LF.decoupled_st(logits, tau_f=0.0, tau_b=0.5).tolist()  # tau_f = 0: argmax
        [[1.0, 0.0, 0.0]]
        >>> z = LF.decoupled_st(logits, 1.0, 0.5, generator=torch.Generator().manual_seed(0))
        >>> z.sum().item(), z.shape
        (1.0, torch.Size([1, 3]))
    """
    tau_f = check_tau(tau_f, "tau_f", allow_zero=True)
    tau_b = check_tau(tau_b, "tau_b")
    return _apply_on_dim(_DecoupledST, logits, dim, tau_f, _distinct(tau_f, tau_b), generator)


def softmax_st(
    logits: Tensor, tau: float = 1.0, dim: int = -1, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Softmax straight-through: :func:`decoupled_st` with ``tau_f = tau_b = tau``.

    Args:
        logits: ``(*, k, *)``, categories on ``dim``.
        tau: the temperature of the sample and of the backward pass, ``> 0``.
        dim: the category dimension.
        generator: optional random generator (one uniform per row).

    Returns:
        The sample ``z ~ Categorical(softmax(l / tau))``, an exact one-hot shaped like
        ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> z = LF.softmax_st(torch.randn(5, 4), tau=0.5, generator=torch.Generator().manual_seed(0))
        >>> z.sum(-1)
        tensor([1., 1., 1., 1., 1.])
    """
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
        dim: the category dimension.

    Returns:
        One-hot tensor shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.identity_st(torch.tensor([[0.1, 2.0, -1.0]]))
        tensor([[0., 1., 0.]])
    """
    return _apply_on_dim(_IdentityST, logits, dim)


class _GumbelST(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, gumbels: Tensor, tau: float):  # type: ignore[override]
        y = _softmax((logits.to(gumbels.dtype) + gumbels) / tau)
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
        tau: temperature of the relaxation the backward pass differentiates, ``> 0``.
        dim: the category dimension.
        generator: optional random generator for the Gumbel noise.

    Returns:
        One-hot tensor shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> z = LF.gumbel_softmax_st(torch.randn(2, 6), 0.5, generator=torch.Generator().manual_seed(0))
        >>> z.sum(-1)
        tensor([1., 1.])
    """
    tau = check_tau(tau, "tau")
    return _apply_on_dim(_GumbelST, logits, dim, tau, noise=_gumbel, generator=generator)


class _GumbelSoftmax(torch.autograd.Function):
    """``softmax((l + g) / tau)`` on ``(*, k)`` logits with the softmax's own backward (what
    autograd computes, without ATen's slow small-k CPU kernels); refuses a second derivative
    (its backward reads the saved sample as a constant)."""

    @staticmethod
    def forward(ctx, logits: Tensor, gumbels: Tensor, tau: float):  # type: ignore[override]
        y = _softmax((logits.to(gumbels.dtype) + gumbels) / tau)
        ctx.save_for_backward(y)
        ctx.tau = tau
        return y.to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return _softmax_backward(y, grad.to(y.dtype), ctx.tau).to(grad.dtype), None, None


def gumbel_softmax(
    logits: Tensor, tau: float = 1.0, dim: int = -1, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Relaxed Gumbel-Softmax ``softmax((l + g) / tau)`` (not discrete); backward the
    softmax's Jacobian, as autograd computes it (no second derivative).

    Args:
        logits: ``(*, k, *)``, categories on ``dim``.
        tau: temperature of the relaxation, ``> 0``.
        dim: the category dimension.
        generator: optional random generator for the Gumbel noise.

    Returns:
        Probability vectors shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> y = LF.gumbel_softmax(torch.randn(2, 6), 0.5, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(y.sum(-1), torch.ones(2))
        True
    """
    tau = check_tau(tau, "tau")
    return _apply_on_dim(_GumbelSoftmax, logits, dim, tau, noise=_gumbel, generator=generator)


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row of ``v`` onto the probability simplex.

    Args:
        v: ``(*, k)`` points, projected along the last dim.

    Returns:
        ``(*, k)``: the nearest point of ``{p : p >= 0, sum p = 1}`` to each row.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.project_simplex(torch.tensor([[2.0, 0.0], [0.5, 0.5]]))
        tensor([[1.0000, 0.0000],
                [0.5000, 0.5000]])
    """
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
        step_size: the projected step ``eta > 0`` (the registry passes its temperature).
        dim: the category dimension.

    Returns:
        One-hot tensor shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.spigot(torch.tensor([[0.0, 1.0, 0.5]]), step_size=0.5)
        tensor([[0., 1., 0.]])
    """
    step_size = check_tau(step_size, "step_size")
    return _apply_on_dim(_Spigot, logits, dim, step_size)


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
        p = _softmax(x)
        # second-order (Heun) term at the midpoint between the sample and p(tau)
        d = 0.5 * (_softmax(x / ctx.tau) + z)
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
        tau: temperature of the backward pass, ``> 0``.
        dim: the category dimension.
        generator: optional random generator for the sample.

    Returns:
        One-hot tensor shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> z = LF.reinmax(torch.randn(3, 5), 1.5, generator=torch.Generator().manual_seed(0))
        >>> z.sum(-1)
        tensor([1., 1., 1.])
    """
    tau = check_tau(tau, "tau")
    return _apply_on_dim(_ReinMax, logits, dim, tau, generator)


def _gumbel_rao_grad(x: Tensor, idx: Tensor, grad: Tensor, tau: float, num_samples: int, generator) -> Tensor:
    """The Gumbel-Rao gradient: ``J^T grad`` of ``softmax((x + g) / tau)`` averaged over
    ``num_samples`` Gumbel draws ``g`` conditioned on ``argmax(x + g) = idx``.

    x: ``(*, k)`` logits (compute dtype); idx: ``(*, 1)`` the sampled categories; grad: ``(*, k)``.
    Returns ``(*, k)``.

    With ``E_i ~ Exp(1)`` the conditional draw is ``x_top + g_top = log Z - log E_top`` and
    ``x_i + g_i = -log(E_i exp(-x_i) + E_top / Z)`` (Paulus et al., 2021, appendix), so the
    perturbed logit of category i lies ``log(1 + E_i / (E_top p_i))`` below the top one, with
    ``p = softmax(x)``. The relaxed sample is therefore ``(1 + E_i / (E_top p_i))^(-1 / tau)``
    normalised, with 1 at the top: no exponential of a logit, nothing that overflows, and two
    transcendental passes over the ``(num_samples, *, k)`` draws (one at ``tau = 1``). ``E_i``
    enters only through ``E_i / E_top = log U_i / log U_top`` with ``U`` uniform.
    """
    w = (x - x.amax(-1, keepdim=True)).exp_()
    inv_p = torch.div(w.sum(-1, keepdim=True), w)  # 1 / softmax(x); ATen's softmax is slow at small k
    log_u = _uniform((num_samples,) + x.shape, x, generator).log_()  # -E, strictly negative
    top = idx.expand((num_samples,) + idx.shape)
    log_u_top = log_u.gather(-1, top)
    y = log_u.mul_(inv_p).div_(log_u_top).add_(1.0)  # 1 + E_i / (E_top p_i)
    y = y.log_().mul_(-1.0 / tau).exp_() if _scales(tau) else y.reciprocal_()
    y = y.scatter_(-1, top, 1.0)
    y = y.div_(y.sum(-1, keepdim=True))
    # _softmax_backward's J^T grad, in place because y is ours to overwrite: one (S, *, k) temporary
    # instead of three, and 1 / tau after the mean (calling the helper: 1.2x slower at 131072 x 8, K = 4)
    yg = y * grad
    return yg.sub_(y.mul_(yg.sum(-1, keepdim=True))).mean(0).div_(tau)


class _GumbelRao(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, tau: float, num_samples: int, generator):  # type: ignore[override]
        x = logits.to(_compute_dtype(logits.dtype))
        idx = _inverse_cdf_index(x, generator)  # an exact sample of softmax(x), as ST-GS's argmax(x + g)
        ctx.save_for_backward(logits, idx.unsqueeze(-1))
        ctx.tau, ctx.num_samples, ctx.generator = tau, num_samples, generator
        return _one_hot_like(idx, x.shape[-1], logits.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        logits, idx = ctx.saved_tensors
        x = logits.to(_compute_dtype(logits.dtype))
        g = _gumbel_rao_grad(x, idx, grad.to(x.dtype), ctx.tau, ctx.num_samples, ctx.generator)
        return g.to(logits.dtype), None, None, None


def gumbel_rao(
    logits: Tensor,
    tau: float = 1.0,
    num_samples: int = 10,
    dim: int = -1,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Gumbel-Rao (Paulus et al., 2021): forward an exact one-hot sample of ``softmax(logits)``
    (the law of ST Gumbel-Softmax's ``argmax(l + g)``, drawn with one uniform per row); backward
    averages the ST-GS Jacobian over ``num_samples`` Gumbel draws conditioned on the sample.

    Args:
        logits: ``(*, k, *)``, categories on ``dim``.
        tau: temperature of the relaxation the backward pass differentiates, ``> 0``.
        num_samples: conditional Gumbel samples ``K >= 1`` in the backward pass.
        dim: the category dimension.
        generator: optional random generator for the sample and the conditional draws.

    Returns:
        One-hot tensor shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> z = LF.gumbel_rao(torch.randn(3, 5), 1.0, num_samples=4, generator=torch.Generator().manual_seed(0))
        >>> z.sum(-1)
        tensor([1., 1., 1.])
    """
    tau = check_tau(tau, "tau")
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer, got {num_samples}")
    return _apply_on_dim(_GumbelRao, logits, dim, tau, int(num_samples), generator)


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
            if _scales(tau_b):
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
        tau_f: forward temperature, ``>= 0``.
        tau_b: backward temperature, ``> 0``.
        generator: optional random generator for the sample.

    Returns:
        Exact ``{0, 1}`` tensor shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.bernoulli_decoupled_st(torch.tensor([-1.0, 0.5, 3.0]), tau_f=0.0, tau_b=0.7)
        tensor([0., 1., 1.])
    """
    check_logits(logits)
    tau_f = check_tau(tau_f, "tau_f", allow_zero=True)
    tau_b = check_tau(tau_b, "tau_b")
    return _BernoulliDecoupledST.apply(logits, tau_f, _distinct(tau_f, tau_b), generator)


def bernoulli_softmax_st(
    logits: Tensor, tau: float = 1.0, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Binary softmax ST: :func:`bernoulli_decoupled_st` with ``tau_f = tau_b = tau``.

    Args:
        logits: ``(*)``, one logit per unit.
        tau: the temperature of the sample and of the backward pass, ``> 0``.
        generator: optional random generator for the sample.

    Returns:
        The sample ``z ~ Bernoulli(sigmoid(l / tau))``, exact ``{0, 1}`` values shaped
        like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> z = LF.bernoulli_softmax_st(torch.zeros(2, 3), 0.5, generator=torch.Generator().manual_seed(0))
        >>> z.shape, bool(((z == 0) | (z == 1)).all())
        (torch.Size([2, 3]), True)
    """
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
    """Binary identity ST: forward ``[l >= 0]``, backward identity.

    Args:
        logits: ``(*)``, one logit per unit.

    Returns:
        Exact ``{0, 1}`` tensor shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.bernoulli_identity_st(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([0., 1., 1.])
    """
    check_logits(logits)
    return _BernoulliIdentityST.apply(logits)


def _logistic(like: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """Standard logistic noise ``log(u / (1 - u))`` shaped like ``like`` (compute dtype): one
    logarithm (``log1p`` has no vectorised CPU kernel)."""
    u = _uniform(like.shape, like, generator)
    return u.div_(1.0 - u).log_()


class _BernoulliGumbelSoftmaxST(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, tau: float, generator):  # type: ignore[override]
        x = logits.to(_compute_dtype(logits.dtype))
        y = _logistic(x, generator).add_(x)
        z = (y >= 0).to(logits.dtype)
        ctx.save_for_backward((y.div_(tau) if _scales(tau) else y).sigmoid_())
        ctx.tau = tau
        return z

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (s,) = ctx.saved_tensors
        return (grad.to(s.dtype) * s * (1.0 - s) / ctx.tau).to(grad.dtype), None, None


def bernoulli_gumbel_softmax_st(
    logits: Tensor, tau: float = 1.0, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Binary ST Gumbel-Softmax with logistic noise ``n``: forward ``[l + n >= 0]``,
    backward through ``sigmoid((l + n) / tau)``.

    Args:
        logits: ``(*)``, one logit per unit.
        tau: temperature of the relaxation the backward pass differentiates, ``> 0``.
        generator: optional random generator for the noise.

    Returns:
        ``[l + n >= 0]``: exact ``{0, 1}`` values shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.bernoulli_gumbel_softmax_st(torch.tensor([-40.0, 40.0]), 0.5)
        tensor([0., 1.])
    """
    check_logits(logits)
    tau = check_tau(tau, "tau")
    return _BernoulliGumbelSoftmaxST.apply(logits, tau, generator)


def bernoulli_gumbel_softmax(
    logits: Tensor, tau: float = 1.0, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Relaxed binary Gumbel-Softmax (binary Concrete): ``sigmoid((l + n) / tau)`` with
    logistic noise ``n`` (not discrete), plain autograd.

    Args:
        logits: ``(*)``, one logit per unit.
        tau: temperature of the relaxation, ``> 0``.
        generator: optional random generator for the noise.

    Returns:
        Values in ``(0, 1)`` shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> y = LF.bernoulli_gumbel_softmax(torch.zeros(3), 0.5, generator=torch.Generator().manual_seed(0))
        >>> bool(((y > 0) & (y < 1)).all())
        True
    """
    check_logits(logits)
    tau = check_tau(tau, "tau")
    x = logits.to(_compute_dtype(logits.dtype))
    return torch.sigmoid((x + _logistic(x, generator)) / tau).to(logits.dtype)


def _on_binary_pair(categorical: Callable[..., Tensor], logits: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """Binary form of a categorical estimator: run it on logits ``[l, 0]`` (categories
    last), keep category 0."""
    check_logits(logits)
    stacked = torch.stack([logits, torch.zeros_like(logits)], dim=-1)
    return categorical(stacked, *args, dim=-1, **kwargs)[..., 0]


def bernoulli_spigot(logits: Tensor, step_size: float = 1.0) -> Tensor:
    """Binary SPIGOT: :func:`spigot` on the logits ``[l, 0]`` of each unit.

    Args:
        logits: ``(*)``, one logit per unit.
        step_size: the projected step ``eta > 0``.

    Returns:
        Exact ``{0, 1}`` tensor ``[l >= 0]`` shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.bernoulli_spigot(torch.tensor([-1.0, 2.0]), 0.5)
        tensor([0., 1.])
    """
    return _on_binary_pair(spigot, logits, step_size)


def bernoulli_reinmax(logits: Tensor, tau: float = 1.0, generator: Optional[torch.Generator] = None) -> Tensor:
    """Binary ReinMax: :func:`reinmax` on the logits ``[l, 0]`` of each unit.

    Args:
        logits: ``(*)``, one logit per unit.
        tau: temperature of the backward pass, ``> 0``.
        generator: optional random generator for the sample.

    Returns:
        Exact ``{0, 1}`` tensor shaped like ``logits``, ``z ~ Bernoulli(sigmoid(l))``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.bernoulli_reinmax(torch.tensor([-40.0, 40.0]), 1.5)
        tensor([0., 1.])
    """
    return _on_binary_pair(reinmax, logits, tau, generator=generator)


def bernoulli_gumbel_rao(
    logits: Tensor, tau: float = 1.0, num_samples: int = 10, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Binary Gumbel-Rao: :func:`gumbel_rao` on the logits ``[l, 0]`` of each unit.

    Args:
        logits: ``(*)``, one logit per unit.
        tau: temperature of the relaxation the backward pass differentiates, ``> 0``.
        num_samples: conditional Gumbel samples ``K >= 1`` in the backward pass.
        generator: optional random generator for the sample and the conditional draws.

    Returns:
        Exact ``{0, 1}`` tensor shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.bernoulli_gumbel_rao(torch.tensor([-40.0, 40.0]), 1.0, num_samples=2)
        tensor([0., 1.])
    """
    return _on_binary_pair(gumbel_rao, logits, tau, num_samples, generator=generator)


class _SignST(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor):  # type: ignore[override]
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad


def sign_st(logits: Tensor) -> Tensor:
    """Sign straight-through for binary units: forward ``sign(l)`` (``sign(0) = 0``),
    identity backward.  Binary only; its values ``{-1, 0, +1}`` are not a Bernoulli
    variable, hence no ``bernoulli_`` prefix (see the naming rule above).

    Args:
        logits: ``(*)``, one pre-activation per unit.

    Returns:
        ``{-1, 0, +1}`` tensor shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.sign_st(torch.tensor([-2.0, 0.0, 0.5]))
        tensor([-1.,  0.,  1.])
    """
    check_logits(logits)
    return _SignST.apply(logits)


# --------------------------------------------------------------------------- #
# score-function estimators
# --------------------------------------------------------------------------- #


def reinforce(logits: Tensor, dim: int = -1, generator: Optional[torch.Generator] = None) -> Tensor:
    """REINFORCE's forward: an exact one-hot sample ``z ~ Categorical(softmax(l))`` with no
    pathwise gradient.  The gradient comes from the surrogate
    ``reinforce_loo_surrogate(categorical_log_prob(logits, z, dim), losses)``.

    Args:
        logits: ``(*, k, *)``, categories on ``dim``.
        dim: the category dimension.
        generator: optional random generator for the sample (one uniform per row).

    Returns:
        One-hot tensor shaped like ``logits``, without gradient.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> logits = torch.randn(2, 3, 4, requires_grad=True)  # S = 2 samples of 3 variables
        >>> z = LF.reinforce(logits, generator=torch.Generator().manual_seed(0))
        >>> z.requires_grad, z.sum(-1).tolist()
        (False, [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
        >>> log_probs = LF.categorical_log_prob(logits, z).sum(-1)  # (S,)
        >>> LF.reinforce_loo_surrogate(log_probs, torch.tensor([1.0, 3.0])).requires_grad
        True
    """
    check_logits(logits)
    dim = check_dim(logits, dim)
    x = logits.detach().movedim(dim, -1)
    idx = _inverse_cdf_index(x.to(_compute_dtype(x.dtype)), generator)
    return _one_hot_like(idx, x.shape[-1], logits.dtype).movedim(-1, dim)


def bernoulli_reinforce(logits: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Binary REINFORCE's forward: a sample ``z ~ Bernoulli(sigmoid(l))`` in ``{0, 1}`` with
    no pathwise gradient; pair it with :func:`bernoulli_log_prob` and
    :func:`reinforce_loo_surrogate`.

    Args:
        logits: ``(*)``, one logit per unit.
        generator: optional random generator for the sample.

    Returns:
        ``{0, 1}`` tensor shaped like ``logits``, without gradient.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.bernoulli_reinforce(torch.tensor([-40.0, 40.0], requires_grad=True))
        tensor([0., 1.])
    """
    check_logits(logits)
    x = logits.detach().to(_compute_dtype(logits.dtype))
    return (_uniform(x.shape, x, generator) <= torch.sigmoid(x)).to(logits.dtype)


def _log_softmax_parts(x: Tensor) -> Tuple[Tensor, Tensor]:
    """``(softmax(x), log_softmax(x))`` over the last dim from one ``exp`` pass: three plain
    ops, about 2x faster than ATen's ``log_softmax`` for the small category counts of
    discrete latents (ATen's kernel vectorises across a row, and rows of 2-10 are short).
    Differentiable: the shift by the row maximum carries no gradient of its own."""
    y = x - x.detach().amax(-1, keepdim=True)
    e = y.exp()
    s = e.sum(-1, keepdim=True)
    return e / s, y - s.log()


def categorical_log_prob(logits: Tensor, z: Tensor, dim: int = -1) -> Tensor:
    """``log softmax(l)[z]`` for one-hot ``z``; the category ``dim`` is reduced away.

    Computed in float32 (float64 for float64 logits), the log-softmax from one ``exp`` pass
    (ATen's ``log_softmax`` is several times slower over the short rows of discrete latents
    on the CPU). ``z`` may carry leading sample dims that
    ``logits`` lacks: the normaliser is then computed once per row of ``logits``, not once
    per sample (the importance-weighted bound's ``m`` samples of one encoder output).

    Args:
        logits: ``(*, k, *)``, categories on ``dim``.
        z: one-hot tensor shaped like ``logits`` or broadcastable with it (e.g. ``(S, *, k)``).
        dim: the category dimension, counted from the end when negative.

    Returns:
        The broadcast shape of ``logits`` and ``z`` without ``dim``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.categorical_log_prob(torch.zeros(1, 4), torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
        tensor([-1.3863])
    """
    check_logits(logits)
    dim = check_dim(logits, dim) - logits.dim()  # from the end: z may have more leading dims
    x = logits.to(_compute_dtype(logits.dtype))
    log_p = _log_softmax_parts(x.movedim(dim, -1))[1].movedim(-1, dim)  # once per row of `logits`
    return (log_p * z.to(x.dtype)).sum(dim)


def bernoulli_log_prob(logits: Tensor, z: Tensor) -> Tensor:
    """Elementwise ``log Bernoulli(z; sigmoid(l))`` for ``z`` in ``{0, 1}`` (float32, or
    float64 for float64 logits).

    Args:
        logits: ``(*)``, one logit per unit.
        z: ``{0, 1}`` values shaped like ``logits``.

    Returns:
        Log-probabilities shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.bernoulli_log_prob(torch.zeros(2), torch.tensor([0.0, 1.0]))
        tensor([-0.6931, -0.6931])
    """
    check_logits(logits)
    x = logits.to(_compute_dtype(logits.dtype))
    z = z.to(x.dtype)
    return z * F.logsigmoid(x) + (1 - z) * F.logsigmoid(-x)


class _CategoricalKL(torch.autograd.Function):
    """``KL(Cat(softmax(x)) || Cat(softmax(prior)))`` over the last dim, with the analytic
    gradients ``dKL/dx = q (log q - log p - KL)`` and ``dKL/dprior = p - q``: one softmax
    pass forward, one fused elementwise pass backward (3x faster than autograd through
    ``log_softmax`` at ``(100, 30, 10)``: ``benchmarks/vae_step.py``). ``prior``
    (``(..., k)``) broadcasts against ``x``: normalised once, its gradient summed back."""

    @staticmethod
    def forward(ctx, x: Tensor, prior: Optional[Tensor]):  # type: ignore[override]
        q, log_q = _log_softmax_parts(x)
        if prior is None:
            p, t = None, log_q + math.log(x.shape[-1])  # log q - log(1/k)
        else:
            p, log_p = _log_softmax_parts(prior)
            t = log_q - log_p
        kl = (q * t).sum(-1)
        ctx.save_for_backward(q, t, kl, p)
        return kl

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        q, t, kl, p = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        gx = q * (t - kl.unsqueeze(-1)) * g if ctx.needs_input_grad[0] else None
        gp = None
        if p is not None and ctx.needs_input_grad[1]:
            gp = ((p - q) * g).sum_to_size(p.shape)
        return gx, gp


def _prior_like(prior_logits: Tensor, x: Tensor) -> Tensor:
    """``prior_logits`` in ``x``'s dtype, checked to broadcast to ``x``'s shape (not expanded:
    the KLs compute the prior's terms once per prior entry)."""
    try:
        ok = torch.broadcast_shapes(prior_logits.shape, x.shape) == x.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"`prior_logits` of shape {tuple(prior_logits.shape)} must broadcast to the logits' {tuple(x.shape)}"
        )
    return prior_logits.to(x.dtype)


class _BernoulliKL(torch.autograd.Function):
    """Elementwise ``KL(Bernoulli(sigmoid(x)) || Bernoulli(sigmoid(prior)))`` with the analytic
    gradients ``dKL/dx = q (1 - q) (x - prior)`` and ``dKL/dprior = p - q``: 1.7x faster
    forward+backward than autograd through the four ``logsigmoid`` terms at ``(100, 200)``
    (``benchmarks/vae_step.py``). The forward keeps the ``q log q + (1 - q) log(1 - q)`` form:
    rewriting ``log(1 - q)`` as ``log q - x`` cancels catastrophically at large ``|x|``."""

    @staticmethod
    def forward(ctx, x: Tensor, prior: Optional[Tensor]):  # type: ignore[override]
        q = torch.sigmoid(x)
        log_q1, log_q0 = F.logsigmoid(x), F.logsigmoid(-x)
        if prior is None:
            kl = torch.lerp(log_q0, log_q1, q).add_(math.log(2.0))
        else:  # ``prior`` broadcasts against ``x``: its log-probabilities once per prior unit
            kl = torch.lerp(log_q0 - F.logsigmoid(-prior), log_q1 - F.logsigmoid(prior), q)
        ctx.save_for_backward(x, q, prior)
        return kl

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, q, prior = ctx.saved_tensors
        gx = grad * q * (1 - q) * (x if prior is None else x - prior) if ctx.needs_input_grad[0] else None
        gp = None
        if prior is not None and ctx.needs_input_grad[1]:
            gp = (grad * (torch.sigmoid(prior) - q)).sum_to_size(prior.shape)
        return gx, gp


def categorical_kl(logits: Tensor, prior_logits: Optional[Tensor] = None, dim: int = -1) -> Tensor:
    """``KL(Cat(softmax(l)) || Cat(softmax(prior)))``, analytic; the category ``dim`` is
    reduced away. The prior is uniform (``log p = -log k``) when ``prior_logits`` is
    ``None``. Computed in float32 (float64 for float64 logits).

    This is the KL term of a categorical VAE's ELBO: the KL of the categorical
    distributions ``q(z|x)`` and ``p(z)`` themselves, whatever estimator draws the sample
    fed to the decoder (the Gumbel-Softmax paper's convention for relaxed samples too;
    ``docs/design.md``, "Estimator maths").

    Args:
        logits: ``(*, k, *)`` logits of ``q``, categories on ``dim``.
        prior_logits: logits of the prior, broadcastable to ``logits`` (e.g. ``(L, k)``
            for ``(B, L, k)`` logits); ``None`` for the uniform prior.
        dim: the category dimension.

    Returns:
        ``logits``'s shape without ``dim``: one KL (nats) per latent.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.categorical_kl(torch.zeros(2, 4))  # q uniform: KL 0
        tensor([0., 0.])
        >>> LF.categorical_kl(torch.tensor([[0.0, 50.0]]))  # q one-hot over 2: log 2
        tensor([0.6931])
    """
    check_logits(logits)
    dim = check_dim(logits, dim)
    x = logits.to(_compute_dtype(logits.dtype))
    prior = None
    if prior_logits is not None:  # broadcastable to ``logits``: leading 1s, categories last, k of them
        prior = _prior_like(prior_logits, x)
        prior = prior.reshape((1,) * (x.dim() - prior.dim()) + tuple(prior.shape)).movedim(dim, -1)
        prior = prior.expand(*prior.shape[:-1], x.shape[dim])
    return _CategoricalKL.apply(x.movedim(dim, -1), prior)


def bernoulli_kl(logits: Tensor, prior_logits: Optional[Tensor] = None) -> Tensor:
    """Elementwise ``KL(Bernoulli(sigmoid(l)) || Bernoulli(sigmoid(prior)))``, analytic; the
    prior is ``Bernoulli(1/2)`` when ``prior_logits`` is ``None``. Computed in float32
    (float64 for float64 logits). The binary (``k = 2``) case of :func:`categorical_kl`.

    Args:
        logits: ``(*)``, one logit per unit.
        prior_logits: prior logits broadcastable to ``logits``; ``None``: ``p = 1/2``.

    Returns:
        KLs (nats) shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> LF.bernoulli_kl(torch.tensor([0.0, 50.0]))
        tensor([0.0000, 0.6931])
    """
    check_logits(logits)
    x = logits.to(_compute_dtype(logits.dtype))
    return _BernoulliKL.apply(x, None if prior_logits is None else _prior_like(prior_logits, x))


def reinforce_loo_surrogate(log_probs: Tensor, losses: Tensor) -> Tensor:
    """Surrogate loss for REINFORCE with a leave-one-out baseline.

    Draw ``S >= 2`` samples per example (:func:`reinforce`, :func:`bernoulli_reinforce`).
    The gradient of the returned scalar with respect to the logits is the mean over
    examples of ``1/S sum_s (L_s - mean_{j != s} L_j) grad log p(z_s)``, an unbiased
    estimate of ``grad E[L]``.  Its value is zero in expectation (add it to the task loss).

    Args:
        log_probs: ``(S, *)`` log-probabilities of the drawn samples (with gradient).
        losses: ``(S, *)`` per-sample losses (treated as constants).

    Returns:
        A scalar tensor.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> log_probs = torch.log(torch.tensor([0.5, 0.5], requires_grad=True))
        >>> LF.reinforce_loo_surrogate(log_probs, torch.tensor([1.0, 3.0])).shape
        torch.Size([])
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


def bernoulli_disarm(logits: Tensor, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """DisARM's forward: the antithetic pair ``b = [u < sigmoid(l)]``,
    ``b~ = [1 - u < sigmoid(l)]`` (no pathwise gradient); pair it with
    :func:`disarm_surrogate`.  Binary only.

    Args:
        logits: ``(*)``, one logit per unit.
        generator: optional random generator for the shared uniforms ``u``.

    Returns:
        Two ``{0, 1}`` tensors shaped like ``logits``.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> b1, b2 = LF.bernoulli_disarm(torch.tensor([-40.0, 40.0]))
        >>> b1, b2
        (tensor([0., 1.]), tensor([0., 1.]))
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
        b1: ``(B, *)`` first sample of the antithetic pair from :func:`bernoulli_disarm`.
        b2: ``(B, *)`` second sample of the pair.
        loss1: ``(B,)`` losses at ``b1`` (treated as constants).
        loss2: ``(B,)`` losses at ``b2`` (treated as constants).

    Returns:
        A scalar tensor.

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> logits = torch.zeros(2, 3, requires_grad=True)
        >>> b1, b2 = LF.bernoulli_disarm(logits, generator=torch.Generator().manual_seed(0))
        >>> LF.disarm_surrogate(logits, b1, b2, b1.sum(-1), b2.sum(-1)).shape
        torch.Size([])
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
    """A registered estimator: its public functions and what callers need to know about them.

    Callers (modules, models, callbacks) read these flags and call the estimator through
    :meth:`__call__`, the one place where the temperatures ``(tau_f, tau_b)`` of a
    bottleneck become each function's own arguments; they never compare names.

    Args:
        name: registry name (used in YAML: ``--model.estimator=NAME``).
        categorical: ``fn(logits, *temperatures, dim=..., [generator=...], **kwargs)`` or
            ``None``; by the naming rule, the function ``NAME`` of this module.
        binary: ``fn(logits, *temperatures, [generator=...], **kwargs)`` for one logit per
            unit, or ``None``; by the naming rule, ``bernoulli_NAME``.
        num_temperatures: how many temperatures the functions take after the logits:
            ``2`` (``tau_f``, ``tau_b``: decoupled), ``1`` (one ``tau``; a bottleneck keeps
            ``tau_f == tau_b``) or ``0`` (none; the temperatures are ignored).
        stochastic: the forward draws random numbers: the functions take ``generator``.
        score_function: samples carry no pathwise gradient; the model adds a surrogate
            loss (the functions return samples for :func:`reinforce_loo_surrogate`).
        antithetic: a score-function estimator whose function returns an antithetic pair
            ``(b, b~)`` for :func:`disarm_surrogate` (binary only).
        hard: the forward output is exactly discrete.
        signed: the binary output takes values in ``{-1, 0, +1}`` instead of ``{0, 1}``.
        tempered_sample: the forward output is an exact sample of ``Cat(softmax(l / tau_f))``
            (``Bernoulli(sigmoid(l / tau_f))``): ``tau_f`` sharpens the sampled distribution
            itself, not a relaxation of it (what a model that folds ``tau_f`` into its
            distribution relies on, e.g. ``CategoricalVAE(q_at_tau_f=True)``).

    Examples:
        >>> import torch
        >>> from lightning_discrete import functional as LF
        >>> est = LF.get_estimator("softmax_st")
        >>> est.single_temperature, est.has_binary, est.binary is LF.bernoulli_softmax_st
        (True, True, True)
        >>> est(torch.tensor([[-30.0, 30.0]]), 0.5, 0.5)  # calls LF.softmax_st(logits, 0.5, dim=-1, generator=None)
        tensor([[0., 1.]])
    """

    name: str
    categorical: Optional[Callable[..., Any]] = None
    binary: Optional[Callable[..., Any]] = None
    num_temperatures: int = 1
    stochastic: bool = True
    score_function: bool = False
    antithetic: bool = False
    hard: bool = True
    signed: bool = False
    tempered_sample: bool = False

    @property
    def decoupled_temperatures(self) -> bool:
        """The functions take ``tau_f`` and ``tau_b`` separately."""
        return self.num_temperatures == 2

    @property
    def single_temperature(self) -> bool:
        """The functions take one temperature: a bottleneck keeps ``tau_f == tau_b``."""
        return self.num_temperatures == 1

    @property
    def has_categorical(self) -> bool:
        """A categorical form exists (usable by categorical bottlenecks, logic gates)."""
        return self.categorical is not None

    @property
    def has_binary(self) -> bool:
        """A binary form exists (usable by binary bottlenecks)."""
        return self.binary is not None

    def __call__(
        self,
        logits: Tensor,
        tau_f: Union[float, Tensor] = 1.0,
        tau_b: Union[float, Tensor] = 1.0,
        *,
        binary: bool = False,
        dim: int = -1,
        generator: Optional[torch.Generator] = None,
        **kwargs: Any,
    ) -> Any:
        """Run the categorical (or, with ``binary``, the binary) function on ``logits``.

        Args:
            logits: ``(*, k, *)`` categorical logits (categories on ``dim``), or ``(*)``
                with ``binary``.
            tau_f: forward temperature; passed as the first temperature of functions that
                take one or two.
            tau_b: backward temperature; passed as the second temperature of functions
                that take two, ignored otherwise.
            binary: use the binary form.
            dim: the category dimension (categorical form only).
            generator: random generator, passed to stochastic functions only.
            **kwargs: extra keyword arguments of the function (``num_samples`` of
                ``gumbel_rao``).

        Returns:
            The function's output: ``z`` shaped like ``logits``, or the pair ``(b, b~)``
            when :attr:`antithetic`.
        """
        fn = self.binary if binary else self.categorical
        if fn is None:
            kind = "binary" if binary else "categorical"
            raise ValueError(f"estimator {self.name!r} has no {kind} form; choose another `estimator`")
        if not binary:
            kwargs["dim"] = dim
        if self.stochastic:
            kwargs["generator"] = generator
        return fn(logits, *(tau_f, tau_b)[: self.num_temperatures], **kwargs)

    def __reduce__(self):
        # pickle by registry name (ddp_spawn, checkpoints): a user's functions may be lambdas
        return (get_estimator, (self.name,))


ESTIMATORS: Dict[str, Estimator] = {}

# registry names before the naming rule (old checkpoints and configs name them)
_RENAMED = {
    "decoupled": "decoupled_st",
    "identity": "identity_st",
    "softmax": "softmax_st",
    "gumbel_st": "gumbel_softmax_st",
    "sign": "sign_st",
}


def register_estimator(estimator: Estimator, overwrite: bool = False) -> Estimator:
    """Add ``estimator`` to :data:`ESTIMATORS` under ``estimator.name``.

    Args:
        estimator: the estimator to add.
        overwrite: replace an estimator already registered under that name.

    Returns:
        ``estimator``.

    Examples:
        >>> from lightning_discrete import functional as LF
        >>> est = LF.Estimator("my_softmax_st", LF.softmax_st, LF.bernoulli_softmax_st)
        >>> LF.register_estimator(est) is LF.get_estimator("my_softmax_st")
        True
        >>> del LF.ESTIMATORS["my_softmax_st"]
    """
    if estimator.num_temperatures not in (0, 1, 2):
        raise ValueError(f"`num_temperatures` must be 0, 1 or 2, got {estimator.num_temperatures!r}")
    if estimator.categorical is None and estimator.binary is None:
        raise ValueError("an estimator needs a `categorical` or a `binary` function")
    if estimator.antithetic and (not estimator.score_function or estimator.categorical is not None):
        raise ValueError("an `antithetic` estimator is a binary-only score-function estimator")
    if estimator.name in ESTIMATORS and not overwrite:
        raise ValueError(f"estimator {estimator.name!r} is already registered (pass overwrite=True)")
    ESTIMATORS[estimator.name] = estimator
    return estimator


def get_estimator(name: str) -> Estimator:
    """Look up an estimator by registry name; ``ValueError`` lists the known names.

    The names used before the naming rule (``decoupled``, ``identity``, ``softmax``,
    ``gumbel_st``, ``sign``) still work and emit a ``FutureWarning`` naming the new one.

    Args:
        name: the registry name.

    Returns:
        The registered :class:`Estimator`.

    Examples:
        >>> from lightning_discrete import functional as LF
        >>> LF.get_estimator("gumbel_softmax_st").categorical is LF.gumbel_softmax_st
        True
    """
    try:
        return ESTIMATORS[name]
    except (KeyError, TypeError):
        pass
    new = _RENAMED.get(name) if isinstance(name, str) else None
    if new is not None and new in ESTIMATORS:
        warnings.warn(
            f"estimator name {name!r} is deprecated and will be removed; use {new!r}",
            FutureWarning,
            stacklevel=2,
        )
        return ESTIMATORS[new]
    raise ValueError(
        f"unknown `estimator` {name!r}; known estimators: {', '.join(sorted(ESTIMATORS))}"
    ) from None


for _estimator in (
    Estimator("decoupled_st", decoupled_st, bernoulli_decoupled_st, num_temperatures=2, tempered_sample=True),
    Estimator("identity_st", identity_st, bernoulli_identity_st, num_temperatures=0, stochastic=False),
    Estimator("softmax_st", softmax_st, bernoulli_softmax_st, tempered_sample=True),
    Estimator("gumbel_softmax_st", gumbel_softmax_st, bernoulli_gumbel_softmax_st),
    Estimator("gumbel_softmax", gumbel_softmax, bernoulli_gumbel_softmax, hard=False),
    Estimator("spigot", spigot, bernoulli_spigot, stochastic=False),
    Estimator("reinmax", reinmax, bernoulli_reinmax),
    Estimator("gumbel_rao", gumbel_rao, bernoulli_gumbel_rao),
    Estimator("reinforce", reinforce, bernoulli_reinforce, num_temperatures=0, score_function=True),
    Estimator("disarm", None, bernoulli_disarm, num_temperatures=0, score_function=True, antithetic=True),
    Estimator("sign_st", None, sign_st, num_temperatures=0, stochastic=False, signed=True),
):
    register_estimator(_estimator)
del _estimator
