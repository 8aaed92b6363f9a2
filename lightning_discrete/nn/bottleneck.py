"""Discrete bottleneck modules: temperatures as buffers around :mod:`lightning_discrete.functional`.

Protocols (see ``docs/design.md``, "Protocols between layers") every callback relies on:

* **Temperature** — every :class:`DiscreteBottleneck` has float buffers ``tau_f`` and
  ``tau_b`` (they move with ``.to()`` and live in ``state_dict``) and
  :meth:`DiscreteBottleneck.set_temperature`.  Single-temperature estimators keep
  ``tau_f == tau_b``.
* **Observation** — after :meth:`DiscreteBottleneck.record` is switched on, each
  training/validation forward stores ``last_indices`` (``(N, L)`` long: the chosen
  category of each of ``L`` latents for ``N`` rows) and, with ``grads=True``, the
  next backward stores ``last_logit_grad`` (shaped like the logits).  Nothing is
  recorded (and nothing costs) while recording is off.
* **Score function** — when the estimator is a score-function one (``reinforce``,
  ``disarm``), the forward keeps what :meth:`DiscreteBottleneck.surrogate_loss`
  needs; the model calls it with the per-row losses.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

from .. import functional as LF

__all__ = ["DiscreteBottleneck", "CategoricalBottleneck", "BinaryBottleneck"]

_EVAL_MODES = ("argmax", "sample", "soft")


class DiscreteBottleneck(nn.Module):
    """Base class of modules that make a discrete choice with a registered estimator.

    Args:
        estimator: name in :data:`lightning_discrete.functional.ESTIMATORS`.
        tau_f: forward temperature (``>= 0``; decoupled estimator only may use 0).
        tau_b: backward temperature (``> 0``); defaults to ``tau_f``.
        tau: single temperature; sets both ``tau_f`` and ``tau_b``.
        eval_mode: what the module outputs in eval mode: ``"argmax"`` (exact
            one-hot of the mode), ``"sample"`` (a sample at ``tau_f``) or
            ``"soft"`` (the probabilities ``softmax(l)``).
        num_samples: for score-function estimators, the number of samples per
            example stacked sample-major along dim 0 of the input (``reinforce``:
            ``>= 2``; ``disarm`` always uses antithetic pairs, so 2).
        estimator_kwargs: extra keyword arguments passed to the estimator
            (e.g. ``{"num_samples": 10}`` for ``gumbel_rao``).
        validate_args: check the logits for NaN/Inf in this module's calls (``True``),
            never (``False``), or as :func:`lightning_discrete.functional.set_validate_args`
            says (``None``, the default: off unless switched on). Ignored under
            ``torch.compile``.
    """

    binary: bool = False
    tau_f: Tensor
    tau_b: Tensor

    def __init__(
        self,
        estimator: str = "decoupled",
        tau_f: Optional[float] = None,
        tau_b: Optional[float] = None,
        tau: Optional[float] = None,
        eval_mode: str = "argmax",
        num_samples: int = 2,
        estimator_kwargs: Optional[Dict[str, Any]] = None,
        validate_args: Optional[bool] = None,
    ) -> None:
        super().__init__()
        if eval_mode not in _EVAL_MODES:
            raise ValueError(f"`eval_mode` must be one of {_EVAL_MODES}, got {eval_mode!r}")
        if int(num_samples) != num_samples or num_samples < 1:
            raise ValueError(f"`num_samples` must be a positive integer, got {num_samples}")
        self.eval_mode = eval_mode
        self.num_samples = int(num_samples)
        self.estimator_kwargs = dict(estimator_kwargs or {})
        self.validate_args = validate_args
        self.register_buffer("tau_f", torch.tensor(1.0))
        self.register_buffer("tau_b", torch.tensor(1.0))
        self._temperature_key: Optional[tuple] = None
        self._temperature_cache = (1.0, 1.0)
        self.estimator = estimator
        if tau is None and tau_f is None and tau_b is None:
            tau = 1.0
        if tau is None and tau_b is None:
            tau_b = tau_f if tau_f else 1.0
        self.set_temperature(tau_f=tau_f, tau_b=tau_b, tau=tau)
        self._record_requests: Dict[int, bool] = {}
        self._recording = False
        self._recording_grads = False
        self.last_indices: Optional[Tensor] = None
        self.last_logit_grad: Optional[Tensor] = None
        self._score_cache: Optional[tuple] = None

    # -- estimator ---------------------------------------------------------- #
    @property
    def estimator(self) -> str:
        """The registry name of the estimator in use (settable)."""
        return self._estimator.name

    @estimator.setter
    def estimator(self, name: str) -> None:
        est = LF.get_estimator(name)
        fn = est.binary if self.binary else est.categorical
        if fn is None:
            kind = "binary" if self.binary else "categorical"
            raise ValueError(f"estimator {name!r} has no {kind} form; choose another `estimator`")
        self._estimator = est

    @property
    def score_function(self) -> bool:
        """Whether the estimator needs :meth:`surrogate_loss` added to the loss."""
        return self._estimator.score_function

    # -- temperature protocol ----------------------------------------------- #
    def set_temperature(
        self, tau_f: Optional[float] = None, tau_b: Optional[float] = None, tau: Optional[float] = None
    ) -> None:
        """Set temperatures in place. ``tau`` sets both; a single-temperature estimator
        keeps ``tau_f == tau_b`` (setting either sets both)."""
        if tau is not None:
            if tau_f is not None or tau_b is not None:
                raise ValueError("pass either `tau` or `tau_f`/`tau_b`, not both")
            tau_f = tau_b = LF.check_tau(tau, "tau")
        if self._estimator.temperature == "single":
            given = tau_f if tau_f is not None else tau_b
            if tau_f is not None and tau_b is not None and float(tau_f) != float(tau_b):
                raise ValueError(
                    f"estimator {self.estimator!r} has one temperature; got tau_f={tau_f} != tau_b={tau_b}"
                )
            tau_f = tau_b = given
        cached_f, cached_b = self.temperatures()
        if tau_f is not None:
            allow_zero = self._estimator.temperature != "single"
            cached_f = LF.check_tau(tau_f, "tau_f", allow_zero=allow_zero)
            self.tau_f.fill_(cached_f)
        if tau_b is not None:
            cached_b = LF.check_tau(tau_b, "tau_b")
            self.tau_b.fill_(cached_b)
        # the new values are known here: remember them, so no forward reads the buffers
        # back from the device (no host-device sync when a schedule changes them every step)
        self._remember_temperatures(cached_f, cached_b)

    def temperatures(self) -> Tuple[float, float]:
        """``(tau_f, tau_b)`` as Python floats.

        The values are remembered when :meth:`set_temperature` writes them; the buffers
        are read back (a device sync on CUDA) only after something else changed them —
        in place (their version counter moves: ``load_state_dict``) or by ``.to()`` (new
        tensors) — never on every forward.
        """
        key = self._temperature_key
        if (
            key is None
            or key[0] is not self.tau_f
            or key[1] is not self.tau_b
            or key[2] != (self.tau_f._version, self.tau_b._version)
        ):
            self._remember_temperatures(float(self.tau_f), float(self.tau_b))
        return self._temperature_cache

    def _remember_temperatures(self, tau_f: float, tau_b: float) -> None:
        # the key holds the buffers themselves (compared by identity), not their ids
        self._temperature_cache = (tau_f, tau_b)
        self._temperature_key = (self.tau_f, self.tau_b, (self.tau_f._version, self.tau_b._version))

    # -- observation protocol ------------------------------------------------ #
    def record(self, enabled: bool = True, grads: bool = False, owner: Any = None) -> None:
        """Switch recording of chosen indices (and, with ``grads``, logit gradients) on or off.

        Several monitors may ask at once: each passes itself as ``owner`` and
        ``record(False, owner=self)`` withdraws only its own request. Recording is on
        while anyone asks, with gradients while anyone asks for gradients.
        """
        key = id(owner)
        if enabled:
            self._record_requests[key] = bool(grads) or self._record_requests.get(key, False)
        else:
            self._record_requests.pop(key, None)
        self._recording = bool(self._record_requests)
        self._recording_grads = any(self._record_requests.values())
        if not self._recording:
            self.last_indices = None
            self.last_logit_grad = None

    @contextlib.contextmanager
    def recording_paused(self) -> Iterator[None]:
        """Record nothing inside the block and keep what was recorded before it
        (for extra passes, e.g. a gradient probe, that must not overwrite it)."""
        saved = (self._recording, self._recording_grads, self.last_indices, self.last_logit_grad)
        self._recording = self._recording_grads = False
        try:
            yield
        finally:
            self._recording, self._recording_grads, self.last_indices, self.last_logit_grad = saved

    @property
    def num_categories(self) -> int:
        """Categories per latent (2 for binary units)."""
        raise NotImplementedError

    def _observe(self, logits: Tensor, indices: Tensor) -> None:
        if not self._recording:
            return
        self.last_indices = indices.detach().reshape(indices.shape[0], -1) if indices.dim() else indices
        if self._recording_grads and self.training and logits.requires_grad:
            def hook(g: Tensor) -> None:
                self.last_logit_grad = g.detach()

            logits.register_hook(hook)

    # -- score function ------------------------------------------------------ #
    def surrogate_loss(self, losses: Tensor) -> Tensor:
        """Surrogate loss of the score-function estimator for per-row ``losses``.

        Args:
            losses: ``(S * B,)`` losses of the rows of the last training forward
                (sample-major: rows ``s * B + b``).

        Returns:
            A scalar whose gradient w.r.t. this module's logits is the estimator.
        """
        if not self.score_function:
            raise RuntimeError(f"estimator {self.estimator!r} is not a score-function estimator")
        if self._score_cache is None:
            raise RuntimeError("surrogate_loss() needs a training forward pass first")
        kind, logits, extra = self._score_cache
        self._score_cache = None
        if kind == "disarm":
            b1, b2 = extra
            half = logits.shape[0]
            return LF.disarm_surrogate(logits, b1, b2, losses[:half], losses[half:])
        log_prob = extra
        s = self.num_samples
        return LF.reinforce_loo_surrogate(log_prob.reshape(s, -1), losses.reshape(s, -1))

    def _score_forward(self, logits: Tensor, dim: int) -> Tensor:
        if self.estimator == "disarm":
            if logits.shape[0] % 2:
                raise ValueError(
                    "DisARM needs antithetic pairs: the batch must be the same inputs stacked "
                    f"twice along dim 0 (even size), got {logits.shape[0]}"
                )
            half = logits.shape[0] // 2
            b1, b2 = LF.bernoulli_antithetic_pair(logits[:half])
            self._score_cache = ("disarm", logits[:half], (b1, b2))
            return torch.cat([b1, b2], 0)
        if logits.shape[0] % self.num_samples:
            raise ValueError(
                f"REINFORCE with num_samples={self.num_samples} needs the batch stacked "
                f"sample-major along dim 0; got {logits.shape[0]} rows"
            )
        if self.binary:
            z = LF.bernoulli_sample(logits)
            lp = LF.bernoulli_log_prob(logits, z)
        else:
            z = LF.categorical_sample(logits, dim)
            lp = LF.categorical_log_prob(logits, z, dim)
        self._score_cache = ("reinforce", logits, lp.reshape(lp.shape[0], -1).sum(-1))
        return z

    # -- forward helpers ------------------------------------------------------ #
    def _estimate(self, logits: Tensor, dim: int) -> Tensor:
        """Training-mode output of the estimator."""
        if self.score_function:
            return self._score_forward(logits, dim)
        fn = self._estimator.binary if self.binary else self._estimator.categorical
        if torch.compiler.is_compiling():
            # the buffers themselves: a temperature that changes between steps is a graph
            # input, not a constant (no recompilation, no data-dependent guard)
            tau_f, tau_b = self.tau_f, self.tau_b
        else:
            tau_f, tau_b = self.temperatures()  # Python floats, read without a device sync
        kwargs: Dict[str, Any] = dict(tau_f=tau_f, tau_b=tau_b)
        kwargs.update(self.estimator_kwargs)
        if not self.binary:
            kwargs["dim"] = dim
        return fn(logits, **kwargs)

    def forward(self, logits: Tensor) -> Tensor:
        """Output of the bottleneck for ``logits`` (shapes: see the subclasses)."""
        if self.validate_args is None or torch.compiler.is_compiling():
            return self._forward(logits)
        with LF.validate_args(self.validate_args):
            return self._forward(logits)

    def _forward(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (
            f"estimator={self.estimator!r}, tau_f={self.temperatures()[0]:g}, tau_b={self.temperatures()[1]:g}, "
            f"eval_mode={self.eval_mode!r}"
        )


class CategoricalBottleneck(DiscreteBottleneck):
    """Categorical latents with a registered estimator.

    Input logits ``(B, ..., k)`` (categories on ``dim``, default last); output the
    same shape: one-hot codes for hard estimators.  ``last_indices`` is
    ``(B, L)`` with ``L`` the product of the remaining dims.

    Args:
        num_categories: ``k``; checked against the input.
        dim: the category dimension of the input.
        **kwargs: see :class:`DiscreteBottleneck`.
    """

    def __init__(self, num_categories: Optional[int] = None, dim: int = -1, **kwargs: Any) -> None:
        if num_categories is not None and num_categories < 2:
            raise ValueError(f"`num_categories` must be >= 2, got {num_categories}")
        super().__init__(**kwargs)
        self._k = num_categories
        self.dim = dim

    @property
    def num_categories(self) -> int:
        if self._k is None:
            raise AttributeError("num_categories is known after the first forward")
        return self._k

    def _forward(self, logits: Tensor) -> Tensor:
        """``(B, ..., k) -> (B, ..., k)``."""
        dim = LF.check_dim(logits, self.dim)
        k = logits.shape[dim]
        if self._k is None:
            self._k = k
        elif k != self._k:
            raise ValueError(f"expected {self._k} categories on dim {self.dim}, got {k}")
        if self.training:
            z = self._estimate(logits, dim)
        elif self.eval_mode == "soft":
            LF.check_logits(logits)
            z = torch.softmax(logits.float(), dim).to(logits.dtype)
        elif self.eval_mode == "sample" and self.temperatures()[0] > 0:
            z = LF.decoupled_st(logits.detach(), self.temperatures()[0], 1.0, dim)
        else:
            z = LF.identity_st(logits.detach(), dim)
        if self._recording:
            idx = logits.argmax(dim) if self.eval_mode == "soft" and not self.training else z.argmax(dim)
            self._observe(logits, idx)
        return z


class BinaryBottleneck(DiscreteBottleneck):
    """Binary stochastic units with a registered estimator.

    Input logits ``(B, ...)``, one per unit; output the same shape with values in
    ``{0, 1}`` (``sign``: ``{-1, 0, 1}``).  ``last_indices`` is ``(B, units)``.
    """

    binary = True

    @property
    def num_categories(self) -> int:
        return 2

    def _forward(self, logits: Tensor) -> Tensor:
        """``(B, ...) -> (B, ...)``."""
        if self.training:  # every branch validates the logits once
            z = self._estimate(logits, -1)
        elif self.eval_mode == "soft":
            LF.check_logits(logits)
            z = torch.sigmoid(logits.float()).to(logits.dtype)
        elif self.eval_mode == "sample" and self.temperatures()[0] > 0:
            z = LF.bernoulli_decoupled_st(logits.detach(), self.temperatures()[0], 1.0)
        elif self.estimator == "sign":
            z = LF.sign_ste(logits.detach())
        else:
            z = LF.bernoulli_identity_st(logits.detach())
        if self._recording:
            soft = not self.training and self.eval_mode == "soft"
            self._observe(logits, (logits >= 0).long() if soft else (z > 0.5).long())
        return z
