"""A short plain-language summary of a training run, printed when ``fit`` ends."""

from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from ._utils import PlotsCheck, named_bottlenecks

__all__ = ["TrainingSummary", "DEFAULT_NEXT_STEPS", "training_curves_figure"]

DEFAULT_NEXT_STEPS = (
    "the paper's binary network on Fashion-MNIST (100 epochs; data offline: sudo apt-get install "
    "dataset-fashion-mnist, or add --data.download=true): lightning-discrete fit --config recipes/binary_fashion_mnist.yaml",
    "a baseline estimator on the same run: "
    "lightning-discrete fit --config recipes/quickstart.yaml --config recipes/estimators/identity_st.yaml",
    "a (tau_f, tau_b) sweep: lightning-discrete sweep --config recipes/binary_fashion_mnist.yaml "
    "--protocol grid --tau_f 0.1 0.5 1 --tau_b 0.3 0.7 1 --trainer.max_epochs=3",
)

# the epoch-level values kept per epoch (the figure's lines): key -> (panel, line label)
_CURVES = {
    "val/acc": ("accuracy / loss", "validation accuracy"),
    "val/loss": ("accuracy / loss", "validation loss"),
    "train/perplexity": ("perplexity of the units", "training"),
    "val/perplexity": ("perplexity of the units", "validation"),
    "active_units/all": ("active units (%)", "active units"),
    "temperature/tau_f": ("temperature", "tau_f"),
    "temperature/tau_b": ("temperature", "tau_b"),
}


def _float(value: Any) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def training_curves_figure(history: Sequence[Dict[str, float]]) -> Optional[Any]:
    """Per-epoch curves of a run: one panel per kind of value (accuracy and loss, perplexity
    of the units per stage, active units, temperatures), epochs on the x axes, a legend
    per panel. Needs matplotlib (``pip install lightning_discrete[plots]``).

    Args:
        history: one dict per epoch with ``"epoch"`` and any of ``val/acc``, ``val/loss``,
            ``train/perplexity``, ``val/perplexity``, ``active_units/all``,
            ``temperature/tau_f``, ``temperature/tau_b`` (what :attr:`TrainingSummary.history` holds).

    Returns:
        The figure, or ``None`` when ``history`` holds none of those values.

    Examples:
        >>> fig = training_curves_figure([{"epoch": 0, "val/acc": 0.5, "val/loss": 1.2},
        ...                               {"epoch": 1, "val/acc": 0.7, "val/loss": 0.9}])
        >>> ax = fig.axes[0]
        >>> ax.get_xlabel(), [t.get_text() for t in ax.get_legend().get_texts()]
        ('epoch', ['validation accuracy', 'validation loss'])
    """
    panels: Dict[str, List[str]] = {}
    for key, (panel, _) in _CURVES.items():
        if any(key in row for row in history):
            panels.setdefault(panel, []).append(key)
    if not panels:
        return None
    from matplotlib.figure import Figure  # no pyplot: no global figure state, any backend

    figure = Figure(figsize=(4 * len(panels), 3.2), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (panel, keys) in zip(axes, panels.items()):
        for key in keys:
            pts = [(row["epoch"], row[key]) for row in history if key in row]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=_CURVES[key][1])
        ax.set_xlabel("epoch")
        ax.set_ylabel(panel)
        ax.set_title(panel.capitalize())
        ax.legend()
    return figure


class TrainingSummary(Callback):
    """Print a short summary in plain language at the end of ``fit`` (global rank zero only).

    It reads the values the run logged (``trainer.callback_metrics``, i.e. those of the
    last epoch): validation accuracy and loss, the perplexity of the discrete units
    (``{val,train}/perplexity/{module}`` of
    :class:`~lightning_discrete.callbacks.LatentUtilizationMonitor`, mean over
    bottlenecks; for binary units 1 means a unit is stuck at one value, 2 that it is 0
    and 1 equally often), the share of active units (``active_units/all`` of
    :class:`~lightning_discrete.callbacks.ActiveUnitMonitor`) and the temperatures in use;
    then where the logs, the config and the checkpoints are and what to try next. With
    matplotlib installed (the ``plots`` extra) it also draws the per-epoch curves
    (:func:`training_curves_figure`) into ``<log dir>/<filename>``; without it the
    figure is skipped with one warning. The text is kept in :attr:`text` (``None``
    before the end of ``fit``), the per-epoch values in :attr:`history`.

    Checkpoints keep :attr:`history` and the training time so far, so the summary
    and the curves of a resumed run cover the whole run. Several summaries can share
    a Trainer, each with its own ``filename`` (:attr:`state_key` names it).

    Args:
        next_steps: lines of the "what to try next" list (``None``: the defaults,
            :data:`DEFAULT_NEXT_STEPS`; ``[]``: none).
        figure: draw the curves (needs matplotlib).
        filename: name of the figure's PNG in the log directory.

    Examples:
        >>> summary = TrainingSummary(next_steps=[], filename="curves_b.png")
        >>> summary.state_key
        "TrainingSummary{'filename': 'curves_b.png'}"
    """

    def __init__(
        self, next_steps: Optional[Sequence[str]] = None, figure: bool = True, filename: str = "curves.png"
    ) -> None:
        if not filename.endswith(".png"):
            raise ValueError(f"`filename` must end with '.png', got {filename!r}")
        self.next_steps: List[str] = list(DEFAULT_NEXT_STEPS if next_steps is None else next_steps)
        self.figure = figure
        self.filename = filename
        self.text: Optional[str] = None
        self.figure_path: Optional[str] = None
        self.history: List[Dict[str, float]] = []
        self._start: Optional[float] = None
        self._elapsed_before = 0.0  # seconds of training before a resume
        self._plots = PlotsCheck("the training curves")

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(filename=self.filename)

    # -- bookkeeping ---------------------------------------------------------------- #
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":  # a fresh run; a checkpoint's state is loaded after this
            self.history = []
            self._elapsed_before = 0.0
            self.text = None
            self.figure_path = None

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.monotonic()

    def _elapsed(self) -> Optional[float]:
        return self._elapsed_before + time.monotonic() - self._start if self._start is not None else None

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        row = {"epoch": float(trainer.current_epoch), "step": float(trainer.global_step)}
        row.update({k: v for k, v in self._values(trainer).items() if v is not None and k in _CURVES})
        self.history.append(row)

    @staticmethod
    def _values(trainer: Trainer) -> Dict[str, Optional[float]]:
        m = trainer.callback_metrics
        out: Dict[str, Optional[float]] = {k: _float(m.get(k)) for k in _CURVES}
        for stage in ("train", "val"):  # means over bottlenecks; the text prefers validation
            ppl = [_float(v) for k, v in m.items() if k.startswith(f"{stage}/perplexity/")]
            ppl = [p for p in ppl if p is not None]
            if ppl:
                out[f"{stage}/perplexity"] = out["perplexity"] = sum(ppl) / len(ppl)
                out["perplexity_stage"] = 0.0 if stage == "val" else 1.0
                out["perplexity_n"] = float(len(ppl))
        return out

    # -- the summary ------------------------------------------------------------------- #
    def summary_text(self, trainer: Trainer, pl_module: LightningModule, log_dir: Optional[str] = None) -> str:
        """The summary of the run as it stands (what :meth:`on_fit_end` prints).

        Args:
            trainer: the Trainer of the run (logged values, log and checkpoint paths).
            pl_module: the trained module (its bottlenecks' estimator and temperatures).
            log_dir: the run's log folder; by default ``trainer.log_dir``, which is a
                collective under DDP (call this on every rank, or pass the folder).

        Returns:
            The text, one sentence per line.
        """
        v = self._values(trainer)
        bottlenecks = named_bottlenecks(pl_module)
        lines: List[str] = []
        secs = self._elapsed()
        took = f" in {secs:.1f} s" if secs is not None else ""
        est = bottlenecks[0][1].estimator if bottlenecks else getattr(pl_module.hparams, "estimator", "?")
        lines.append(
            f"Trained {type(pl_module).__name__} ({est} estimator) for {trainer.current_epoch} epoch(s), "
            f"{trainer.global_step} steps{took}."
        )
        dm = trainer.datamodule
        if dm is not None and callable(getattr(dm, "describe", None)):
            lines.append(f"Data: {dm.describe()}.")
        acc, loss = v.get("val/acc"), v.get("val/loss")
        if acc is not None:
            loss_txt = f", validation loss {loss:.3f}" if loss is not None else ""
            lines.append(f"Validation accuracy: {100 * acc:.1f}% (last epoch){loss_txt}.")
        elif loss is not None:
            lines.append(f"Validation loss: {loss:.3f} (last epoch).")
        ppl = v.get("perplexity")
        if ppl is not None and bottlenecks:
            k = bottlenecks[0][1].num_categories
            kind = "binary units" if k == 2 else f"discrete latents ({k} categories)"
            stage = "validation" if v.get("perplexity_stage") == 0.0 else "training"
            stuck = "stuck at one value" if k == 2 else "always the same category"
            lines.append(
                f"Perplexity of the {kind}: {ppl:.2f} on {stage} data (1 = {stuck}, {k} = all "
                f"{'values' if k == 2 else 'categories'} equally often; mean over {int(v.get('perplexity_n') or 1)} layer(s))."
            )
        active = v.get("active_units/all")
        if active is not None:
            lines.append(
                f"Active units: {active:.1f}% of the unit gradients were non-negligible in the last epoch "
                f"(units that still learn)."
            )
        spec = bottlenecks[0][1].estimator_spec if bottlenecks else None
        if spec is not None and spec.num_temperatures:
            tau_f, tau_b = bottlenecks[0][1].temperatures()
            temps = f"tau_f = {tau_f:.3g}, tau_b = {tau_b:.3g}" if spec.decoupled_temperatures else f"tau = {tau_f:.3g}"
            lines.append(f"Temperature(s) at the end: {temps}.")
        if log_dir is None and trainer.loggers:
            log_dir = trainer.log_dir
        lines.extend(self._where(trainer, log_dir))
        if self.next_steps:
            lines.append("Try next:")
            lines.extend(f"  - {s}" for s in self.next_steps)
        return "\n".join(lines)

    def _where(self, trainer: Trainer, log_dir: Optional[str]) -> List[str]:
        out = []
        if log_dir:
            files = sorted(f for f in os.listdir(log_dir) if f.endswith((".csv", ".yaml", ".png"))) if os.path.isdir(log_dir) else []
            listed = f" ({', '.join(files)})" if files else ""
            out.append(f"Logs: {log_dir}{listed}.")
        config = os.path.join(trainer.default_root_dir, "config.yaml")
        if os.path.isfile(config):
            out.append(f"Config of this run: {config}.")
        # a monitored checkpoint holds the best epoch; one without a monitor the latest (the
        # recipes' latest.ckpt); Lightning's own last.ckpt is written only with a monitored save
        ckpts = getattr(trainer, "checkpoint_callbacks", [])
        best = next((c.best_model_path for c in ckpts if c.monitor is not None and c.best_model_path), "")
        latest = next((c.best_model_path for c in ckpts if c.monitor is None and c.best_model_path), "")
        last = next((c.last_model_path for c in ckpts if c.last_model_path), "")
        parts: List[str] = []
        shown = set()
        for label, path in (("best", best), ("latest", latest), ("last", last)):
            if path and path not in shown:
                parts.append(f"{label} {path}")
                shown.add(path)
        if parts:
            out.append(f"Checkpoints: {', '.join(parts)}.")
        if self.figure_path:
            out.append(f"Figure: {self.figure_path} (accuracy, perplexity, active units and temperatures per epoch).")
        return out

    def _draw(self, path: str) -> Optional[str]:
        fig = training_curves_figure(self.history) if self._plots.available() else None
        if fig is None:
            return None
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fig.savefig(path)
        return path

    @rank_zero_only
    def _report(self, trainer: Trainer, pl_module: LightningModule, log_dir: Optional[str]) -> None:
        if self.figure and log_dir and self.history:
            self.figure_path = self._draw(os.path.join(log_dir, self.filename))
        self.text = self.summary_text(trainer, pl_module, log_dir)
        bar = "-" * 72
        print(f"\n{bar}\nSummary\n{bar}\n{self.text}\n{bar}", flush=True)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # ``trainer.log_dir`` broadcasts from rank zero: read it on every rank, report on rank zero
        log_dir = trainer.log_dir if trainer.loggers else None
        self._report(trainer, pl_module, log_dir)

    # -- checkpoints ----------------------------------------------------------------- #
    @override
    def state_dict(self) -> Dict[str, Any]:
        """The per-epoch values so far and the training time so far (seconds)."""
        return {"history": [dict(row) for row in self.history], "elapsed": self._elapsed() or 0.0}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.history = [dict(row) for row in state_dict["history"]]
        self._elapsed_before = float(state_dict["elapsed"])

