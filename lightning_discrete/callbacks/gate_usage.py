"""Distribution of the 16 gate types in logic-gate networks."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn

from ..metrics import perplexity_from_counts
from ._utils import log_value

__all__ = ["gate_histogram", "bar_chart_image", "GateUsageMonitor"]

NUM_GATES = 16


def _gate_layers(module: nn.Module) -> List[Tuple[str, nn.Module]]:
    return [(name or "root", m) for name, m in module.named_modules() if callable(getattr(m, "gate_ids", None))]


def gate_histogram(gate_ids: Tensor, num_gates: int = NUM_GATES) -> Tensor:
    """``(num_gates,)`` long counts of each gate id in ``gate_ids``."""
    return torch.bincount(gate_ids.reshape(-1).long().cpu(), minlength=num_gates)


def bar_chart_image(values: Tensor, height: int = 64, bar_width: int = 8, gap: int = 2) -> Tensor:
    """Render non-negative ``values`` ``(n,)`` as a bar chart: a ``(3, height, W)`` uint8
    image (white background, blue bars scaled to the largest value, grey baseline),
    for loggers that take images (TensorBoard ``add_image``) without matplotlib."""
    v = values.detach().to(torch.float64).cpu().clamp_min(0)
    n = v.numel()
    width = n * (bar_width + gap) + gap
    img = torch.full((3, height, width), 255, dtype=torch.uint8)
    top = float(v.max()) if n and float(v.max()) > 0 else 1.0
    usable = height - 2
    for i in range(n):
        h = int(round(usable * float(v[i]) / top))
        x0 = gap + i * (bar_width + gap)
        if h > 0:
            img[:, height - 1 - h : height - 1, x0 : x0 + bar_width] = torch.tensor([31, 119, 180], dtype=torch.uint8).view(3, 1, 1)
    img[:, height - 1, :] = 128
    return img


class GateUsageMonitor(Callback):
    """Distribution of the argmax gates (``gate_ids()``) of every logic-gate layer.

    Any module with a ``gate_ids()`` method (``LogicGateLayer``) is monitored.  The
    parameters are identical on every rank under DDP, so no collective is needed.
    Logged at the end of every training epoch (and every ``every_n_steps`` steps if set):

    * ``gates/perplexity`` — perplexity of the gate histogram of all layers (max 16);
    * ``gates/perplexity/{name}`` — the same per layer;
    * ``gates/fraction/{id:02d}`` — fraction of all gates of type ``id`` (order of
      ``lightning_discrete.nn.logic.GATE_NAMES``), with ``log_fractions``;
    * an image ``gates/usage`` (bar chart, 16 bars) on rank 0 for every logger whose
      ``experiment`` has ``add_image`` (TensorBoard); skipped otherwise.

    Args:
        every_n_steps: also log every this many optimizer steps (``None``: epochs only).
        log_fractions: log the 16 fractions as numbers.
        log_image: log the bar chart where the logger supports images.
    """

    def __init__(self, every_n_steps: Optional[int] = None, log_fractions: bool = True, log_image: bool = True) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"`every_n_steps` must be >= 1 or None, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.log_fractions = log_fractions
        self.log_image = log_image
        self.last_results: Dict[str, float] = {}
        self.last_counts: Optional[Tensor] = None
        self._last_step = -1

    def compute(self, pl_module: nn.Module) -> Dict[str, Tensor]:
        """Histograms ``{name: (16,) counts}`` of every gate layer plus ``"all"``."""
        out: Dict[str, Tensor] = {}
        for name, m in _gate_layers(pl_module):
            out[name] = gate_histogram(m.gate_ids())
        if out:
            out["all"] = torch.stack(list(out.values())).sum(0)
        return out

    def _log(self, trainer: Trainer, pl_module: LightningModule, on_step: bool) -> None:
        hists = self.compute(pl_module)
        if not hists:
            return
        total = hists.pop("all")
        self.last_counts = total
        results = {"gates/perplexity": float(perplexity_from_counts(total))}
        for name, h in hists.items():
            results[f"gates/perplexity/{name}"] = float(perplexity_from_counts(h))
        if self.log_fractions:
            frac = total.to(torch.float64) / total.sum()
            for i in range(NUM_GATES):
                results[f"gates/fraction/{i:02d}"] = float(frac[i])
        self.last_results = results
        for key, value in results.items():
            log_value(pl_module, key, torch.tensor(value), on_step=on_step)
        if self.log_image and trainer.is_global_zero:
            img = bar_chart_image(total)
            for logger in trainer.loggers:
                experiment = getattr(logger, "experiment", None)
                add_image = getattr(experiment, "add_image", None)
                if callable(add_image):
                    add_image("gates/usage", img, global_step=trainer.global_step, dataformats="CHW")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self._last_step and step > 0:
            self._last_step = step
            self._log(trainer, pl_module, on_step=True)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log(trainer, pl_module, on_step=False)
