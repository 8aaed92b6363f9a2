"""Codebook / latent utilisation over an epoch: perplexity, dead codes, joint usage."""

from __future__ import annotations

from typing import Any, Dict, Sequence

from lightning.pytorch import Callback, LightningModule, Trainer

from ..metrics import CodebookUsage
from ._utils import log_value, named_bottlenecks

__all__ = ["LatentUtilizationMonitor"]

_STAGES = ("train", "val")


class LatentUtilizationMonitor(Callback):
    """Log how the codes of every bottleneck are used over each epoch.

    It switches recording on (``record(True)``) in every
    :class:`~lightning_discrete.nn.DiscreteBottleneck`, adds each batch's
    ``last_indices`` (``(N, L)``) to a :class:`~lightning_discrete.metrics.CodebookUsage`
    per bottleneck and stage, and at the end of the epoch computes the statistics
    from the counts **summed across ranks**.  Logged (``{name}`` is the module's
    qualified name, e.g. ``hidden.1`` or ``bottleneck``; ``{stage}`` is ``train`` or ``val``):

    * ``{stage}/perplexity/{name}`` — mean over latents of ``exp(H)`` of the code
      histogram, in ``[1, k]``;
    * ``{stage}/dead_codes/{name}`` — fraction of (latent, code) pairs never chosen;
    * ``{stage}/joint_perplexity/{name}`` and ``{stage}/joint_used/{name}`` — the
      perplexity and number of distinct joint codes of all ``L`` latents, when
      ``L > 1`` and ``k ** L <= joint_limit``.

    Training codes are those sampled by the estimator; validation codes follow the
    bottleneck's ``eval_mode`` (``argmax``: deterministic).  The sanity check is ignored.

    Args:
        stages: any of ``"train"``, ``"val"``.
        joint_limit: largest joint histogram tracked (``k ** L``).
    """

    def __init__(self, stages: Sequence[str] = ("train", "val"), joint_limit: int = 65536) -> None:
        stages = (stages,) if isinstance(stages, str) else tuple(stages)
        bad = [s for s in stages if s not in _STAGES]
        if bad or not stages:
            raise ValueError(f"`stages` must be a non-empty subset of {_STAGES}, got {stages}")
        self.stages = stages
        self.joint_limit = int(joint_limit)
        self._metrics: Dict[str, Dict[str, CodebookUsage]] = {s: {} for s in _STAGES}
        self.last_results: Dict[str, float] = {}
        self._seen: Dict[Any, Any] = {}  # (stage, name) -> the last tensor counted (no double counting)
        self._modules: list = []

    # -- recording on/off --------------------------------------------------------- #
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._modules = named_bottlenecks(pl_module)  # walked once, not every step
        for _, m in self._modules:
            m.record(True, owner=self)

    on_validation_start = on_fit_start  # plain ``trainer.validate`` too

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for _, m in named_bottlenecks(pl_module):
            m.record(False, owner=self)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn != "fit":
            self.on_fit_end(trainer, pl_module)

    # -- accumulation -------------------------------------------------------------- #
    def _update(self, stage: str, pl_module: LightningModule) -> None:
        metrics = self._metrics[stage]
        for name, m in self._modules:
            idx = m.last_indices
            if idx is None or self._seen.get((stage, name)) is idx:
                continue  # nothing recorded, or already counted (other monitors read it too)
            self._seen[(stage, name)] = idx
            metric = metrics.get(name)
            if metric is None:
                idx2 = idx.reshape(idx.shape[0], -1)
                metric = CodebookUsage(m.num_categories, idx2.shape[1], joint_limit=self.joint_limit)
                metrics[name] = metric.to(idx.device)
            metric.update(idx)

    def _flush(self, stage: str, pl_module: LightningModule) -> None:
        metrics = self._metrics[stage]
        for name in sorted(metrics):
            values = metrics[name].compute()  # collective: sums the counts across ranks
            metrics[name].reset()
            for key, value in values.items():
                label = "dead_codes" if key == "dead_fraction" else key
                full = f"{stage}/{label}/{name}"
                self.last_results[full] = float(value)
                log_value(pl_module, full, value, on_step=False)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if "train" in self.stages:
            self._update("train", pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "train" in self.stages:
            self._flush("train", pl_module)

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if "val" in self.stages and not trainer.sanity_checking:
            self._update("val", pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "val" not in self.stages:
            return
        if trainer.sanity_checking:
            for metric in self._metrics["val"].values():
                metric.reset()
            return
        self._flush("val", pl_module)

    def state_dict(self) -> Dict[str, Any]:
        return {"stages": self.stages, "joint_limit": self.joint_limit}
