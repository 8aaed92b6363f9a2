"""Discrete bottleneck modules: temperatures as buffers around :mod:`lightning_discrete.functional`.

Protocols (see ``docs/design.md``, "Protocols between layers") every callback relies on:

* **Temperature** — every :class:`DiscreteBottleneck` has float buffers ``tau_f`` and
  ``tau_b`` (they move with ``.to()`` and live in ``state_dict``) and
  :meth:`DiscreteBottleneck.set_temperature`.  Single-temperature estimators keep
  ``tau_f == tau_b``.
* **Observation** — after :meth:`DiscreteBottleneck.record` is switched on, each
  training/validation forward records ``last_indices`` (``(N, L)`` long: the chosen
  category of each of ``L`` latents for ``N`` rows; computed from the forward's sample
  when first read, so a monitor that reads only gradients, or reads on some steps, does
  not pay for it) and, with ``grads=True``, the next backward stores ``last_logit_grad``
  (shaped like the logits).  Nothing is recorded (and nothing costs) while recording is
  off.
* **Score function** — when the estimator is a score-function one (``reinforce``,
  ``disarm``: :attr:`lightning_discrete.functional.Estimator.score_function`), the
  forward keeps what :meth:`DiscreteBottleneck.surrogate_loss` needs; the model calls
  it with the per-row losses.

The estimator settings (:class:`BottleneckConfig`) are declared and checked in one
place; :class:`lightning_discrete.models.DiscreteModule` takes the same keyword
arguments and hands them to every bottleneck it builds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

from .. import functional as LF

__all__ = ["BottleneckConfig", "DiscreteBottleneck", "CategoricalBottleneck", "BinaryBottleneck"]

_EVAL_MODES = ("argmax", "sample", "soft")


def _rows(indices: Tensor) -> Tensor:
    """``(N, ...) -> (N, L)``: one row of latent codes per example."""
    return indices.reshape(indices.shape[0], -1) if indices.dim() else indices


# Binary codes as long. The comparison writes into a float buffer first: on the CPU a
# float -> bool comparison plus the bool -> long copy take about 1.5x as long.
def _above_half(z: Tensor) -> Tensor:
    """``(z > 0.5)`` as long: the code of a binary sample."""
    return torch.gt(z, 0.5, out=torch.empty_like(z)).long()


def _nonnegative(logits: Tensor) -> Tensor:
    """``(logits >= 0)`` as long: the code of the most likely state."""
    return torch.ge(logits, 0.0, out=torch.empty_like(logits)).long()


@dataclasses.dataclass(frozen=True)
class BottleneckConfig:
    """The estimator settings of a bottleneck: the keyword arguments of every
    :class:`DiscreteBottleneck` and of :class:`lightning_discrete.models.DiscreteModule`
    (``--model.estimator``, ``--model.tau_f``, ... on the command line).

    Args:
        estimator: registry name in :data:`lightning_discrete.functional.ESTIMATORS`
            (e.g. ``decoupled_st``, ``softmax_st``, ``gumbel_softmax_st``, ``reinforce``);
            an older name is replaced by the current one with a ``FutureWarning``.
        tau_f: forward temperature (``>= 0``; ``0`` is argmax; only estimators without a
            single temperature may use 0).
        tau_b: backward temperature (``> 0``); defaults to ``tau_f`` (1 when ``tau_f`` is 0).
        tau: single temperature; sets both ``tau_f`` and ``tau_b``.  With none of the
            three given, both are 1.
        eval_mode: the output in eval mode: ``"argmax"`` (exact one-hot of the mode),
            ``"sample"`` (a sample at ``tau_f``) or ``"soft"`` (the probabilities).
        num_samples: for score-function estimators, the samples per example, stacked
            sample-major along dim 0 of the input (``reinforce``: ``>= 2``; an antithetic
            estimator such as ``disarm`` always uses pairs, so 2).
        estimator_kwargs: extra keyword arguments for the estimator function (e.g.
            ``{"num_samples": 10}`` for ``gumbel_rao``).
        validate_args: check the logits for NaN/Inf on every call (``True``: one extra pass
            and, on CUDA, a host-device sync per call), never (``False``), or as
            :func:`lightning_discrete.functional.set_validate_args` says (``None``, the
            default: off unless switched on).  Ignored under ``torch.compile``.

    Examples:
        >>> from lightning_discrete.nn import BottleneckConfig
        >>> BottleneckConfig(estimator="disarm").num_samples  # antithetic pairs
        2
        >>> BottleneckConfig(eval_mode="mode")
        Traceback (most recent call last):
        ...
        ValueError: `eval_mode` must be one of ('argmax', 'sample', 'soft'), got 'mode'
    """

    estimator: str = "decoupled_st"
    tau_f: Optional[float] = None
    tau_b: Optional[float] = None
    tau: Optional[float] = None
    eval_mode: str = "argmax"
    num_samples: int = 2
    estimator_kwargs: Optional[Dict[str, Any]] = None
    validate_args: Optional[bool] = None

    def __post_init__(self) -> None:
        spec = LF.get_estimator(self.estimator)  # fails early with the list of names
        object.__setattr__(self, "estimator", spec.name)
        if self.eval_mode not in _EVAL_MODES:
            raise ValueError(f"`eval_mode` must be one of {_EVAL_MODES}, got {self.eval_mode!r}")
        num_samples = self.num_samples
        if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 1:
            raise ValueError(f"`num_samples` must be a positive integer, got {num_samples}")
        if spec.antithetic:
            num_samples = 2
        elif spec.score_function and num_samples < 2:
            raise ValueError(
                f"`num_samples` must be >= 2 for {spec.name!r} (leave-one-out baseline), got {num_samples}"
            )
        object.__setattr__(self, "num_samples", int(num_samples))
        if self.estimator_kwargs is not None and not isinstance(self.estimator_kwargs, dict):
            raise ValueError(f"`estimator_kwargs` must be a dict or None, got {self.estimator_kwargs!r}")

    def as_kwargs(self) -> Dict[str, Any]:
        """The settings as keyword arguments of a bottleneck (a fresh dict).

        Examples:
            >>> from lightning_discrete.nn import BinaryBottleneck, BottleneckConfig
            >>> BinaryBottleneck(**BottleneckConfig(tau_f=0.5).as_kwargs()).temperatures()
            (0.5, 0.5)
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class DiscreteBottleneck(nn.Module):
    """Base class of modules that make a discrete choice with a registered estimator.

    Args:
        **kwargs: the estimator settings, see :class:`BottleneckConfig` (``estimator``,
            ``tau_f``, ``tau_b``, ``tau``, ``eval_mode``, ``num_samples``,
            ``estimator_kwargs``, ``validate_args``).

    Examples:
        >>> import torch
        >>> from lightning_discrete.nn import CategoricalBottleneck
        >>> b = CategoricalBottleneck(4, estimator="decoupled_st", tau_f=2.0, tau_b=0.5)
        >>> b.temperatures(), b.estimator_spec.decoupled_temperatures
        ((2.0, 0.5), True)
        >>> b(torch.randn(3, 4)).sum(-1)
        tensor([1., 1., 1.])
    """

    binary: bool = False
    tau_f: Tensor
    tau_b: Tensor

    def __init__(self, **kwargs: Any) -> None:
        config = BottleneckConfig(**kwargs)
        super().__init__()
        self.eval_mode = config.eval_mode
        self.num_samples = config.num_samples
        self.estimator_kwargs = dict(config.estimator_kwargs or {})
        self.validate_args = config.validate_args
        self.register_buffer("tau_f", torch.tensor(1.0))
        self.register_buffer("tau_b", torch.tensor(1.0))
        self._temperature_key: Optional[tuple] = None
        self._temperature_cache = (1.0, 1.0)
        self.estimator = config.estimator
        tau_f, tau_b, tau = config.tau_f, config.tau_b, config.tau
        if tau is None and tau_f is None and tau_b is None:
            tau = 1.0
        if tau is None and tau_b is None:
            tau_b = tau_f if tau_f else 1.0
        self.set_temperature(tau_f=tau_f, tau_b=tau_b, tau=tau)
        self._record_requests: Dict[int, bool] = {}
        self._recording = False
        self._recording_grads = False
        self._last_indices: Optional[Tensor] = None
        # what the next read of ``last_indices`` computes them from: (source, its version, how)
        self._indices_source: Optional[Tuple[Tensor, int, Callable[[Tensor], Tensor]]] = None
        self.last_logit_grad: Optional[Tensor] = None
        self._score_cache: Optional[Tuple[Tensor, Any]] = None

    # -- estimator ---------------------------------------------------------- #
    @property
    def estimator(self) -> str:
        """The registry name of the estimator in use (settable)."""
        return self._estimator.name

    @estimator.setter
    def estimator(self, name: str) -> None:
        est = LF.get_estimator(name)
        if not (est.has_binary if self.binary else est.has_categorical):
            kind = "binary" if self.binary else "categorical"
            raise ValueError(f"estimator {est.name!r} has no {kind} form; choose another `estimator`")
        self._estimator = est

    @property
    def estimator_spec(self) -> LF.Estimator:
        """The registered :class:`~lightning_discrete.functional.Estimator` in use (its
        capability flags: ``single_temperature``, ``score_function``, ``signed``, ...)."""
        return self._estimator

    @property
    def score_function(self) -> bool:
        """Whether the estimator needs :meth:`surrogate_loss` added to the loss."""
        return self._estimator.score_function

    # -- temperature protocol ----------------------------------------------- #
    def set_temperature(
        self, tau_f: Optional[float] = None, tau_b: Optional[float] = None, tau: Optional[float] = None
    ) -> None:
        """Set temperatures in place. ``tau`` sets both; a single-temperature estimator
        keeps ``tau_f == tau_b`` (setting either sets both).

        Args:
            tau_f: forward temperature (``>= 0`` unless the estimator has a single one).
            tau_b: backward temperature (``> 0``).
            tau: both temperatures; excludes the other two.

        Examples:
            >>> from lightning_discrete.nn import BinaryBottleneck
            >>> b = BinaryBottleneck(estimator="softmax_st", tau=1.0)
            >>> b.set_temperature(tau_f=0.5); b.temperatures()  # one temperature: both move
            (0.5, 0.5)
        """
        if tau is not None:
            if tau_f is not None or tau_b is not None:
                raise ValueError("pass either `tau` or `tau_f`/`tau_b`, not both")
            tau_f = tau_b = LF.check_tau(tau, "tau")
        single = self._estimator.single_temperature
        if single:
            given = tau_f if tau_f is not None else tau_b
            if tau_f is not None and tau_b is not None and float(tau_f) != float(tau_b):
                raise ValueError(
                    f"estimator {self.estimator!r} has one temperature; got tau_f={tau_f} != tau_b={tau_b}"
                )
            tau_f = tau_b = given
        cached_f, cached_b = self.temperatures()
        if tau_f is not None:
            cached_f = LF.check_tau(tau_f, "tau_f", allow_zero=not single)
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

        Examples:
            >>> from lightning_discrete.nn import BinaryBottleneck
            >>> BinaryBottleneck(tau_f=0.0, tau_b=0.7).temperatures()
            (0.0, 0.7)
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
        ``record(False, owner=self)`` withdraws only its own request; an owner's new request
        replaces its earlier one. Recording is on while anyone asks, with gradients while
        anyone asks for gradients.

        Args:
            enabled: ask for recording (``False``: withdraw ``owner``'s request).
            grads: also keep the gradient of the logits (``last_logit_grad``).
            owner: who asks (a monitor passes itself).

        Examples:
            >>> import torch
            >>> from lightning_discrete.nn import CategoricalBottleneck
            >>> b = CategoricalBottleneck(4)
            >>> b.record(True)
            >>> _ = b(torch.randn(2, 3, 4))
            >>> b.last_indices.shape
            torch.Size([2, 3])
        """
        key = id(owner)
        if enabled:
            self._record_requests[key] = bool(grads)
        else:
            self._record_requests.pop(key, None)
        self._recording = bool(self._record_requests)
        self._recording_grads = any(self._record_requests.values())
        if not self._recording:
            self.last_indices = None
            self.last_logit_grad = None

    @property
    def last_indices(self) -> Optional[Tensor]:
        """``(N, L)`` long: the category chosen for each latent in the last recorded forward
        (``None`` before one). Computed from that forward's sample on the first read and kept.

        Raises:
            RuntimeError: the forward's output (or, in ``eval_mode="soft"``, its input logits)
                was modified in place before the first read, so the indices cannot be
                recovered: read them before modifying it, or modify a copy.
        """
        pending = self._indices_source
        if pending is not None:
            source, version, to_indices = pending
            if source._version != version:
                raise RuntimeError(
                    f"{type(self).__name__}: the tensor the recorded indices come from (the forward's output, "
                    "or its logits in eval_mode='soft') was modified in place after the forward; read "
                    "`last_indices` before modifying it in place, or modify a copy"
                )
            self.last_indices = _rows(to_indices(source))
        return self._last_indices

    @last_indices.setter
    def last_indices(self, value: Optional[Tensor]) -> None:
        self._last_indices = value
        self._indices_source = None

    def __getstate__(self) -> Dict[str, Any]:
        # a pickle or deep copy carries the indices, not the sample they would come from: a
        # copied tensor's version counter starts again, so the in-place check could not work
        state = super().__getstate__()
        if state.get("_indices_source") is not None:
            try:
                indices = self.last_indices
            except RuntimeError:  # the sample was changed in place: no codes to carry
                indices = None
            state.update(_last_indices=indices, _indices_source=None)
        return state

    @contextlib.contextmanager
    def recording_paused(self) -> Iterator[None]:
        """Record nothing inside the block and keep what was recorded before it
        (for extra passes, e.g. a gradient probe, that must not overwrite it).

        Examples:
            >>> import torch
            >>> from lightning_discrete.nn import BinaryBottleneck
            >>> b = BinaryBottleneck()
            >>> b.record(True)
            >>> _ = b(torch.randn(2, 3))
            >>> with b.recording_paused():
            ...     _ = b(torch.randn(7, 3))
            >>> b.last_indices.shape
            torch.Size([2, 3])
        """
        saved = (self._recording, self._recording_grads, self._last_indices, self._indices_source, self.last_logit_grad)
        self._recording = self._recording_grads = False
        try:
            yield
        finally:
            (self._recording, self._recording_grads, self._last_indices, self._indices_source,
             self.last_logit_grad) = saved

    @property
    def num_categories(self) -> int:
        """Categories per latent (2 for binary units)."""
        raise NotImplementedError

    def _observe(self, logits: Tensor, source: Tensor, to_indices: Callable[[Tensor], Tensor]) -> None:
        """Record a forward: ``last_indices`` will be ``to_indices(source)`` (computed when first
        read), and with gradients requested the next backward keeps the logits' gradient."""
        if not self._recording:
            return
        source = source.detach()  # shares the version counter: in-place changes stay visible
        if torch.compiler.is_compiling() or source.is_inference():
            # now: inside a compiled graph (no Python to save there), or without a version
            # counter (validation under inference_mode)
            self._last_indices, self._indices_source = _rows(to_indices(source)), None
        else:
            self._last_indices, self._indices_source = None, (source, source._version, to_indices)
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

        Examples:
            >>> import torch
            >>> from lightning_discrete.nn import BinaryBottleneck
            >>> b = BinaryBottleneck(estimator="reinforce", num_samples=2)
            >>> logits = torch.randn(4, 3, requires_grad=True)  # 2 samples x 2 examples
            >>> z = b(logits)
            >>> b.surrogate_loss(z.sum(-1)).backward(); logits.grad.shape
            torch.Size([4, 3])
        """
        if not self.score_function:
            raise RuntimeError(f"estimator {self.estimator!r} is not a score-function estimator")
        if self._score_cache is None:
            raise RuntimeError("surrogate_loss() needs a training forward pass first")
        logits, kept = self._score_cache
        self._score_cache = None
        if self._estimator.antithetic:
            b1, b2 = kept
            half = logits.shape[0]
            return LF.disarm_surrogate(logits, b1, b2, losses[:half], losses[half:])
        s = self.num_samples
        return LF.reinforce_loo_surrogate(kept.reshape(s, -1), losses.reshape(s, -1))

    # -- forward helpers ------------------------------------------------------ #
    def _estimate(self, logits: Tensor, dim: int) -> Tensor:
        """Training-mode output of the estimator (score-function ones keep what
        :meth:`surrogate_loss` needs)."""
        est = self._estimator
        if est.antithetic:
            if logits.shape[0] % 2:
                raise ValueError(
                    f"estimator {est.name!r} needs antithetic pairs: the batch must be the same inputs "
                    f"stacked twice along dim 0 (even size), got {logits.shape[0]}"
                )
            logits = logits[: logits.shape[0] // 2]
        elif est.score_function and logits.shape[0] % self.num_samples:
            raise ValueError(
                f"estimator {est.name!r} with num_samples={self.num_samples} needs the batch stacked "
                f"sample-major along dim 0; got {logits.shape[0]} rows"
            )
        if torch.compiler.is_compiling():
            # the buffers themselves: a temperature that changes between steps is a graph
            # input, not a constant (no recompilation, no data-dependent guard)
            tau_f, tau_b = self.tau_f, self.tau_b
        else:
            tau_f, tau_b = self.temperatures()  # Python floats, read without a device sync
        z = est(logits, tau_f, tau_b, binary=self.binary, dim=dim, **self.estimator_kwargs)
        if not est.score_function:
            return z
        if est.antithetic:
            self._score_cache = (logits, z)
            return torch.cat(z, 0)
        lp = LF.bernoulli_log_prob(logits, z) if self.binary else LF.categorical_log_prob(logits, z, dim)
        self._score_cache = (logits, lp.reshape(lp.shape[0], -1).sum(-1))
        return z

    def _evaluate(self, logits: Tensor, dim: int) -> Tensor:
        """Eval-mode output, the same for every bottleneck: per :attr:`eval_mode` the
        probabilities (``"soft"``), a sample at ``tau_f`` without gradient (``"sample"``,
        ``tau_f > 0``) or the mode (``"argmax"``): a one-hot, ``{0, 1}`` units, or
        ``sign(l)`` for a signed estimator."""
        if self.eval_mode == "soft":
            LF.check_logits(logits)
            x = logits.float()
            return (torch.sigmoid(x) if self.binary else torch.softmax(x, dim)).to(logits.dtype)
        x = logits.detach()
        # the temperature is read only where it is used (a compiled argmax step reads none)
        if self.eval_mode == "sample" and self.temperatures()[0] > 0:
            tau_f = self.temperatures()[0]
            if not self.binary:
                return LF.decoupled_st(x, tau_f, 1.0, dim)
            z = LF.bernoulli_decoupled_st(x, tau_f, 1.0)
            return 2 * z - 1 if self._estimator.signed else z
        if not self.binary:
            return LF.identity_st(x, dim)
        return LF.sign_st(x) if self._estimator.signed else LF.bernoulli_identity_st(x)

    def forward(self, logits: Tensor) -> Tensor:
        """Output of the bottleneck for ``logits`` (shapes: see the subclasses).

        Args:
            logits: the input logits.
        """
        if self._indices_source is not None and not torch.compiler.is_compiling():
            # an unread record's sample is let go before this forward makes the next one
            # (with many categories, two one-hot samples alive at once would cost memory)
            self._indices_source = None
        if self.validate_args is None or torch.compiler.is_compiling():
            return self._forward(logits)
        with LF.validate_args(self.validate_args):
            return self._forward(logits)

    def _forward(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        tau_f, tau_b = self.temperatures()
        return f"estimator={self.estimator!r}, tau_f={tau_f:g}, tau_b={tau_b:g}, eval_mode={self.eval_mode!r}"


class CategoricalBottleneck(DiscreteBottleneck):
    """Categorical latents with a registered estimator.

    Input logits ``(B, ..., k)`` (categories on ``dim``, default last); output the
    same shape: one-hot codes for hard estimators.  ``last_indices`` is
    ``(B, L)`` with ``L`` the product of the remaining dims.

    Args:
        num_categories: ``k``; checked against the input (``None``: taken from the
            first input).
        dim: the category dimension of the input.
        **kwargs: the estimator settings, see :class:`BottleneckConfig`.

    Examples:
        >>> import torch
        >>> from lightning_discrete.nn import CategoricalBottleneck
        >>> b = CategoricalBottleneck(8, estimator="gumbel_softmax_st", tau=0.5)
        >>> b(torch.randn(2, 4, 8)).shape
        torch.Size([2, 4, 8])
        >>> b.eval()(torch.tensor([[0.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]))
        tensor([[0., 1., 0., 0., 0., 0., 0., 0.]])
    """

    def __init__(self, num_categories: Optional[int] = None, dim: int = -1, **kwargs: Any) -> None:
        if num_categories is not None and num_categories < 2:
            raise ValueError(f"`num_categories` must be >= 2, got {num_categories}")
        super().__init__(**kwargs)
        self._k = num_categories
        self.dim = dim

    @property
    def num_categories(self) -> int:
        """``k``, the categories per latent (known after the first forward when not given)."""
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
        z = self._estimate(logits, dim) if self.training else self._evaluate(logits, dim)
        if self._recording:
            soft = not self.training and self.eval_mode == "soft"
            self._observe(logits, logits if soft else z, functools.partial(torch.argmax, dim=dim))
        return z


class BinaryBottleneck(DiscreteBottleneck):
    """Binary stochastic units with a registered estimator.

    Input logits ``(B, ...)``, one per unit; output the same shape with values in
    ``{0, 1}`` (a signed estimator such as ``sign_st``: ``{-1, 0, 1}``).
    ``last_indices`` is ``(B, units)``.

    Args:
        **kwargs: the estimator settings, see :class:`BottleneckConfig`.

    Examples:
        >>> import torch
        >>> from lightning_discrete.nn import BinaryBottleneck
        >>> b = BinaryBottleneck(estimator="decoupled_st", tau_f=0.1, tau_b=0.7)
        >>> b(torch.randn(5, 3)).shape
        torch.Size([5, 3])
        >>> b.eval()(torch.tensor([[-1.0, 0.5, 2.0]]))
        tensor([[0., 1., 1.]])
    """

    binary = True

    @property
    def num_categories(self) -> int:
        """2: a unit is a choice between two categories."""
        return 2

    def _forward(self, logits: Tensor) -> Tensor:
        """``(B, ...) -> (B, ...)``."""
        z = self._estimate(logits, -1) if self.training else self._evaluate(logits, -1)
        if self._recording:
            if not self.training and self.eval_mode == "soft":
                self._observe(logits, logits, _nonnegative)
            elif self.training and self._estimator.hard and not self._estimator.signed:
                self._observe(logits, z, torch.Tensor.long)  # exact {0, 1}: the codes themselves
            else:
                self._observe(logits, z, _above_half)
        return z
