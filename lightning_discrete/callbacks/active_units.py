"""Share of units / categories whose logit gradient is non-negligible (the paper's "% active neurons")."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from ._utils import log_value, named_bottlenecks

__all__ = ["ActiveUnitMonitor"]


class ActiveUnitMonitor(Callback):
    """Percentage of logit-gradient entries with ``|g| > threshold``, over a window.

    It asks every :class:`~lightning_discrete.nn.DiscreteBottleneck` to record its logit
    gradients (``record(True, grads=True)``) and, after each training batch's backward,
    counts the entries of ``last_logit_grad`` (one per example and binary unit, or per
    example, latent and category) whose magnitude exceeds ``threshold``.  The gradient
    is first put on a per-example scale: multiplied by the rows of the batch
    (the gradient's first dim; the loss is a batch mean) and by
    ``accumulate_grad_batches``, and divided by the AMP loss scale when there is one —
    so the threshold does not depend on the batch size or accumulation.

    At the end of each window (``window`` optimizer steps, or the epoch when
    ``window`` is ``None``) the counts are summed across ranks and logged as
    percentages in ``[0, 100]``:

    * ``active_units/{name}`` per bottleneck (``{name}``: qualified module name);
    * ``active_units/all`` over every bottleneck.

    Args:
        threshold: absolute per-example gradient threshold.
        window: optimizer steps per window; ``None`` for one window per epoch.
    """

    def __init__(self, threshold: float = 1e-3, window: Optional[int] = None) -> None:
        if threshold < 0:
            raise ValueError(f"`threshold` must be >= 0, got {threshold}")
        if window is not None and window < 1:
            raise ValueError(f"`window` must be >= 1 or None, got {window}")
        self.threshold = float(threshold)
        self.window = window
        self._counts: Dict[str, list] = {}  # name -> [active (device int64 tensor), total (int)]
        self._names: list = []
        self._modules: list = []
        self._last_flush_step = -1
        self.last_results: Dict[str, float] = {}
        self._seen: Dict[str, Tensor] = {}  # name -> the last gradient counted (no double counting)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._modules = named_bottlenecks(pl_module)  # walked once, not every step
        self._names = [name for name, _ in self._modules]
        for _, m in self._modules:
            m.record(True, grads=True, owner=self)
        self._counts = {}

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for _, m in self._modules:
            m.record(False, owner=self)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        for name, m in self._modules:
            g = m.last_logit_grad
            if g is None or self._seen.get(name) is g:
                continue
            self._seen[name] = g
            rows = g.shape[0] if g.dim() else 1  # the logits' batch dim (the loss is a batch mean)
            # |g| * rows * accumulation / loss_scale > threshold, as one comparison against a
            # rescaled threshold; the AMP scale stays a device tensor (no sync per step)
            limit = self.threshold / (rows * trainer.accumulate_grad_batches)
            if scaler is not None and scaler.is_enabled():
                # the scale as the scaler's device tensor: ``get_scale()`` would read it back
                scale = getattr(scaler, "_scale", None)
                limit = limit * (scale if scale is not None else scaler.get_scale())
            active = (g.detach().abs() > limit).sum()
            counts = self._counts.get(name)
            if counts is None:
                counts = self._counts[name] = [torch.zeros((), dtype=torch.int64, device=g.device), 0]
            counts[0] += active
            counts[1] += g.numel()
        step = trainer.global_step
        if self.window is not None and step % self.window == 0 and step != self._last_flush_step and step > 0:
            self._last_flush_step = step
            self._flush(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.window is None:
            self._flush(trainer, pl_module)

    def _flush(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._names:
            return
        device = pl_module.device
        zero = torch.zeros((), dtype=torch.int64, device=device)
        active = torch.stack([self._counts[n][0].to(device) if n in self._counts else zero for n in self._names])
        total = torch.tensor([self._counts[n][1] if n in self._counts else 0 for n in self._names], device=device)
        stacked = torch.stack([active, total], 1).to(torch.float64)
        stacked = trainer.strategy.reduce(stacked, reduce_op="sum")  # collective on every rank
        self._counts = {}
        on_step = self.window is not None
        for name, (active, total) in zip(self._names, stacked.tolist()):
            if total > 0:
                value = 100.0 * active / total
                self.last_results[f"active_units/{name}"] = value
                log_value(pl_module, f"active_units/{name}", torch.tensor(value), on_step=on_step)
        active, total = stacked.sum(0).tolist()
        if total > 0:
            self.last_results["active_units/all"] = 100.0 * active / total
            log_value(pl_module, "active_units/all", torch.tensor(100.0 * active / total), on_step=on_step)
