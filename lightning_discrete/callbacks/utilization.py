"""Codebook / latent utilisation over an epoch: perplexity, dead codes, joint usage."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from ..metrics import CodebookUsage
from ..nn.bottleneck import DiscreteBottleneck
from ._utils import global_states, log_value, named_bottlenecks, restore_states

__all__ = ["LatentUtilizationMonitor"]

_STAGES = ("train", "val")


class LatentUtilizationMonitor(Callback):
    """Log how the codes of every bottleneck are used over each epoch.

    It switches recording on (``record(True)``, ``docs/design.md``, "Protocols") in every
    :class:`~lightning_discrete.nn.DiscreteBottleneck`, adds each batch's
    ``last_indices`` (``(N, L)``) to a :class:`~lightning_discrete.metrics.CodebookUsage`
    per bottleneck and stage, and at the end of the epoch computes the statistics
    from the counts **summed across ranks**.  Logged (``{name}`` is the module's
    qualified name, e.g. ``hidden.1`` or ``bottleneck``; ``{stage}`` is ``train`` or ``val``):

    * ``{stage}/perplexity/{name}`` -- mean over latents of ``exp(H)`` of the code
      histogram, in ``[1, k]``;
    * ``{stage}/dead_codes/{name}`` -- fraction of (latent, code) pairs never chosen;
    * ``{stage}/joint_perplexity/{name}`` and ``{stage}/joint_used/{name}`` -- the
      perplexity and number of distinct joint codes of all ``L`` latents, when
      ``L > 1`` and ``k ** L <= joint_limit``.

    Training codes are those sampled by the estimator; validation codes follow the
    bottleneck's ``eval_mode`` (``argmax``: deterministic).  The sanity check is ignored.
    With ``stride > 1`` only every ``stride``-th optimizer step's training codes are
    recorded and counted (validation counts every batch): the training statistics become
    estimates from a sample of the epoch's steps, for a fraction of the cost (on the
    784-200-200-10 binary network of ``recipes/binary_fashion_mnist.yaml`` counting every
    step costs about 9% of the training time); a code chosen only on unsampled steps
    counts as dead.
    The counts of an epoch in progress are saved in checkpoints, so a run resumed from
    a mid-epoch checkpoint logs the statistics of the whole epoch. Several monitors can
    share a Trainer (e.g. one per stage); :attr:`state_key` names the stages and
    ``joint_limit``.

    Args:
        stages: any of ``"train"``, ``"val"``.
        joint_limit: largest joint histogram tracked (``k ** L``).
        stride: count the training codes of every ``stride``-th optimizer step (``>= 1``;
            1: every step).

    Examples:
        >>> import torch
        >>> from lightning.pytorch import Trainer
        >>> from lightning_discrete.models import CategoricalAutoencoder
        >>> model = CategoricalAutoencoder(input_dim=8, num_latents=2, num_categories=4, hidden_dims=[8])
        >>> monitor = LatentUtilizationMonitor(stages="val")
        >>> trainer = Trainer(callbacks=[monitor], logger=False, enable_progress_bar=False)
        >>> data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(16, 8)), batch_size=8)
        >>> _ = trainer.validate(model, data, verbose=False)
        >>> sorted(monitor.last_results)
        ['val/dead_codes/bottleneck', 'val/joint_perplexity/bottleneck', 'val/joint_used/bottleneck', 'val/perplexity/bottleneck']
    """

    def __init__(self, stages: Sequence[str] = ("train", "val"), joint_limit: int = 65536, stride: int = 1) -> None:
        stages = (stages,) if isinstance(stages, str) else tuple(stages)
        bad = [s for s in stages if s not in _STAGES]
        if bad or not stages:
            raise ValueError(f"`stages` must be a non-empty subset of {_STAGES}, got {stages}")
        if joint_limit < 1:
            raise ValueError(f"`joint_limit` must be >= 1, got {joint_limit}")
        if stride < 1:
            raise ValueError(f"`stride` must be >= 1, got {stride}")
        self.stages = stages
        self.joint_limit = int(joint_limit)
        self.stride = int(stride)
        self._recording = False  # whether this monitor's record request is on
        self._sampled = True  # whether the training step in progress is counted
        self.last_results: Dict[str, float] = {}
        self._metrics: Dict[str, Dict[str, CodebookUsage]] = {s: {} for s in _STAGES}
        self._seen: Dict[Tuple[str, str], Tensor] = {}  # (stage, name) -> the last tensor counted
        self._modules: List[Tuple[str, DiscreteBottleneck]] = []

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(stages=self.stages, joint_limit=self.joint_limit)

    # -- recording on/off --------------------------------------------------------- #
    def _start(self, pl_module: LightningModule) -> None:
        self._modules = named_bottlenecks(pl_module)  # walked once, not every step
        self._record(True)

    def _record(self, on: bool) -> None:
        for _, m in self._modules:
            m.record(on, owner=self)
        self._recording = on

    def _stop(self) -> None:
        self._record(False)

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(pl_module)

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(pl_module)  # plain ``trainer.validate`` too

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop()

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._stop()  # the bottlenecks stop recording for this monitor

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn != "fit":
            self._stop()

    # -- accumulation -------------------------------------------------------------- #
    def _update(self, stage: str) -> None:
        metrics = self._metrics[stage]
        for name, m in self._modules:
            idx = m.last_indices
            if idx is None or self._seen.get((stage, name)) is idx:
                continue  # nothing recorded, or already counted (other monitors read it too)
            self._seen[(stage, name)] = idx
            idx = idx.reshape(idx.shape[0], -1)
            metric = metrics.get(name)
            if metric is None:
                metric = metrics[name] = CodebookUsage(m.num_categories, idx.shape[1], joint_limit=self.joint_limit)
            if metric.device != idx.device:  # new, or counts restored from a checkpoint
                metric.to(idx.device)
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

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._sampled = "train" in self.stages and (self.stride == 1 or trainer.global_step % self.stride == 0)
        if self._sampled != self._recording:  # switched twice per stride (and after validation), not every step
            self._record(self._sampled)

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._sampled:  # another monitor's recording of an unsampled step is not counted
            self._update("train")

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "train" in self.stages:
            self._flush("train", pl_module)

    @override
    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if "val" in self.stages and not trainer.sanity_checking:
            self._update("val")

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "val" not in self.stages:
            return
        if trainer.sanity_checking:
            for metric in self._metrics["val"].values():
                metric.reset()
            return
        self._flush("val", pl_module)

    # -- checkpoints ----------------------------------------------------------------- #
    @override
    def state_dict(self) -> Dict[str, Any]:
        """Counts of the epoch in progress summed across ranks: ``{stage: {name: {state: tensor}}}``.

        A collective when distributed: Lightning calls it on every rank when it saves.
        """
        out: Dict[str, Any] = {}
        for stage in _STAGES:
            metrics = self._metrics[stage]
            saved = {name: global_states(metrics[name]) for name in sorted(metrics)}
            saved = {name: states for name, states in saved.items() if int(states["total"]) > 0}
            if saved:
                out[stage] = saved
        return out

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        for stage, saved in state_dict.items():
            for name, states in saved.items():
                num_latents, num_codes = states["counts"].shape
                metric = CodebookUsage(num_codes, num_latents, joint_limit=self.joint_limit)
                self._metrics[stage][name] = restore_states(metric, states)
