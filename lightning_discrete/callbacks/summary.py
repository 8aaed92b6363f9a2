"""A short plain-language summary of a training run, printed when ``fit`` ends."""

from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from ._utils import named_bottlenecks

__all__ = ["TrainingSummary", "DEFAULT_NEXT_STEPS"]

DEFAULT_NEXT_STEPS = (
    "the paper's binary network on Fashion-MNIST (100 epochs; data offline: sudo apt-get install "
    "dataset-fashion-mnist, or add --data.download=true): lightning-discrete fit --config recipes/binary_fashion_mnist.yaml",
    "a baseline estimator on the same run: "
    "lightning-discrete fit --config recipes/quickstart.yaml --config recipes/estimators/identity.yaml",
    "a (tau_f, tau_b) sweep: lightning-discrete sweep --config recipes/binary_fashion_mnist.yaml "
    "--protocol grid --tau_f 0.1 0.5 1 --tau_b 0.3 0.7 1 --trainer.max_epochs=3",
)

# the epoch-level metrics kept for the text and the figure
_CURVES = ("val/acc", "val/loss", "perplexity", "active_units/all", "temperature/tau_f")


def _float(value: Any) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


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
    pillow installed it also draws the per-epoch curves into ``<log dir>/curves.png``.
    The text is kept in :attr:`text` (``None`` before the end of ``fit``).

    Args:
        next_steps: lines of the "what to try next" list (``None``: the defaults,
            :data:`DEFAULT_NEXT_STEPS`; ``[]``: none).
        figure: draw ``curves.png`` when pillow is installed.
    """

    def __init__(self, next_steps: Optional[Sequence[str]] = None, figure: bool = True) -> None:
        self.next_steps: List[str] = list(DEFAULT_NEXT_STEPS if next_steps is None else next_steps)
        self.figure = figure
        self.text: Optional[str] = None
        self.figure_path: Optional[str] = None
        self.history: List[Dict[str, float]] = []
        self._start: Optional[float] = None

    # -- bookkeeping ---------------------------------------------------------------- #
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.monotonic()
        self.history = []
        self.text = None
        self.figure_path = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        row = {"epoch": float(trainer.current_epoch), "step": float(trainer.global_step)}
        row.update({k: v for k, v in self._values(trainer).items() if v is not None})
        self.history.append(row)

    @staticmethod
    def _values(trainer: Trainer) -> Dict[str, Optional[float]]:
        m = trainer.callback_metrics
        out: Dict[str, Optional[float]] = {k: _float(m.get(k)) for k in _CURVES if k != "perplexity"}
        for stage in ("val", "train"):
            ppl = [_float(v) for k, v in m.items() if k.startswith(f"{stage}/perplexity/")]
            ppl = [p for p in ppl if p is not None]
            if ppl:
                out["perplexity"] = sum(ppl) / len(ppl)
                out["perplexity_stage"] = 0.0 if stage == "val" else 1.0
                out["perplexity_n"] = float(len(ppl))
                break
        return out

    # -- the summary ------------------------------------------------------------------- #
    def summary_text(self, trainer: Trainer, pl_module: LightningModule) -> str:
        """The summary of the run as it stands (what :meth:`on_fit_end` prints)."""
        v = self._values(trainer)
        bottlenecks = named_bottlenecks(pl_module)
        lines: List[str] = []
        secs = time.monotonic() - self._start if self._start is not None else None
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
        lines.extend(self._where(trainer))
        if self.next_steps:
            lines.append("Try next:")
            lines.extend(f"  - {s}" for s in self.next_steps)
        return "\n".join(lines)

    def _where(self, trainer: Trainer) -> List[str]:
        out = []
        log_dir = trainer.log_dir if trainer.loggers else None
        if log_dir:
            files = sorted(f for f in os.listdir(log_dir) if f.endswith((".csv", ".yaml", ".png"))) if os.path.isdir(log_dir) else []
            listed = f" ({', '.join(files)})" if files else ""
            out.append(f"Logs: {log_dir}{listed}.")
        config = os.path.join(trainer.default_root_dir, "config.yaml")
        if os.path.isfile(config):
            out.append(f"Config of this run: {config}.")
        ckpt = trainer.checkpoint_callback
        best = getattr(ckpt, "best_model_path", "") if ckpt is not None else ""
        last = getattr(ckpt, "last_model_path", "") if ckpt is not None else ""
        if best or last:
            parts = [f"best {best}"] if best else []
            if last and last != best:
                parts.append(f"last {last}")
            out.append(f"Checkpoints: {', '.join(parts)}.")
        if self.figure_path:
            out.append(f"Figure: {self.figure_path} (accuracy, perplexity, active units and tau_f per epoch).")
        return out

    @rank_zero_only
    def _report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.figure and trainer.loggers and trainer.log_dir and self.history:
            self.figure_path = _draw_curves(self.history, os.path.join(trainer.log_dir, "curves.png"))
        self.text = self.summary_text(trainer, pl_module)
        bar = "-" * 72
        print(f"\n{bar}\nSummary\n{bar}\n{self.text}\n{bar}", flush=True)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._report(trainer, pl_module)


def _draw_curves(history: List[Dict[str, float]], path: str) -> Optional[str]:
    """Small line charts of the per-epoch values (pillow); ``None`` if pillow is missing."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    panels = [
        ("val/acc", "validation accuracy"),
        ("perplexity", "perplexity of the units"),
        ("active_units/all", "active units (%)"),
        ("temperature/tau_f", "tau_f"),
    ]
    panels = [(k, t) for k, t in panels if sum(k in r for r in history) >= 1]
    if not panels:
        return None
    w, h, pad = 320, 200, 36
    img = Image.new("RGB", (w * len(panels), h), "white")
    d = ImageDraw.Draw(img)
    for i, (key, title) in enumerate(panels):
        x0 = i * w
        pts = [(r["epoch"], r[key]) for r in history if key in r]
        lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        e_lo, e_hi = pts[0][0], max(pts[-1][0], pts[0][0] + 1)
        left, right, top, bottom = x0 + pad, x0 + w - 12, 24, h - 24
        d.text((x0 + pad, 6), title, fill="black")
        d.rectangle([left, top, right, bottom], outline="grey")
        d.text((x0 + 2, top), f"{hi:.3g}", fill="black")
        d.text((x0 + 2, bottom - 10), f"{lo:.3g}", fill="black")
        d.text((left, bottom + 6), f"epoch {int(e_lo)}", fill="black")
        d.text((right - 50, bottom + 6), f"{int(e_hi)}", fill="black")

        def xy(p):
            return (
                left + (right - left) * (p[0] - e_lo) / (e_hi - e_lo),
                bottom - (bottom - top) * (p[1] - lo) / (hi - lo),
            )

        coords = [xy(p) for p in pts]
        if len(coords) > 1:
            d.line(coords, fill=(31, 119, 180), width=2)
        for c in coords:
            d.ellipse([c[0] - 2, c[1] - 2, c[0] + 2, c[1] + 2], fill=(31, 119, 180))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    img.save(path)
    return path
