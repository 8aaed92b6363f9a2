"""Detect saturated bottlenecks and buried codes: backward probabilities so peaked that no
gradient gets through, to a whole latent or to some of its codes."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics import Metric
from typing_extensions import override

from ..metrics import BuriedCodes, Saturation, _buried_codes_compute, _saturation_compute
from ..models.base import is_logging_step
from ..nn.bottleneck import DiscreteBottleneck
from ._utils import global_states, log_value, named_bottlenecks

__all__ = ["SaturationMonitor"]

class SaturationMonitor(Callback):
    """Log how saturated each bottleneck's backward pass is, and warn once when training stalls.

    On every logging step (``trainer.log_every_n_steps``) it reads the logits going into
    each :class:`~lightning_discrete.nn.DiscreteBottleneck` during the training forward
    (a forward pre-hook) into one :class:`~lightning_discrete.metrics.Saturation` per
    bottleneck and logs, summed over ranks:

    * ``saturation/{name}``: the share in ``[0, 1]`` of latents whose backward
      distribution at ``tau_b`` is one-hot within ``tol`` (see
      :func:`lightning_discrete.metrics.saturation`);
    * ``logit_range/{name}``: the mean logit range (``max - min``) per latent;
    * ``buried/{name}``: the share in ``[0, 1]`` of ``(latent, code)`` pairs whose backward
      probability at ``tau_b``, averaged over the batch, is below ``tol``
      (:func:`lightning_discrete.metrics.buried_codes`): dead codes that get (almost) no
      gradient and so do not come back, while the latent may still use its other codes.

    When the saturated share stays above ``warn_above``, or the buried share above
    ``warn_buried_above``, for ``patience`` consecutive logging steps it warns once per
    bottleneck and kind, in plain words, with what to try: a lower learning rate, a higher
    ``tau_b``, normalised logits. (A categorical autoencoder on MNIST at Adam 1e-3 collapses to
    one code by saturation: its logit range jumps to 50-90 in the first epoch. One seed of the
    8 x 4 MNIST-VAE with Decoupled ST at ``tau_f = tau_b = 2`` lost 47% of its codes within
    13 epochs and stalled, their logits some 100 below the live ones: 47% of its codes are
    buried at its best checkpoint while only 2% of its latents are saturated.) Steps that log
    nothing cost nothing: the pre-hooks are registered for the logging steps only.

    Args:
        tol: distance from one-hot that counts as saturated.
        warn_above: share of saturated latents that triggers the warning.
        patience: consecutive logging steps above ``warn_above`` (``warn_buried_above``)
            before warning.
        warn_buried_above: share of buried codes that triggers the warning.

    Examples:
        >>> from lightning_discrete.callbacks import SaturationMonitor
        >>> SaturationMonitor(warn_above=0.5).warn_above
        0.5
    """

    def __init__(self, tol: float = 1e-6, warn_above: float = 0.9, patience: int = 3,
                 warn_buried_above: float = 0.25) -> None:
        if not 0.0 < tol < 1.0:
            raise ValueError(f"`tol` must be in (0, 1), got {tol}")
        for name, value in (("warn_above", warn_above), ("warn_buried_above", warn_buried_above)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {value}")
        if int(patience) != patience or patience < 1:
            raise ValueError(f"`patience` must be a positive integer, got {patience}")
        self.tol = float(tol)
        self.warn_above = float(warn_above)
        self.patience = int(patience)
        self.warn_buried_above = float(warn_buried_above)
        self._modules: List[Tuple[str, DiscreteBottleneck]] = []
        self._metrics: Dict[str, Saturation] = {}
        self._buried: Dict[str, BuriedCodes] = {}  # made at a bottleneck's first logging step (its code shape)
        self._handles: list = []  # the pre-hooks, present during logging steps only
        self._streak: Dict[str, int] = {}
        self._warned: set = set()

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(tol=self.tol, warn_above=self.warn_above, patience=self.patience,
                                        warn_buried_above=self.warn_buried_above)

    @override
    def state_dict(self) -> Dict[str, Any]:
        return {"streak": dict(self._streak), "warned": sorted(self._warned)}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._streak = dict(state_dict.get("streak", {}))
        self._warned = set(state_dict.get("warned", []))

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._modules = named_bottlenecks(pl_module)
        self._metrics = {name: Saturation(self.tol).to(pl_module.device) for name, _ in self._modules}
        self._buried = {}

    def _remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._remove_hooks()

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._remove_hooks()  # a step that raised between registering and removing them

    def _hook(self, name: str):
        def hook(m: DiscreteBottleneck, args: tuple) -> None:
            if not (m.training and args):
                return
            logits, tau_b, dim = args[0], m.temperatures()[1], getattr(m, "dim", -1)
            self._metrics[name].update(logits, tau_b, m.binary, dim)
            buried = self._buried.get(name)
            if buried is None:
                shape = (*logits.shape[1:], 2) if m.binary else tuple(logits.movedim(dim, -1).shape[1:])
                buried = self._buried[name] = BuriedCodes(shape, self.tol).to(logits.device)
            buried.update(logits, tau_b, m.binary, dim)

        return hook

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        # the hooks exist on logging steps only: a module with a forward hook takes PyTorch's
        # slower call path (and the hook call) on every forward
        if self._modules and is_logging_step(trainer) and not self._handles:
            self._handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in self._modules]

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._handles:  # not a logging step
            return
        self._remove_hooks()
        for name, m in self._modules:
            states = self._collect(self._metrics[name])
            if states is None:
                continue
            share, spread = (float(v) for v in _saturation_compute(states["saturated"], states["spread"], states["total"]))
            log_value(pl_module, f"saturation/{name}", torch.tensor(share), on_step=True)
            log_value(pl_module, f"logit_range/{name}", torch.tensor(spread), on_step=True)
            if self._should_warn(name, share > self.warn_above):
                rank_zero_warn(
                    f"Bottleneck {name!r} is saturated: {100 * share:.0f}% of its latents have a one-hot "
                    f"backward distribution at tau_b={m.temperatures()[1]:g} (mean logit range "
                    f"{spread:.1f}), so almost no gradient reaches the layers before it and "
                    "training has likely stalled (every input may get the same code). Try a lower "
                    "learning rate (e.g. 3x lower), a higher tau_b, or normalising the logits "
                    "(e.g. LayerNorm before the bottleneck).",
                    category=UserWarning,
                )
            self._log_buried(pl_module, name, m, saturated=share > self.warn_above)

    def _collect(self, metric: Metric) -> Optional[Dict[str, Tensor]]:
        """``metric``'s states summed across ranks, then reset it; None when no example was seen.
        A collective: called on every rank, on logging steps only."""
        states = global_states(metric)
        metric.reset()
        return states if int(states["total"]) else None

    def _should_warn(self, key: str, high: bool) -> bool:
        """Count a logging step towards ``key``'s streak (reset when not ``high``): True once, when
        the streak first reaches ``patience``."""
        self._streak[key] = self._streak.get(key, 0) + 1 if high else 0
        if self._streak[key] < self.patience or key in self._warned:
            return False
        self._warned.add(key)
        return True

    def _log_buried(self, pl_module: LightningModule, name: str, m: DiscreteBottleneck, saturated: bool) -> None:
        """Log ``buried/{name}`` of this logging step and warn once when it stays high; not while
        the bottleneck counts as saturated (whose warning says more: a one-hot latent buries all its
        other codes). Every rank runs the bottleneck on a logging step, so every rank has made
        its metric."""
        metric = self._buried.get(name)
        states = None if metric is None else self._collect(metric)
        if states is None:
            return
        share = float(_buried_codes_compute(states["mass"], states["total"], self.tol))
        log_value(pl_module, f"buried/{name}", torch.tensor(share), on_step=True)
        if self._should_warn(f"buried:{name}", share > self.warn_buried_above and not saturated):
            rank_zero_warn(
                f"Bottleneck {name!r} has buried codes: {100 * share:.0f}% of its (latent, code) pairs get "
                f"a mean backward probability below {self.tol:g} at tau_b={m.temperatures()[1]:g}, "
                f"{self.patience} logged batches running, so they get almost no gradient and are unlikely to "
                "be sampled again: the code book has shrunk and training may stall above where it could get. "
                "Try a lower learning rate (e.g. 3x lower), a higher tau_b, or another seed.",
                category=UserWarning,
            )
