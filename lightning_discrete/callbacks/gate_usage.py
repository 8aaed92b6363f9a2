"""Distribution of the 16 gate types in logic-gate networks."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from ..metrics import perplexity_from_counts
from ..nn.logic import GATE_NAMES, NUM_GATES
from ._utils import PlotsCheck, log_value, send_figure

__all__ = ["gate_histogram", "gate_usage_figure", "GateUsageMonitor"]


def _gate_layers(module: nn.Module) -> List[Tuple[str, nn.Module]]:
    return [(name or "root", m) for name, m in module.named_modules() if callable(getattr(m, "gate_ids", None))]


def gate_histogram(gate_ids: Tensor, num_gates: int = NUM_GATES) -> Tensor:
    """How often each gate id occurs in ``gate_ids``.

    Args:
        gate_ids: integer gate ids of any shape, e.g. ``(out_features,)`` of a layer.
        num_gates: length of the histogram.

    Returns:
        ``(num_gates,)`` long counts, on the CPU.

    Examples:
        >>> gate_histogram(torch.tensor([3, 3, 6, 0]), num_gates=8)
        tensor([1, 0, 0, 2, 0, 0, 1, 0])
    """
    return torch.bincount(gate_ids.reshape(-1).long().cpu(), minlength=num_gates)


def gate_usage_figure(counts: Tensor, layer: str = "all layers") -> Any:
    """Bar chart of the 16 gate types' shares of a layer (a matplotlib ``Figure``).

    One bar per gate, labelled with its name (:data:`lightning_discrete.nn.logic.GATE_NAMES`),
    the share in percent on the y axis, the layer in the title. Needs matplotlib
    (``pip install lightning_discrete[plots]``).

    Args:
        counts: ``(16,)`` counts of each gate id (:func:`gate_histogram`).
        layer: the layer's name, shown in the title.

    Returns:
        The figure.

    Examples:
        >>> fig = gate_usage_figure(torch.tensor([0, 0, 0, 8] + [0] * 11 + [8]), layer="gates.0")
        >>> ax = fig.axes[0]
        >>> len(ax.patches), ax.get_title(), ax.get_xticklabels()[3].get_text()
        (16, 'Gate usage: gates.0', 'A')
    """
    if counts.shape != (NUM_GATES,):
        raise ValueError(f"`counts` must have shape ({NUM_GATES},), got {tuple(counts.shape)}")
    from matplotlib.figure import Figure  # no pyplot: no global figure state, any backend

    figure = Figure(figsize=(8, 3.6), layout="constrained")
    c = counts.detach().to(torch.float64).cpu()
    share = (100.0 * c / c.sum().clamp_min(1)).tolist()
    ax = figure.subplots()
    ax.bar(range(NUM_GATES), share, color="tab:blue")
    ax.set_xticks(range(NUM_GATES), GATE_NAMES, rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("gate")
    ax.set_ylabel("share of the layer's gates (%)")
    ax.set_title(f"Gate usage: {layer}")
    return figure


class GateUsageMonitor(Callback):
    """Distribution of the argmax gates (``gate_ids()``) of every logic-gate layer.

    Any module with a ``gate_ids()`` method (``LogicGateLayer``) is monitored.  The
    parameters are identical on every rank under DDP, so no collective is needed.
    Logged at the end of every training epoch (and every ``every_n_steps`` steps if set):

    * ``{prefix}/perplexity`` -- perplexity of the gate histogram of all layers (max 16);
    * ``{prefix}/perplexity/{name}`` -- the same per layer;
    * ``{prefix}/fraction/{id:02d}`` -- fraction of all gates of type ``id`` (order of
      :data:`lightning_discrete.nn.logic.GATE_NAMES`), with ``log_fractions``;
    * with ``log_figure``, on global rank zero, a bar chart per layer
      (:func:`gate_usage_figure`, tag ``{prefix}/usage/{name}``): sent to TensorBoard
      (``add_figure``) when a logger is a ``TensorBoardLogger``, otherwise saved as
      ``<log dir>/{prefix}_usage/{name}_step{step}.png`` next to the CSV logs. Without
      matplotlib the figures are skipped with one warning.

    Several monitors can share a Trainer, each with its own ``prefix``
    (:attr:`state_key` names it and ``every_n_steps``).

    Args:
        every_n_steps: also log every this many optimizer steps (``None``: epochs only).
        log_fractions: log the 16 fractions as numbers.
        log_figure: draw the bar charts (needs matplotlib, the ``plots`` extra).
        prefix: namespace of the logged names.

    Examples:
        >>> from lightning_discrete.nn.logic import LogicGateLayer
        >>> hists = GateUsageMonitor().compute(nn.Sequential(LogicGateLayer(4, 8)))
        >>> sorted(hists), hists["all"].shape
        (['0', 'all'], torch.Size([16]))
    """

    def __init__(
        self,
        every_n_steps: Optional[int] = None,
        log_fractions: bool = True,
        log_figure: bool = True,
        prefix: str = "gates",
    ) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"`every_n_steps` must be >= 1 or None, got {every_n_steps}")
        if not prefix:
            raise ValueError("`prefix` must be a non-empty string")
        self.every_n_steps = every_n_steps
        self.log_fractions = log_fractions
        self.log_figure = log_figure
        self.prefix = prefix
        self.last_results: Dict[str, float] = {}
        self.last_counts: Optional[Tensor] = None
        self._last_step = -1
        self._plots = PlotsCheck("the gate-usage bar chart")

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(prefix=self.prefix, every_n_steps=self.every_n_steps)

    def compute(self, pl_module: nn.Module) -> Dict[str, Tensor]:
        """Histograms of the argmax gates of every gate layer of ``pl_module``.

        Args:
            pl_module: any module; its submodules with a ``gate_ids()`` method are read.

        Returns:
            ``{name: (16,) counts}`` per layer, plus ``"all"`` (their sum) when there is a layer.
        """
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
        results = {f"{self.prefix}/perplexity": float(perplexity_from_counts(total))}
        for name, h in hists.items():
            results[f"{self.prefix}/perplexity/{name}"] = float(perplexity_from_counts(h))
        if self.log_fractions:
            frac = total.to(torch.float64) / total.sum()
            for i in range(NUM_GATES):
                results[f"{self.prefix}/fraction/{i:02d}"] = float(frac[i])
        self.last_results = results
        for key, value in results.items():
            log_value(pl_module, key, torch.tensor(value), on_step=on_step)
        if self.log_figure and trainer.is_global_zero and trainer.loggers and self._plots.available():
            for name, h in hists.items():
                tag, step = f"{self.prefix}/usage/{name}", trainer.global_step
                send_figure(trainer, tag, gate_usage_figure(h, name), f"{self.prefix}_usage/{name}_step{step}.png")

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self._last_step and step > 0:
            self._last_step = step
            self._log(trainer, pl_module, on_step=True)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log(trainer, pl_module, on_step=False)

    @override
    def state_dict(self) -> Dict[str, Any]:
        """The last step logged by ``every_n_steps`` (not logged twice after a resume)."""
        return {"last_step": self._last_step}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._last_step = int(state_dict["last_step"])
