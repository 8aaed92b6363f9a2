"""Detect saturated bottlenecks: backward probabilities so peaked that no gradient gets through."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from ..metrics import Saturation, _saturation_compute
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
    * ``logit_range/{name}``: the mean logit range (``max - min``) per latent.

    When the share stays above ``warn_above`` for ``patience`` consecutive logging steps it
    warns once per bottleneck, in plain words, with what to try: a lower learning rate, a
    higher ``tau_b``, normalised logits. (A categorical autoencoder on MNIST at Adam 1e-3
    collapses to one code this way: its logit range jumps to 50-90 in the first epoch.)
    Steps that log nothing cost nothing: the hook does no work there.

    Args:
        tol: distance from one-hot that counts as saturated.
        warn_above: share of saturated latents that triggers the warning.
        patience: consecutive logging steps above ``warn_above`` before warning.

    Examples:
        >>> from lightning_discrete.callbacks import SaturationMonitor
        >>> SaturationMonitor(warn_above=0.5).warn_above
        0.5
    """

    def __init__(self, tol: float = 1e-6, warn_above: float = 0.9, patience: int = 3) -> None:
        if not 0.0 < tol < 1.0:
            raise ValueError(f"`tol` must be in (0, 1), got {tol}")
        if not 0.0 <= warn_above <= 1.0:
            raise ValueError(f"`warn_above` must be in [0, 1], got {warn_above}")
        if int(patience) != patience or patience < 1:
            raise ValueError(f"`patience` must be a positive integer, got {patience}")
        self.tol = float(tol)
        self.warn_above = float(warn_above)
        self.patience = int(patience)
        self._modules: List[Tuple[str, DiscreteBottleneck]] = []
        self._metrics: Dict[str, Saturation] = {}
        self._handles: list = []
        self._armed = False
        self._streak: Dict[str, int] = {}
        self._warned: set = set()

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(tol=self.tol, warn_above=self.warn_above, patience=self.patience)

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
        for name, m in self._modules:
            self._handles.append(m.register_forward_pre_hook(self._hook(self._metrics[name])))

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, metric: Saturation):
        def hook(m: DiscreteBottleneck, args: tuple) -> None:
            if self._armed and m.training and args:
                metric.update(args[0], m.temperatures()[1], m.binary, getattr(m, "dim", -1))

        return hook

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._armed = bool(self._modules) and is_logging_step(trainer)

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._armed:
            return
        self._armed = False
        for name, m in self._modules:
            metric = self._metrics[name]
            states = global_states(metric)  # a collective on every rank, on logging steps only
            metric.reset()
            if int(states["total"]) == 0:
                continue
            share, spread = (float(v) for v in _saturation_compute(states["saturated"], states["spread"], states["total"]))
            log_value(pl_module, f"saturation/{name}", torch.tensor(share), on_step=True)
            log_value(pl_module, f"logit_range/{name}", torch.tensor(spread), on_step=True)
            self._streak[name] = self._streak.get(name, 0) + 1 if share > self.warn_above else 0
            if self._streak[name] >= self.patience and name not in self._warned:
                self._warned.add(name)
                rank_zero_warn(
                    f"Bottleneck {name!r} is saturated: {100 * share:.0f}% of its latents have a one-hot "
                    f"backward distribution at tau_b={m.temperatures()[1]:g} (mean logit range "
                    f"{spread:.1f}), so almost no gradient reaches the layers before it and "
                    "training has likely stalled (every input may get the same code). Try a lower "
                    "learning rate (e.g. 3x lower), a higher tau_b, or normalising the logits "
                    "(e.g. LayerNorm before the bottleneck).",
                    category=UserWarning,
                )
